"""Resume: a SIGKILLed run continues from its checkpoints and ends with the uninterrupted metrics."""

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from continual.cli.main import main
from helpers import QUICK, comparable

# 5 tasks (the messages name "of 5 tasks"; a kill in task 3 leaves two finished) and a csv logger
# (the resumed run continues its step axis)
RUN = [*QUICK, "data.n_tasks=5", "logger.kind=csv", "trainer.max_epochs=2", "checkpoint_every_n_steps=3"]


def fit_cmd(*overrides):
    return [sys.executable, "-m", "continual.cli.main", "fit", *RUN, *overrides]


def env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "WANDB_MODE": "offline"}


def wait_for_mid_task_checkpoint(run_dir, task, proc, timeout=120):
    """Until `last.ckpt` belongs to `task` (0-based), i.e. that task is part-trained."""
    last, deadline = run_dir / "checkpoints" / "last.ckpt", time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if last.is_file():
            try:
                if torch.load(last, weights_only=True)["continual"]["task"] == task:
                    return
            except (OSError, RuntimeError, EOFError, KeyError):
                pass  # replaced while being read
        time.sleep(0.02)
    pytest.fail(f"no mid-task checkpoint of task {task + 1} appeared (process rc={proc.poll()})")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "run"
    assert subprocess.run(fit_cmd(f"output_dir={out}"), env=env(), capture_output=True).returncode == 0
    return comparable(out)


