import hashlib
import json
import os
import signal
from pathlib import Path

import pytest

from helpers import shared_once

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data"
SIGNALS = signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}


def pytest_configure(config):
    """Under pytest-xdist each worker, and every process it starts, gets its share of the cores as
    torch threads: two workers of two threads each on two cores spend much of their time waiting
    on each other (the suite took 15 minutes instead of 10), and an in-process run and a
    subprocess run of the same config then use the same thread count."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        import torch

        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // int(workers))))
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture
def mnist_root() -> Path:
    if not (SHARED_MNIST / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        pytest.skip(f"real MNIST not found at {SHARED_MNIST}/MNIST/raw (the project's shared data folder)")
    return SHARED_MNIST


@pytest.fixture(scope="session")
def method_run(tmp_path_factory):
    """`get(case, *overrides)`: the run directory of `case` under `cases.RUN` (plus overrides),
    made once per test session by whichever xdist worker asks first (`shared_once`); the resume,
    DDP and mixed-precision tests compare with the same runs. Without a GPU,
    `trainer.accelerator=cpu` is what `auto` gives: one run serves both."""
    import torch

    from cases import RUN, case_overrides
    from continual.cli.main import main

    cache = {}

    def get(case: str, *overrides: str) -> Path:
        if not torch.cuda.is_available():
            overrides = tuple(o for o in overrides if o != "trainer.accelerator=cpu")
        if (case, overrides) not in cache:
            key = hashlib.sha1(json.dumps([case, overrides]).encode()).hexdigest()[:12]
            with shared_once(tmp_path_factory, f"method_run_{case}_{key}") as (folder, make):
                if make:
                    assert main(["fit", f"output_dir={folder / 'run'}", *RUN, *case_overrides(case), *overrides]) == 0
            cache[case, overrides] = folder / "run"
        return cache[case, overrides]

    return get


@pytest.fixture(autouse=True)
def _isolate_cwd(tmp_path, monkeypatch):
    """Runs write runs/ and wandb/ under the test's own folder, never into the checkout."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CONTINUAL_RUN_DIR", raising=False)


@pytest.fixture(autouse=True)
def _restore_signal_handlers():
    """A run in this process may leave a signal handler behind (Lightning's SIGTERM notifier, a
    Ctrl-C handler): the next test would see a SIGTERM or Ctrl-C handled as in a run. Put back
    every handler this test changed."""
    before = {s: signal.getsignal(s) for s in SIGNALS}
    yield
    for s, handler in before.items():
        if handler is not None and signal.getsignal(s) != handler:
            signal.signal(s, handler)


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """A DDP launch in this process sets torch's thread count and OMP_NUM_THREADS (Lightning's
    `_set_num_threads_if_needed`), and sums over another thread count can differ in the last bit:
    a run this worker made later would not equal, bit for bit, the same run another worker made."""
    import torch

    threads, omp = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    yield
    torch.set_num_threads(threads)
    if omp is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = omp
