"""The grid runner's keep-alive workers: one worker runs cell after cell, each in a fresh fork, so a
cell finds none of the global state the cell before it set, and a crashing cell fails alone."""

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from continual.grid import Cell, Runner

QUICK = ["data.n_tasks=2", "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "logger.kind=none"]

# user methods whose __init__ runs in the cell: record the process state it found, then change it
METHODS = '''
import json, logging, os, signal, sys, time, warnings
import torch
from continual.baselines.finetune import FineTune

class Leaky(FineTune):
    def __init__(self, *args, **kwargs):
        with open(f"/proc/{os.getppid()}/stat") as f:
            worker_parent = int(f.read().rsplit(")", 1)[1].split()[1])
        found = {"pid": os.getpid(), "worker": os.getppid(), "worker_parent": worker_parent, "env": os.environ.get("LEAKED"), "threads": torch.get_num_threads(),
                 "cwd": os.getcwd(), "handlers": len(logging.getLogger().handlers), "sys_path": "/leaked" in sys.path,
                 "warnings": any(f[1] is not None and f[1].pattern == "leaked" for f in warnings.filters),
                 "sigusr1": signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL, "module_attr": getattr(FineTune, "leaked", None)}
        with open(os.path.join(RECORDS, f"{os.getpid()}.json"), "w") as f:
            json.dump(found, f)
        os.environ["LEAKED"] = "yes"
        torch.set_num_threads(7)
        logging.getLogger().addHandler(logging.NullHandler())
        sys.path.append("/leaked")
        warnings.filterwarnings("ignore", "leaked")
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        FineTune.leaked = True
        super().__init__(*args, **kwargs)
        os.chdir("/")

class Exits(FineTune):
    def __init__(self, *args, **kwargs):
        os._exit(3)

class Segfaults(FineTune):
    def __init__(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGSEGV)

class Sleeps(FineTune):  # and ends on SIGTERM (a run would save its checkpoint first)
    def __init__(self, *args, **kwargs):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        print("sleeping", os.getpid(), os.getppid(), flush=True)
        time.sleep(600)
'''


@pytest.fixture
def methods(tmp_path, monkeypatch) -> Path:
    """methods.py on the workers' PYTHONPATH; the folder its Leaky cells write their records to."""
    records = tmp_path / "records"
    records.mkdir()
    (tmp_path / "methods.py").write_text(f"RECORDS = {str(records)!r}\n{METHODS}")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), *sys.path]))
    return records


def run_cells(tmp_path, methods_and_seeds, **runner) -> dict:
    r = Runner("compare", "cell", "--out", subprocess=True, **runner)
    cells = [Cell(f"[{i}]", tmp_path / f"c{i}", "split_digits.yaml", [*QUICK, f"method=methods:{m}", f"seed={seed}"])
             for i, (m, seed) in enumerate(methods_and_seeds)]
    outcomes = {}
    r.run_many(zip(cells, r.check(cells)), lambda cell, o: outcomes.__setitem__(cell.run_dir.name, o))
    return outcomes


@pytest.mark.slow  # a worker: seconds
def test_cells_in_one_worker_find_none_of_the_state_the_cell_before_them_set(tmp_path, methods):
    outcomes = run_cells(tmp_path, [("Leaky", 0), ("Leaky", 1), ("Leaky", 0)])
    assert all(o.metrics["complete"] and o.rc == 0 for o in outcomes.values())
    records = [json.loads(p.read_text()) for p in methods.iterdir()]
    assert len(records) == 3 and len({r.pop("pid") for r in records}) == 3  # a process per cell
    assert len({r.pop("worker") for r in records}) == 1  # forked by one worker
    assert {r.pop("worker_parent") for r in records} == {os.getpid()}  # which this process started
    assert records[0] == records[1] == records[2] == {
        "env": None, "threads": records[0]["threads"], "cwd": os.getcwd(), "handlers": records[0]["handlers"], "sys_path": False,
        "warnings": False, "sigusr1": True, "module_attr": None}
    assert records[0]["threads"] != 7
    # the same cell gives the same numbers whether or not another cell ran in the worker before it
    assert outcomes["c0"].metrics["accuracy_matrix"] == outcomes["c2"].metrics["accuracy_matrix"]


