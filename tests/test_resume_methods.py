"""Every registered method resumes exactly: a run SIGKILLed mid-task, resumed, SIGKILLed again at
a task boundary and resumed again with `resume=<run dir>` writes the metrics.json of the
uninterrupted run and its final weights and method state bit for bit; every training step's
checkpoint holds the method state the run goes on with (so a kill at any step resumes exactly);
and a run read back with `load_run` reproduces its final accuracies.
Parametrized from the registry, so a new method is covered without editing this file."""

import io
import json
import os
import signal
import subprocess
import sys

import lightning as L
import pytest
import torch

from cases import CASES, EXTRA, RUN, case_overrides, method_of
from continual import load_config, load_run, run
from continual.cli.main import main
from helpers import QUICK, comparable

# Runs that kill themselves with SIGKILL, each a child forked from one process that imported
# torch, Lightning and continual once (and computed nothing, so a child starts with no thread
# pool to inherit): a kill costs no interpreter start. Unbuffered (-u), so what a child printed
# before its kill is in its log. A line in: `[task, when, overrides, log]`;
# a line out: the child's exit status. `when`: mid-task (step 5 of `task`, after the step-3
# checkpoint) or at a task boundary (as `task`'s Trainer starts, its predecessor's state saved):
# its fit, or for a method with nothing to train, whose fit the task loop skips, its test pass.
KILLER = """
import json, os, signal, sys, traceback
import lightning as L
from continual import load_config, run

class Kill(L.Callback):
    def __init__(self, task, when):
        self.task, self.when = task, when

    def setup(self, trainer, pl_module, stage):
        if self.when == "boundary" and pl_module.current_task == self.task:
            os.kill(os.getpid(), signal.SIGKILL)

    def on_train_batch_end(self, trainer, pl_module, *args):
        if self.when == "mid" and pl_module.current_task == self.task and trainer.global_step == 5:
            os.kill(os.getpid(), signal.SIGKILL)

for line in sys.stdin:
    task, when, overrides, log = json.loads(line)
    pid = os.fork()
    if pid == 0:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 1), os.dup2(fd, 2)
        try:
            run(load_config(None, overrides), callbacks=[Kill(task, when)])
            os._exit(0)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
    status = os.waitpid(pid, 0)[1]
    print(-os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status), flush=True)
"""



def final_state(run) -> dict:
    """The module state (weights and method state) a finished run saved."""
    return torch.load(run / "checkpoints" / "state.pt", weights_only=True)["module"]


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


