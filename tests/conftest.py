import os
import signal
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data"
SIGNALS = signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}


@pytest.fixture
def mnist_root() -> Path:
    if not (SHARED_MNIST / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        pytest.skip(f"real MNIST not found at {SHARED_MNIST}/MNIST/raw (the project's shared data folder)")
    return SHARED_MNIST


def pytest_collection_modifyitems(items):
    """Under pytest-xdist (the README's `-n auto --dist loadgroup`), the tests that share the
    session's per-method runs (`method_run`) go to one worker, so each run is made once."""
    for item in items:
        if "method_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("method_run"))


@pytest.fixture(scope="session")
def method_run(tmp_path_factory):
    """`get(case, *overrides)`: the run directory of `case` under `cases.RUN` (plus overrides),
    run in this process once per session; the resume, DDP and mixed-precision tests compare with
    the same runs. Without a GPU, `trainer.accelerator=cpu` is what `auto` gives: one run serves both."""
    import torch

    from cases import RUN, case_overrides
    from continual.cli.main import main

    cache = {}

    def get(case: str, *overrides: str) -> Path:
        if not torch.cuda.is_available():
            overrides = tuple(o for o in overrides if o != "trainer.accelerator=cpu")
        if (case, overrides) not in cache:
            out = tmp_path_factory.mktemp(case) / "run"
            assert main(["fit", f"output_dir={out}", *RUN, *case_overrides(case), *overrides]) == 0
            cache[case, overrides] = out
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
