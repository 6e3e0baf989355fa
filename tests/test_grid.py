"""The grid runner under compare and sweep: one cell runs, skips, fails and is refused the same way
in this process and in a subprocess."""

import json
import os
import signal
import subprocess as sp
import sys
import time
from pathlib import Path

import pytest

from continual.config import load_config
from continual.errors import ConfigError, DataError
from continual.grid import Cell, Runner

QUICK = ["data.n_tasks=2", "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "logger.kind=none"]
BROKEN = ["data.stream=helpers:broken_stream"]  # a valid config whose cell fails


def runner(subprocess: bool) -> Runner:
    return Runner("compare", "cell", "--out", subprocess=subprocess)


def run(cell: Cell, subprocess: bool):
    r = runner(subprocess)
    (cfg,) = r.check([cell])
    return r.run(cell, cfg)


def test_grouping_comes_first_and_the_folder_last():
    cell = Cell("[1/1]", run_dir=Path("/tmp/x/a"), config=None, overrides=["logger.job_type=mine", "output_dir=elsewhere"],
                group="g/row", job_type="task", tags=["t1", "t2"])
    cfg = load_config(cell.config, cell.fit_overrides())
    assert (cfg.logger.group, cfg.logger.job_type, list(cfg.logger.tags)) == ("g/row", "mine", ["t1", "t2"])  # the cell's own setting wins
    assert (cfg.output_dir, cfg.overwrite) == ("/tmp/x/a", True)  # the runner decides where a cell's results go
    assert cell.log.as_posix() == "/tmp/x/a.log"


def test_a_cell_gives_the_same_run_in_process_and_in_a_subprocess_and_is_then_skipped(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(sys.path))  # the subprocess imports this checkout
    cells = {mode: Cell(f"[{mode}]", tmp_path / mode, "split_digits.yaml", QUICK, group="g") for mode in ("inproc", "sub")}
    first = {mode: run(cell, mode == "sub") for mode, cell in cells.items()}
    written = {mode: json.loads((tmp_path / mode / "metrics.json").read_text()) for mode in cells}
    assert first["inproc"].metrics["accuracy_matrix"] == written["inproc"]["accuracy_matrix"] == written["sub"]["accuracy_matrix"]
    assert first["sub"].metrics == written["sub"] and first["sub"].rc == 0
    assert not any(o.skipped or o.error for o in first.values())
    assert (tmp_path / "sub.log").is_file() and not (tmp_path / "inproc.log").exists()  # a subprocess's output; no failure
    capsys.readouterr()
    for mode, cell in cells.items():  # finished: read back, not run again, in either mode
        again = run(cell, mode == "sub")
        assert again.skipped and again.metrics == written[mode]
    assert capsys.readouterr().out.count("done earlier, skipped") == 2
    changed = Cell("[x]", tmp_path / "sub", "split_digits.yaml", [*QUICK, "seed=1"])
    with pytest.raises(ConfigError, match=r"1 finished cell\(s\) were run with another config .*sub \(seed: 0 -> 1\).*pass --out"):
        runner(True).check([changed])
    relabelled = Cell("[x]", tmp_path / "sub", "split_digits.yaml", [*QUICK, "logger.kind=csv"], group="other")
    assert runner(True).check([relabelled])  # where a run logs to does not change its results


@pytest.mark.parametrize("subprocess", [False, True], ids=["in_process", "subprocess"])
def test_a_failed_cell_keeps_its_error_beside_its_folder(tmp_path, monkeypatch, subprocess):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(sys.path))
    cell = Cell("[1/1]", tmp_path / "cell", None, [*QUICK, *BROKEN])
    out = run(cell, subprocess)
    assert out.metrics is None and "no data in this stream" in out.error and "\n" not in out.error
    log = (tmp_path / "cell.log").read_text()
    if subprocess:  # the process's output; the error is its `continual: error:` line
        assert out.rc == 2 and f"continual: error: {out.error}" in log
    else:  # the traceback, and the error named by its type
        assert out.rc is None and out.error.startswith("DataError: ") and "Traceback" in log and out.error.split(": ", 1)[1] in log
        fixed = Cell("[1/1]", tmp_path / "cell", None, QUICK)
        assert run(fixed, subprocess).metrics["complete"] and not (tmp_path / "cell.log").exists()  # no stale error beside it


