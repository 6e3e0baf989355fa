"""Every registered method resumes exactly: a run SIGKILLed mid-task or at a task boundary and
resumed with `resume=<run dir>` writes the metrics.json of the uninterrupted run, and a run read
back with `load_run` reproduces its final accuracies. Parametrized from the registry, so a new
method is covered without editing this file."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from cases import CASES, EXTRA, case_overrides, method_of
from continual import load_run
from continual.cli.main import main

RUN = ["logger.wandb=false", "trainer.enable_progress_bar=false", "trainer.max_epochs=2", "checkpoint_every_n_steps=3",
       "backbone.hidden=[64,64]", "metrics.probe_per_task=16"]
RESUME_EXTRA = {**EXTRA, "er": ["er.buffer_size=60"]}

# A run that kills itself with SIGKILL: mid-task (step 5 of `task`, after the step-3 checkpoint)
# or at a task boundary (as `task`'s Trainer starts, its predecessor's state saved): its fit, or
# for a method with nothing to train, whose fit the task loop skips, its test pass.
KILLER = """
import os, signal, sys
import lightning as L
from continual import load_config, run

task, when = int(sys.argv[1]), sys.argv[2]

class Kill(L.Callback):
    def setup(self, trainer, pl_module, stage):
        if when == "boundary" and pl_module.current_task == task:
            os.kill(os.getpid(), signal.SIGKILL)

    def on_train_batch_end(self, trainer, pl_module, *args):
        if when == "mid" and pl_module.current_task == task and trainer.global_step == 5:
            os.kill(os.getpid(), signal.SIGKILL)

run(load_config(None, sys.argv[3:]), callbacks=[Kill()])
"""


def overrides(case: str) -> list[str]:
    return [*RUN, *case_overrides(case, RESUME_EXTRA)]


def comparable(run_dir) -> dict:
    m = json.loads((run_dir / "metrics.json").read_text())
    return {k: v for k, v in m.items() if k not in ("wall_time_s", "provenance")}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    cache = {}

    def get(method: str):
        if method not in cache:
            out = tmp_path_factory.mktemp(method) / "run"
            assert main(["fit", f"output_dir={out}", *overrides(method)]) == 0
            cache[method] = out
        return cache[method]

    return get


@pytest.mark.parametrize("when", ["mid", "boundary"])
@pytest.mark.parametrize("method", CASES)
def test_sigkilled_run_resumes_to_the_uninterrupted_metrics(tmp_path, uninterrupted, capsys, method, when):
    full = uninterrupted(method)
    # joint learns everything in its first fit: that is the task to kill it in
    task = {"mid": 0 if method_of(method).joint else 1, "boundary": 2}[when]
    if when == "mid" and json.loads((full / "metrics.json").read_text())["trainable_params_per_task"][task] == 0:
        pytest.skip(f"{method} has nothing to train in task {task + 1}: no fit, so no step to kill it at")
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "WANDB_MODE": "offline"}
    proc = subprocess.run([sys.executable, "-c", KILLER, str(task), when, f"output_dir={killed}", *overrides(method)],
                          env=env, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    partial = killed / "metrics.json"  # finished tasks survived (none yet when killed in the first)
    assert (json.loads(partial.read_text())["tasks_done"] if partial.exists() else 0) == task
    last = killed / "checkpoints" / "last.ckpt"
    if when == "mid":
        assert torch.load(last, weights_only=True)["continual"]["task"] == task
    else:
        assert not last.exists()
    capsys.readouterr()
    assert main(["fit", f"resume={killed}", *overrides(method)]) == 0
    out = capsys.readouterr().out
    assert f"{task} of 5 tasks already done" in out
    assert (f"resuming task {task + 1} mid-way" in out) == (when == "mid")
    assert comparable(killed) == comparable(full)


@pytest.mark.parametrize("method", CASES)
def test_a_run_read_back_reproduces_its_final_accuracies(uninterrupted, method):
    run = load_run(uninterrupted(method))
    correct = []
    with torch.no_grad():
        for task in run.stream.tasks:
            x, y = task.x_test, task.y_test
            batch = {"x": x, "y": y, "task": torch.full_like(y, task.id), "index": torch.arange(len(y)),
                     "probe": torch.zeros(len(y), dtype=torch.bool)}
            pred = run.module.evaluate(batch)
            correct.append(int((pred["pred"] == pred["target"]).sum()))
    assert correct == run.metrics["counts"]["correct"][-1]