@pytest.mark.slow  # subprocesses: seconds each
@pytest.mark.parametrize("sig, task", [(signal.SIGKILL, 2), (signal.SIGTERM, 1)], ids=["SIGKILL", "SIGTERM"])
def test_killed_run_resumes_mid_task_to_identical_metrics(tmp_path, uninterrupted, sig, task):
    killed = tmp_path / "killed"
    proc = subprocess.Popen(fit_cmd(f"output_dir={killed}"), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for_mid_task_checkpoint(killed, task, proc)
    proc.send_signal(sig)
    _, err = proc.communicate()
    if sig == signal.SIGTERM:  # checkpointed at the next batch boundary, then a clean exit
        assert proc.returncode == 143 and f"resume={killed}" in err
    partial = json.loads((killed / "metrics.json").read_text())
    assert partial["complete"] is False and partial["tasks_done"] == task  # finished tasks survived
    out = subprocess.run(fit_cmd(f"resume={killed}"), env=env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"{task} of 5 tasks already done" in out.stdout and f"resuming task {task + 1} mid-way" in out.stdout
    assert comparable(killed) == uninterrupted
    assert not (killed / "checkpoints" / "last.ckpt").exists()  # finished: only the task-boundary state stays
    sessions = [csv.DictReader((killed / "csv" / f"version_{v}" / "metrics.csv").open()) for v in (0, 1)]
    ends = [int(r["step"]) for rows in sessions for r in rows if r["acc/task_1"]]
    assert len(ends) == 5 and ends == sorted(set(ends))  # the resumed run continues the logged step axis


def test_resume_refuses_a_different_config_naming_the_keys(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["fit", f"output_dir={run_dir}", *RUN, "trainer.max_epochs=1"]) == 0
    # a finished run resumes to a no-op; a different config is refused before anything else
    assert main(["fit", f"resume={run_dir}", *RUN, "trainer.max_epochs=1", "optim.lr=0.1", "seed=5"]) == 2
    err = capsys.readouterr().err
    assert "different config" in err and "optim.lr: 0.001 -> 0.1" in err and "seed: 0 -> 5" in err
    assert "--config" in err and err.count("\n") == 1
    # keys that cannot change results may differ
    assert main(["fit", f"resume={run_dir}", *RUN, "trainer.max_epochs=1", "trainer.devices=1", "logger.project=x"]) == 0
    assert "already complete" in capsys.readouterr().out


def test_resume_into_an_empty_directory_starts_the_run(tmp_path):
    """What a requeued SLURM job does on its first start: resume= names a directory with no state yet."""
    run_dir = tmp_path / "fresh"
    assert main(["fit", f"resume={run_dir}", *RUN, "trainer.max_epochs=1"]) == 0
    assert json.loads((run_dir / "metrics.json").read_text())["complete"] is True


def test_checkpoints_load_weights_only_and_reject_pickles(tmp_path, capsys):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    # an arbitrary pickled object: loading it would need weights_only=False, which we never use
    torch.save({"format": 1, "payload": argparse.Namespace(a=1)}, run_dir / "checkpoints" / "state.pt")
    assert main(["fit", f"resume={run_dir}", *RUN]) == 2
    assert "cannot be loaded safely" in capsys.readouterr().err


@pytest.mark.parametrize("every_s, written", [(1e-6, True), (0, False)])
def test_mid_task_checkpoints_follow_training_time_by_default(tmp_path, every_s, written):
    """No step cadence set: `checkpoint_every_s` decides (a tiny interval: after the first step;
    0: only at task ends). Seen by a callback at the end of each task's training, before the loop
    removes the finished task's checkpoint."""
    import lightning as L

    from continual.config import load_config
    from continual.experiment import run

    class SeesCheckpoint(L.Callback):
        def __init__(self):
            self.seen = []

        def on_train_end(self, trainer, pl_module):
            self.seen.append((tmp_path / "run" / "checkpoints" / "last.ckpt").is_file())

    seen = SeesCheckpoint()
    cfg = load_config(None, [*QUICK, "data.n_tasks=2",
                             f"checkpoint_every_s={every_s}", f"output_dir={tmp_path / 'run'}"])
    assert cfg.checkpoint_every_n_steps == 0  # the default: time decides
    run(cfg, callbacks=[seen])
    assert seen.seen == [written, written]


TERM_AT_TASK_END = '''
import os
import signal

from continual.baselines.finetune import FineTune


class TermAtTaskEnd(FineTune):
    """Fine-tuning that sends itself SIGTERM after training task 2, between Lightning's calls."""

    def on_task_end(self, data):
        if data.id == 1 and os.environ.get("TERM_AT_TASK_END"):
            os.kill(os.getpid(), signal.SIGTERM)
'''


@pytest.mark.slow  # three subprocess runs
def test_a_sigterm_between_lightning_calls_stops_cleanly_and_resumes_to_identical_metrics(tmp_path, monkeypatch):
    """Lightning handles SIGTERM only inside fit and test; one that arrives between them (here:
    in a method's task hook) is noted and honoured at the next check instead of killing the run."""
    (tmp_path / "term_method.py").write_text(TERM_AT_TASK_END)
    method = ["method=term_method:TermAtTaskEnd", "data.n_tasks=3"]  # stopped after task 2 of 3
    child = {**env(), "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    full, cut = tmp_path / "full", tmp_path / "cut"
    monkeypatch.syspath_prepend(str(tmp_path))  # the uninterrupted run in this process: it sends no signal
    monkeypatch.delitem(sys.modules, "term_method", raising=False)
    assert main(["fit", *RUN, *method, f"output_dir={full}"]) == 0
    proc = subprocess.run(fit_cmd(*method, f"output_dir={cut}"), env={**child, "TERM_AT_TASK_END": "1"}, capture_output=True, text=True)
    assert proc.returncode == 143, proc.stderr[-2000:]  # before: killed by the signal itself (-15), nothing said
    assert "continual: error: stopped by SIGTERM with 1 task(s) finished" in proc.stderr and f"resume={cut}" in proc.stderr
    out = subprocess.run(fit_cmd(*method, f"resume={cut}"), env=child, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert comparable(cut) == comparable(full)


def test_resume_on_a_folder_with_no_run_starts_it_there_and_says_so(tmp_path, capsys):
    """What a requeued job's first start needs (docs/scaling.md); the line tells a mistyped
    folder from a resumed run, which would say how many tasks were already done."""
    fresh, plain = tmp_path / "requeued", tmp_path / "plain"
    assert main(["fit", f"resume={fresh}", *QUICK]) == 0
    out = capsys.readouterr().out
    assert f"resume={fresh}: no saved state there yet; the run starts from task 1\n" in out and "already done" not in out
    assert main(["fit", f"output_dir={plain}", *QUICK]) == 0
    assert "no saved state" not in capsys.readouterr().out
    assert comparable(fresh) == comparable(plain)