def long_sweep(tmp_path) -> tuple[sp.Popen, Path]:
    """A sweep whose first trial trains until stopped, started and waited for until that trial is training."""
    sweep, out = tmp_path / "sweep.yaml", tmp_path / "sweep"
    sweep.write_text(
        "method: grid\nmetric: {name: final/acc, goal: maximize}\nparameters: {seed: {values: [0, 1]}}\n"
        "command: [continual, fit, trainer.max_epochs=1000, logger.kind=none, trainer.enable_progress_bar=false, '${args_no_hyphens}']\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = sp.Popen([sys.executable, "-m", "continual.cli.main", "sweep", str(sweep), "--dir", str(out)], env=env,
                    stdout=sp.DEVNULL, stderr=sp.PIPE, start_new_session=True)
    deadline = time.monotonic() + 300
    while not (out / "run-000" / "config.yaml").is_file():  # the first trial is training
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()
        time.sleep(0.2)
    return proc, out


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux: /proc/<pid>/stat's fourth field)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.slow  # subprocesses: seconds each
def test_ctrl_c_stops_a_subprocess_cell_and_the_rest_and_says_how_to_continue(tmp_path):
    proc, out = long_sweep(tmp_path)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the whole process group
    assert proc.wait(timeout=120) == 130
    assert proc.stderr.read().decode().strip().splitlines()[-1] == (
        f"continual: error: stopped by Ctrl-C in trial {out / 'run-000'}; run the same sweep command again to continue "
        "(finished trials are kept, this one resumes from its checkpoint)"
    )
    assert "continual: error: interrupted by Ctrl-C" in (out / "run-000.log").read_text()  # the trial stopped itself
    assert not (out / "run-001").exists()


@pytest.mark.slow  # subprocesses: seconds each
def test_sigterm_to_the_sweep_alone_stops_its_trial_first_and_leaves_no_orphan(tmp_path):
    from continual.rundir.layout import LOCK

    proc, out = long_sweep(tmp_path)
    trial = out / "run-000"
    pid = int((trial / LOCK).read_text().split()[1])  # the trial's `continual fit` wrote it when it took its folder
    workers = children(proc.pid)
    assert len(workers) == 1 and pid in children(workers[0])  # forked by the sweep's keep-alive worker
    os.kill(proc.pid, signal.SIGTERM)  # the sweep alone, as `kill` or a `timeout` wrapper sends it
    assert proc.wait(timeout=120) == 143
    assert proc.stderr.read().decode().strip().splitlines()[-1] == (
        f"continual: error: stopped by SIGTERM in trial {trial}; run the same sweep command again to continue "
        "(finished trials are kept, this one resumes from its checkpoint)"
    )
    for ended in (pid, *workers):  # the trial ended before the sweep did, and so did its worker
        with pytest.raises(ProcessLookupError):
            os.kill(ended, 0)
    from continual.rundir.lock import holder

    assert holder(trial) is None
    assert not (trial / "metrics.json").exists() and not (out / "results.json").exists()  # stopped: no result, now or later