@pytest.mark.slow  # a worker: seconds
def test_a_runner_in_a_with_block_keeps_its_workers_across_calls_and_ends_them_with_the_block(tmp_path, methods):
    """compare's stages (rows sized by another row's memory run after it) share one worker; none outlives the block."""
    r = Runner("compare", "cell", "--out", subprocess=True)
    cells = [Cell(f"[{i}]", tmp_path / f"c{i}", "split_digits.yaml", [*QUICK, "method=methods:Leaky", f"seed={i}"]) for i in range(2)]
    outcomes = []
    with r:
        r.start_workers()  # before the cells' checks, as sweep and compare start them
        for cell in cells:  # one call per stage
            r.run_many(iter([(cell, r.check([cell])[0])]), lambda cell, o: outcomes.append(o))
    assert [o.rc for o in outcomes] == [0, 0]
    (worker,) = {json.loads(p.read_text())["worker"] for p in methods.iterdir()}  # both cells forked by one worker
    with pytest.raises(ProcessLookupError):  # ended and reaped with the block
        os.kill(worker, 0)


@pytest.mark.slow  # a worker: seconds
def test_a_pool_imports_once_its_second_worker_is_forked_from_the_first_and_both_end_with_it(tmp_path, methods):
    outcomes = run_cells(tmp_path, [("Leaky", seed) for seed in range(4)], workers=2)
    assert all(o.rc == 0 and o.metrics["complete"] for o in outcomes.values())
    parents = {}
    for record in (json.loads(p.read_text()) for p in methods.iterdir()):
        parents[record["worker"]] = record["worker_parent"]
    assert len(parents) == 2  # two workers ran the four cells
    (first,) = [w for w, parent in parents.items() if parent == os.getpid()]
    (sibling,) = [w for w, parent in parents.items() if parent == first]  # forked from the first: no import of its own
    for pid in (first, sibling):  # ended and reaped (the sibling by the first) with the pool
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.slow  # a worker: seconds
def test_workers_with_a_gpu_each_are_started_apart_since_the_device_is_set_before_torch_starts(tmp_path, methods, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")  # no such devices here: the cells run on the CPU
    outcomes = run_cells(tmp_path, [("Leaky", 0), ("Leaky", 1)], workers=2)
    assert all(o.rc == 0 for o in outcomes.values())
    parents = {r["worker"]: r["worker_parent"] for r in (json.loads(p.read_text()) for p in methods.iterdir())}
    assert len(parents) == 2 and set(parents.values()) == {os.getpid()}


@pytest.mark.slow  # a worker: seconds
def test_a_forked_worker_killed_under_its_cell_fails_that_cell_alone(tmp_path, methods):
    killer = kill_the_worker_of(tmp_path / "c1.log")  # c1 runs in the second (forked) worker
    outcomes = run_cells(tmp_path, [("Leaky", 0), ("Sleeps", 0), ("Leaky", 1)], workers=2)
    killer.join()
    assert outcomes["c1"].error == "its grid worker ended while it ran (exit unknown: a forked worker); the next cell starts a new one"
    assert outcomes["c1"].rc == -signal.SIGKILL
    assert all(outcomes[c].error is None and outcomes[c].metrics["complete"] for c in ("c0", "c2"))
    cell = int((tmp_path / "c1.log").read_text().split()[-2])
    assert ended(cell)  # killed by the runner: its worker can no longer stop it


def kill_the_worker_of(log: Path) -> threading.Thread:
    """A thread that SIGKILLs the worker of the Sleeps cell writing `log` once it sleeps (as the OOM killer would)."""
    def kill():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            text = log.read_text() if log.exists() else ""
            if "sleeping" in text:
                os.kill(int(text.split()[-1]), signal.SIGKILL)
                return
            time.sleep(0.1)

    killer = threading.Thread(target=kill)
    killer.start()
    return killer


def ended(pid: int, wait_s: float = 10.0) -> bool:
    """`pid` has exited (an orphan's zombie counts: reaping it is init's job)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow  # a worker: seconds
def test_a_cell_that_crashes_its_process_fails_alone_and_the_worker_runs_the_next(tmp_path, methods):
    outcomes = run_cells(tmp_path, [("Exits", 0), ("Segfaults", 0), ("Leaky", 0)])
    assert (outcomes["c0"].rc, outcomes["c0"].error) == (3, "exit 3")
    assert (outcomes["c1"].rc, outcomes["c1"].error) == (-signal.SIGSEGV, f"exit {-signal.SIGSEGV}")
    assert outcomes["c2"].error is None and outcomes["c2"].metrics["complete"]
    (record,) = [json.loads(p.read_text()) for p in methods.iterdir()]
    assert record["worker"] != os.getpid()


@pytest.mark.slow  # a worker: seconds
def test_a_timed_out_cell_is_stopped_and_the_worker_runs_the_next(tmp_path, methods):
    outcomes = run_cells(tmp_path, [("Sleeps", 0), ("Leaky", 0)], timeout=8)  # counted once the worker has imported
    assert outcomes["c0"].error == "timed out after 8 s" and "sleeping" in (tmp_path / "c0.log").read_text()
    assert outcomes["c1"].error is None and outcomes["c1"].metrics["complete"]


@pytest.mark.slow  # a worker: seconds
def test_a_worker_whose_runner_goes_stops_its_cell_and_leaves_no_process(tmp_path, methods):
    from continual.grid_worker import Worker

    worker = Worker({"WANDB_MODE": "offline"})
    cell = Cell("[c]", tmp_path / "c", "split_digits.yaml", [*QUICK, "method=methods:Sleeps"])
    fd = os.open(cell.log, os.O_WRONLY | os.O_CREAT)
    proc = worker.start(cell.fit_command(), fd)
    os.close(fd)
    deadline = time.monotonic() + 120
    while "sleeping" not in cell.log.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    server = worker.proc
    worker.close()  # as if the runner were gone: its end of the socket closes
    assert server.returncode == 0
    with pytest.raises(ProcessLookupError):  # the cell got SIGTERM and was reaped
        os.kill(proc.pid, 0)


@pytest.mark.slow  # three processes: seconds
def test_a_ddp_cell_in_a_worker_starts_its_second_rank_as_continual_fit_and_equals_one_process(tmp_path):
    """Lightning starts rank 1 by running `python -m <__main__'s module> <sys.argv[1:]>` again: in a
    worker's cell that must be `continual fit ...`, not the worker."""
    r = Runner("compare", "cell", "--out", subprocess=True)
    small = [*QUICK, "trainer.accelerator=cpu", "data.eval_batch_size=16"]
    cells = [Cell("[ddp]", tmp_path / "ddp", None, [*small, "trainer.devices=2", "trainer.strategy=ddp"]),
             Cell("[one]", tmp_path / "one", None, small)]
    outcomes = {}
    r.run_many(zip(cells, r.check(cells)), lambda cell, o: outcomes.__setitem__(cell.run_dir.name, o))
    assert outcomes["ddp"].rc == outcomes["one"].rc == 0
    assert outcomes["ddp"].metrics["accuracy_matrix"] == outcomes["one"].metrics["accuracy_matrix"]


@pytest.mark.slow  # a worker: seconds
def test_a_worker_killed_under_its_cell_fails_that_cell_and_the_next_cell_gets_a_new_worker(tmp_path, methods):
    killer = kill_the_worker_of(tmp_path / "c0.log")
    outcomes = run_cells(tmp_path, [("Sleeps", 0), ("Leaky", 0)])
    killer.join()
    assert outcomes["c0"].error == "its grid worker ended while it ran (exit -9); the next cell starts a new one"
    assert outcomes["c0"].rc == -signal.SIGKILL
    assert outcomes["c1"].error is None and outcomes["c1"].metrics["complete"]