class StepCheckpoints(L.Callback):
    """What a checkpoint taken at each training step would hold (the module's state as the
    callbacks' `on_train_batch_end`, where `TaskCheckpoint` writes, sees it), compared with the
    state the run goes on from (at the next step's start, or the end of training)."""

    def __init__(self):
        self.saved: bytes | None = None
        self.steps: list[tuple[int, int, bool]] = []  # (task, step, the checkpoint has the state the run goes on from)

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        buf = io.BytesIO()
        torch.save(pl_module.state_dict(), buf)
        self.saved = buf.getvalue()

    def compare(self, trainer, pl_module) -> None:
        if self.saved is not None:
            saved = torch.load(io.BytesIO(self.saved), weights_only=True)
            self.steps.append((pl_module.current_task, trainer.global_step, same(saved, pl_module.state_dict())))
            self.saved = None

    def on_train_batch_start(self, trainer, pl_module, *args) -> None:
        self.compare(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self.compare(trainer, pl_module)


# settings under which a method's per-step update shows: HAT clamps its embeddings only where a
# step takes one past the bound
STEP_EXTRA = {**EXTRA, "hat": ["optim.lr=1"]}


@pytest.mark.parametrize("method", CASES)
def test_every_step_is_checkpointed_with_the_method_state_the_run_goes_on_with(method):
    # the rule of the method API (docs/methods.md): a step's state update comes before any
    # checkpoint of that step; SI's path integral and PackNet's released weights are updated at
    # every step of a task (after its pruning), so a late update shows at once
    probe = StepCheckpoints()
    metrics = run(load_config(None, [*QUICK, "data.n_tasks=2", *case_overrides(method, STEP_EXTRA)]), callbacks=[probe])
    assert len(probe.steps) > 0 or not any(metrics["trainable_params_per_task"])
    assert [s for s in probe.steps if not s[2]] == []


@pytest.fixture(scope="module")
def killer():
    """`kill(task, when, overrides, log)`: the exit status of a run that kills itself there."""
    # the killed runs use this process's torch threads: sums over another thread count can differ in
    # the last bit (A-GEM's gradient dot products do), and the final states are compared bit for bit
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "WANDB_MODE": "offline", "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen([sys.executable, "-u", "-c", KILLER], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def kill(task: int, when: str, overrides: list[str], log) -> int:
        proc.stdin.write(json.dumps([task, when, overrides, str(log)]) + "\n")
        proc.stdin.flush()
        return int(proc.stdout.readline())

    yield kill
    proc.stdin.close()
    proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize("method", CASES)
def test_sigkilled_run_resumes_mid_task_and_at_a_boundary_to_the_uninterrupted_metrics(tmp_path, method_run, killer, capsys, method):
    full = method_run(method)
    overrides = [*RUN, *case_overrides(method)]
    killed = tmp_path / "killed"
    last = killed / "checkpoints" / "last.ckpt"

    def tasks_done() -> int:  # finished tasks survive a kill (none yet when killed in the first)
        partial = killed / "metrics.json"
        return json.loads(partial.read_text())["tasks_done"] if partial.exists() else 0

    # joint learns everything in its first fit: that is the task to kill it in
    mid = 0 if method_of(method).joint else 1
    trains = json.loads((full / "metrics.json").read_text())["trainable_params_per_task"][mid] > 0
    resume = [f"output_dir={killed}"]
    if trains:  # a method with nothing to train in that task has no step to kill it at
        assert killer(mid, "mid", [*overrides, *resume], tmp_path / "mid.log") == -signal.SIGKILL, (tmp_path / "mid.log").read_text()[-2000:]
        assert tasks_done() == mid and torch.load(last, weights_only=True)["continual"]["task"] == mid
        resume = [f"resume={killed}"]
    # the resumed run (or, with nothing to train, the first) is killed as the last task starts
    assert killer(2, "boundary", [*overrides, *resume], tmp_path / "boundary.log") == -signal.SIGKILL, (tmp_path / "boundary.log").read_text()[-2000:]
    out = (tmp_path / "boundary.log").read_text()
    assert (f"{mid} of 3 tasks already done" in out and f"resuming task {mid + 1} mid-way" in out) == trains
    assert tasks_done() == 2 and not last.exists()
    capsys.readouterr()
    assert main(["fit", f"resume={killed}", *overrides]) == 0
    out = capsys.readouterr().out
    assert "2 of 3 tasks already done" in out and "mid-way" not in out
    assert comparable(killed) == comparable(full)
    # and the weights and method state it ends with, bit for bit: a state restored slightly wrong
    # can leave every count unchanged
    assert same(final_state(killed), final_state(full))


@pytest.mark.parametrize("method", CASES)
def test_a_run_read_back_reproduces_its_final_accuracies(method_run, method):
    """Its class-IL task-given accuracy too: for a method that predicts from `logits`, recomputed
    by hand as the best of each task's own classes (`Task.classes`); for the router and SupSup, as
    their `evaluate` gives it."""
    from continual.models.continual_module import ContinualModule

    run = load_run(method_run(method))
    class_il = run.cfg.scenario == "class"
    from_logits = type(run.module).evaluate is ContinualModule.evaluate
    correct, task_given = [], []
    with torch.no_grad():
        for task in run.stream.tasks:
            x, y = task.x_test, task.y_test
            batch = {"x": x, "y": y, "task": torch.full_like(y, task.id), "index": torch.arange(len(y)),
                     "probe": torch.zeros(len(y), dtype=torch.bool)}
            pred = run.module.evaluate(batch)
            correct.append(int((pred["pred"] == pred["target"]).sum()))
            if class_il:
                own = torch.tensor(task.classes)
                by_hand = own[run.module.logits(batch)[:, own].argmax(1)] if from_logits else pred["task_given"]
                task_given.append(int((by_hand == y).sum()))
    assert correct == run.metrics["counts"]["correct"][-1]
    assert (task_given or None) == (run.metrics["task_given"] or {}).get("counts", {}).get("correct", [None])[-1]
    assert (run.metrics["task_given"] is None) == (not class_il)
