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
from continual.errors import ConfigError
from continual.grid import Cell, Runner

QUICK = ["data.n_tasks=2", "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "logger.kind=none"]
BROKEN = ["data.stream=split_mnist"]  # a valid config; no MNIST at data.root


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
    cell = Cell("[1/1]", tmp_path / "cell", None, [*QUICK, *BROKEN, f"data.root={tmp_path / 'nowhere'}"])
    out = run(cell, subprocess)
    assert out.metrics is None and "MNIST" in out.error and "\n" not in out.error
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


@pytest.mark.slow  # subprocesses: seconds each
def test_ctrl_c_stops_a_subprocess_cell_and_the_rest_and_says_how_to_continue(tmp_path):
    proc, out = long_sweep(tmp_path)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the whole process group
    assert proc.wait(timeout=120) == 130
    assert proc.stderr.read().decode().strip().splitlines()[-1] == (
        f"continual: error: stopped by Ctrl-C in trial {out / 'run-000'}; run the same sweep command again to continue "
        "(finished trials are kept, this one starts over)"
    )
    assert "continual: error: interrupted by Ctrl-C" in (out / "run-000.log").read_text()  # the trial stopped itself
    assert not (out / "run-001").exists()


@pytest.mark.slow  # subprocesses: seconds each
def test_sigterm_to_the_sweep_alone_stops_its_trial_first_and_leaves_no_orphan(tmp_path):
    from continual.rundir.layout import LOCK

    proc, out = long_sweep(tmp_path)
    trial = out / "run-000"
    pid = int((trial / LOCK).read_text().split()[1])  # the trial's `continual fit` wrote it when it took its folder
    os.kill(proc.pid, signal.SIGTERM)  # the sweep alone, as `kill` or a `timeout` wrapper sends it
    assert proc.wait(timeout=120) == 143
    assert proc.stderr.read().decode().strip().splitlines()[-1] == (
        f"continual: error: stopped by SIGTERM in trial {trial}; run the same sweep command again to continue "
        "(finished trials are kept, this one starts over)"
    )
    with pytest.raises(ProcessLookupError):  # the trial ended before the sweep did
        os.kill(pid, 0)
    from continual.rundir.folder import holder

    assert holder(trial) is None
    assert not (trial / "metrics.json").exists() and not (out / "results.json").exists()  # stopped: no result, now or later