def test_workers_share_the_cores_as_torch_threads_and_get_a_gpu_each_or_share_it():
    from continual.grid import describe_workers, visible_gpus, worker_env

    assert [worker_env(s, 2, 2, [], {}) for s in (0, 1)] == [{"OMP_NUM_THREADS": "1"}] * 2
    assert worker_env(0, 3, 16, [], {}) == {"OMP_NUM_THREADS": "5"}  # 16 // 3
    assert worker_env(0, 4, 2, [], {}) == {"OMP_NUM_THREADS": "1"}  # never 0
    assert worker_env(1, 2, 2, [], {"OMP_NUM_THREADS": "2"}) == {}  # the caller's pin stays
    assert [worker_env(s, 3, 8, ["4", "7"], {})["CUDA_VISIBLE_DEVICES"] for s in range(3)] == ["4", "7", "4"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,5"}) == ["2", "5"] and visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    line = describe_workers(2, 2, [], {})
    assert "1 torch thread(s) each (2 cores / 2 workers)" in line and "last digits" in line
    assert "GPU 0 shared" in describe_workers(2, 2, ["0"], {"OMP_NUM_THREADS": "1"})


def test_run_many_draws_a_job_only_when_a_worker_is_free_and_reports_each_outcome(tmp_path, monkeypatch):
    """A sweep's next trial depends on the results so far: the pool must not draw ahead."""
    from continual.grid import Outcome

    started, drawn = [], []

    def fake_run(self, cell, cfg, worker=None, passing=None):  # the cell's subprocess, as the pool sees it
        started.append((cell.label, worker.env))
        time.sleep(0.05)
        return Outcome(metrics={"acc": float(cell.label)})

    monkeypatch.setattr(Runner, "run", fake_run)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setattr("continual.grid.cores", lambda: 4)
    got = {}

    def jobs():
        for i in range(5):
            drawn.append((i, len(got)))  # how many outcomes were in when job i was drawn
            yield Cell(str(i), tmp_path / str(i), None), None

    Runner("sweep", "trial", "--dir", workers=2).run_many(jobs(), lambda cell, o: got.__setitem__(cell.label, o.metrics["acc"]))
    assert got == {str(i): float(i) for i in range(5)}
    assert [d[1] for d in drawn[:2]] == [0, 0] and all(done >= i - 1 for i, done in drawn[2:])  # at most 2 ahead
    assert {(env["OMP_NUM_THREADS"], env["WANDB_MODE"]) for _, env in started} == {("2", "offline")}


@pytest.mark.slow  # a subprocess: seconds; the lines it reads are tested above
def test_a_subprocess_cell_says_where_it_is_at_least_every_minute(tmp_path, monkeypatch, capsys):
    """The parent reads the cell's log (here its progress bar) and prints a line to stderr each period."""
    import re

    import continual.callbacks.heartbeat as heartbeat

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(sys.path))
    monkeypatch.setattr(heartbeat, "EVERY_S", 0.5)  # a minute, shortened
    cell = Cell("[c]", tmp_path / "c", "split_digits.yaml", [*QUICK[:2], "trainer.max_epochs=2", "logger.kind=none"])
    assert run(cell, True).metrics["complete"]
    lines = capsys.readouterr().err.splitlines()
    # searched, not matched whole: once in a full parallel run no line matched whole (an unended line of
    # something else in this process's stderr before it is one guess; not reproduced)
    beats = [line for line in lines if re.search(r"\[c\]: (starting|task [12]/2, epoch [01]), (\d+m)?\d+s elapsed$", line)]
    assert beats and any("task" in line for line in beats)


def test_the_heartbeat_prints_where_training_is_once_its_period_has_passed():
    import io
    from types import SimpleNamespace

    from continual.callbacks.heartbeat import Heartbeat, progress_in

    now = [100.0]
    out = io.StringIO()
    beat = Heartbeat(every_s=60, clock=lambda: now[0], stream=out)
    trainer, module = SimpleNamespace(global_rank=0, current_epoch=3), SimpleNamespace(current_task=1, n_tasks=5)
    for t in (130.0, 159.9, 160.0, 200.0, 225.0):  # a line at 160 s and at 225 s (60 s after the last), none between
        now[0] = t
        beat.on_train_batch_end(trainer, module)
    assert out.getvalue().splitlines() == ["task 2/5, epoch 3, 1m00s elapsed", "task 2/5, epoch 3, 2m05s elapsed"]
    assert progress_in(out.getvalue()) == (2, 5, 3)
    assert progress_in("Task 1/2 epoch 0: 100%|##| 9/9 [00:01<00:00]\rTask 2/2 epoch 1:  50%|#") == (2, 2, 1)  # the bar's own text
    assert progress_in("no training yet") is None


