"""CUDA: every method gives the CPU's numbers, mixed precision works for every method, and the
benchmark runs there. The `gpu` tests skip without a GPU (CI is CPU-only); run the whole suite
on a GPU machine whenever one is available (docs/scaling.md, "GPU"). Two run on every machine:
bf16-mixed on the CPU for every method, and the refusal of a GPU that is not there.

Why counts and not exact equality: a GPU sums in another order, so a few predictions near a
decision boundary may flip after training; methods that train nothing must agree exactly.
"""

import json

import pytest
import torch

from cases import CASES
from continual.cli.main import main

GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def metrics(method_run):
    """`metrics(case, *overrides)`: the metrics of the case's shared run (conftest.method_run)."""
    return lambda case, *overrides: json.loads((method_run(case, *overrides) / "metrics.json").read_text())


def learns_nothing(method: str) -> bool:
    return method in ("ncm", "slda", "prototypes")


@GPU
@pytest.mark.gpu
@pytest.mark.parametrize("method", CASES)
def test_every_method_on_cuda_gives_the_cpu_numbers(method, metrics):
    cpu = metrics(method, "trainer.accelerator=cpu")
    gpu = metrics(method, "trainer.accelerator=gpu")
    assert gpu["counts"]["total"] == cpu["counts"]["total"]  # every test sample counted once, on both
    for c_row, g_row, totals in zip(cpu["counts"]["correct"], gpu["counts"]["correct"], cpu["counts"]["total"]):
        for c, g, n in zip(c_row, g_row, totals):
            assert abs(c - g) <= (0 if learns_nothing(method) else max(2, 0.03 * n)), (method, cpu["accuracy_matrix"], gpu["accuracy_matrix"])
    assert gpu["stored_floats"] == cpu["stored_floats"] and gpu["trainable_params_per_task"] == cpu["trainable_params_per_task"]


@GPU
@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
@pytest.mark.parametrize("method", CASES)
def test_mixed_precision_runs_every_method_with_exact_counts(method, precision, metrics):
    full = metrics(method, "trainer.accelerator=gpu")
    mixed = metrics(method, "trainer.accelerator=gpu", f"trainer.precision={precision}")
    assert mixed["complete"] and mixed["counts"]["total"] == full["counts"]["total"]
    assert all(isinstance(c, int) for row in mixed["counts"]["correct"] for c in row)  # counts, not float sums
    # half-precision activations move a few decisions; a broken path (wrong dtype, masks, padding) moves many
    assert mixed["acc"] >= full["acc"] - 0.05, (method, precision, full["acc"], mixed["acc"])


@GPU
@pytest.mark.gpu
def test_the_benchmark_runs_on_cuda_and_names_the_device(tmp_path, capsys):
    from bench.__main__ import main as bench

    assert bench(["--quick", "--skip", "tokens", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert torch.cuda.get_device_name() in out
    result = json.loads(next(tmp_path.glob("bench_*.json")).read_text())
    assert result["machine"]["device"] == torch.cuda.get_device_name()
    # both learned, on the GPU (5 epochs: one epoch of Split-Digits leaves the raw loop near 70%)
    raw, finetune = result["workloads"]["raw_5ep"], result["workloads"]["finetune_5ep"]
    assert raw["final_acc"] > 0.9 and finetune["final_acc"] > 0.9


@pytest.mark.slow
@pytest.mark.parametrize("method", CASES)
def test_bf16_mixed_on_the_cpu_runs_every_method(method, metrics):
    """CPU autocast casts matrix products to bf16 as CUDA autocast does, so dtype bugs of the
    mixed-precision path (a half-precision output written into a float32 tensor) show on CI."""
    full = metrics(method, "trainer.accelerator=cpu")
    mixed = metrics(method, "trainer.accelerator=cpu", "trainer.precision=bf16-mixed")
    assert mixed["complete"] and mixed["counts"]["total"] == full["counts"]["total"]
    assert mixed["acc"] >= full["acc"] - 0.05, (method, full["acc"], mixed["acc"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_asking_for_a_gpu_without_one_is_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["fit", "trainer.accelerator=gpu", f"output_dir={out}", "logger.kind=none"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trainer.accelerator=gpu" in err[0] and "trainer.accelerator=auto or cpu" in err[0]
    assert not out.exists()
