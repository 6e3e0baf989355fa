import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def mnist_root() -> Path:
    if not (SHARED_MNIST / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        pytest.skip(f"real MNIST not found at {SHARED_MNIST}/MNIST/raw (the project's shared data folder)")
    return SHARED_MNIST


@pytest.fixture(autouse=True)
def _isolate_cwd(tmp_path, monkeypatch):
    """Runs write runs/ and wandb/ under the test's own folder, never into the checkout."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CONTINUAL_RUN_DIR", raising=False)