def test_an_in_process_cell_with_the_bar_off_prints_its_heartbeat_to_stderr(tmp_path, monkeypatch, capsys):
    import continual.callbacks.heartbeat as heartbeat

    monkeypatch.setattr(heartbeat, "EVERY_S", 0.0)  # every batch
    assert run(Cell("[c]", tmp_path / "c", "split_digits.yaml", QUICK), False).metrics["complete"]
    out, err = capsys.readouterr()
    assert "task 1/2, epoch 0, " in err and "task 2/2, epoch 0, " in err and "elapsed" not in out


@pytest.mark.slow  # subprocesses: seconds each
def test_sigterm_stops_every_worker_and_the_same_command_resumes_them(tmp_path):
    from continual.grid import stopped  # unfinished, with a checkpoint: here, still training

    sweep, out = tmp_path / "sweep.yaml", tmp_path / "sweep"
    sweep.write_text(
        "method: grid\nmetric: {name: final/acc, goal: maximize}\nparameters: {seed: {values: [0, 1]}}\n"
        "command: [continual, fit, data.n_tasks=2, trainer.max_epochs=10, checkpoint_every_n_steps=5, logger.kind=none, "
        "trainer.enable_progress_bar=false, '${args_no_hyphens}']\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "continual.cli.main", "sweep", str(sweep), "--dir", str(out), "--workers", "2"]
    proc = sp.Popen(cmd, env=env, stdout=sp.DEVNULL, stderr=sp.PIPE, start_new_session=True)
    deadline = time.monotonic() + 300
    # Both trials are training. A task's mid-task checkpoint is deleted at its end, so ask for the
    # checkpoint or the task-boundary state, not for two mid-task checkpoints at one instant.
    while not all(stopped(out / f"run-00{i}") for i in (0, 1)):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGTERM)  # the sweep alone: it passes the signal on to both
    assert proc.wait(timeout=120) == 143
    assert proc.stderr.read().decode().strip().splitlines()[-1] == (
        "continual: error: stopped by SIGTERM: the running trials saved their checkpoints; run the same sweep command "
        "again to continue (finished trials are kept, stopped ones resume from their checkpoints)"
    )
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [(r["run"], r["params"], r["metric"]) for r in runs] == [("run-000", {"seed": 0}, None), ("run-001", {"seed": 1}, None)]
    assert all(r["status"].startswith("stopped by a signal") for r in runs)
    again = sp.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [(r["run"], r["status"]) for r in runs] == [("run-000", "finished"), ("run-001", "finished")]  # in their own folders
    for i in (0, 1):
        assert "resuming" in (out / f"run-00{i}.log").read_text()  # from its checkpoint, not started over
        assert json.loads((out / f"run-00{i}" / "metrics.json").read_text())["complete"]


def test_a_missing_data_set_is_refused_before_any_cell_runs_but_not_for_a_finished_cell(tmp_path, mnist_root):
    """Every cell reading it would fail alike: one line, before anything runs. A cell that finished
    before the data went is read back, not refused."""
    root = tmp_path / "data"
    root.mkdir()
    (root / "MNIST").symlink_to(mnist_root / "MNIST")
    done = Cell("[1/2]", tmp_path / "done", None, [*QUICK, "data.stream=split_mnist", f"data.root={root}", f"data.cache_dir={tmp_path}"])
    assert run(done, False).metrics["complete"]
    (root / "MNIST").unlink()
    todo = Cell("[2/2]", tmp_path / "todo", None, [*QUICK, "data.stream=split_mnist", "seed=1", f"data.root={root}", f"data.cache_dir={tmp_path}"])
    assert len(runner(False).check([done])) == 1  # finished: its data is not needed
    with pytest.raises(DataError) as err:
        runner(False).check([done, todo])
    assert str(err.value) == (f"[2/2]: MNIST file '{root}/MNIST/raw/train-images-idx3-ubyte' not found; set data.root to the folder "
                              "that holds MNIST/raw, or pass data.download=true to fetch it (needs network)")
    assert not (tmp_path / "todo").exists()
