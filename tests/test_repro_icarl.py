"""repro/icarl_loop.py, Mammoth's iCaRL in plain PyTorch: its herding is the platform's (Algorithm 4
on the same features picks the same exemplars in the same order), and its two ways of taking a
class mean are what they say, by hand."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

REPRO = Path(__file__).resolve().parents[1] / "repro"


@pytest.fixture(scope="module")
def loop():
    sys.path.insert(0, str(REPRO))  # it imports buzzega2020_loop beside it, as when run as a script
    try:
        spec = importlib.util.spec_from_file_location("icarl_loop", REPRO / "icarl_loop.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(REPRO))
    return module


def test_mammoths_herding_picks_the_platforms_exemplars(loop):
    from continual.baselines.icarl import herding_order

    feats = torch.nn.functional.normalize(torch.randn(60, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64), dim=1)
    assert loop.herd(feats, 20) == herding_order(feats, 20).tolist()
    assert loop.herd(feats[:5], 20) == herding_order(feats[:5], 20).tolist()  # fewer rows than m: each row once


def test_class_means_exact_and_by_halving(loop):
    feats = torch.arange(30.0).reshape(30, 1)
    assert loop.class_mean(feats, "exact").item() == 14.5
    # batches of 10 with means 4.5, 14.5, 24.5: ((4.5 + 14.5) / 2 + 24.5) / 2, the last batch weighs half
    assert loop.class_mean(feats, "halving").item() == ((4.5 + 14.5) / 2 + 24.5) / 2
