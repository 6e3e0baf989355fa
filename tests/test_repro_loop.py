"""repro/vandeven2019_loop.py, the plain-PyTorch cross-check of the van de Ven & Tolias protocol,
keeps running: it learns task-IL and forgets in class-IL as the protocol predicts."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "repro" / "vandeven2019_loop.py"


@pytest.fixture(scope="module")
def loop():
    spec = importlib.util.spec_from_file_location("vandeven2019_loop", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_reference_loop_learns_task_il_and_forgets_class_il(loop, mnist_root):
    assert loop.run(str(mnist_root), "lwf", "task", seed=0, shuffle=True, iters=30) > 0.9
    # fine-tuning in class-IL keeps only the last task: about 1/5 of the test set right
    assert 0.15 < loop.run(str(mnist_root), "none", "class", seed=0, shuffle=False, iters=30) < 0.25


def test_reference_class_order_is_their_permutation(loop):
    import numpy as np

    np.random.seed(3)
    perm = np.random.permutation(list(range(10)))
    order = loop.class_order(3, shuffle=True)
    assert [int(perm[d]) for d in order] == list(range(10))  # the k-th digit in order gets label k
    assert loop.class_order(3, shuffle=False) == list(range(10))
