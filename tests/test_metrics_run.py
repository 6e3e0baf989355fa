"""The metric callbacks in a real router run: files and W&B outputs exist and agree, and two
DDP processes (gloo, CPU) give exactly the single-process accuracy matrices and stability figures
on test sets (71 or 72 samples per task, eval batch 16) that are not a multiple of 2 x batch."""

import csv
import json
import re
import subprocess
import sys

import pytest

from continual.cli.main import main
from test_ddp import DDP, SMALL, child_env, comparable

ROUTER = ["method=router", "scenario=class", "router.h=16", "optim.lr=1e-2", "metrics.probe_per_task=40"]


@pytest.fixture(scope="module")
def one(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("metrics") / "one"
    assert main(["fit", f"output_dir={run_dir}", *ROUTER, *SMALL]) == 0  # W&B offline: its logging runs too
    return run_dir


def test_router_run_leaves_consistent_metric_files(one):
    m = json.loads((one / "metrics.json").read_text())
    for name in ("accuracy_matrix.png", "accuracy_curves.png", "mask_stability.png", "mask_stability.csv"):
        assert (one / name).stat().st_size > 0
    s, p, ti = m["mask_stability"], m["padded_class"], m["task_inference"]
    rows = list(csv.DictReader((one / "mask_stability.csv").open()))
    T = len(m["accuracy_matrix"])
    assert len(rows) == 40 * T * (T + 1) // 2  # every learned task's probe at every boundary
    final = [r for r in rows if int(r["after_task"]) == T - 1 and int(r["task"]) < T - 1]
    assert s["samples"] == len(final) == 40 * (T - 1)
    assert s["unchanged_fraction"] == sum(int(r["hamming"]) == 0 for r in final) / len(final)
    assert s["rerouted_fraction"] == sum(int(r["rerouted"]) for r in final) / len(final)
    # the default soft gates start at sigmoid(3) and nothing pushes them down: every cell stays on
    # (the density computation itself is checked by hand in test_metric_callbacks.py)
    assert s["threshold"] == 0.5 and s["mask_density"] == 1.0
    assert p["win_rate"] == 0.0 and 0.5 < p["accuracy"] <= 1.0
    C = ti["confusion_matrix"]
    assert sum(map(sum, C)) == sum(m["counts"]["total"][-1])  # every test sample of every task, once
    assert ti["accuracy"] == sum(C[j][j] for j in range(T)) / sum(map(sum, C))
    assert len(m["per_class"]["forgetting"]) == 10


@pytest.mark.slow  # subprocesses: seconds each
def test_two_processes_give_the_single_process_metrics(one, tmp_path):
    two = tmp_path / "two"
    cmd = [sys.executable, "-m", "continual.cli.main", "fit", f"output_dir={two}", "logger.kind=none", *ROUTER, *SMALL, *DDP]
    out = subprocess.run(cmd, env=child_env(), capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert comparable(two) == comparable(one)  # accuracy matrices, stability, padded, task inference
    assert (two / "mask_stability.csv").read_text() == (one / "mask_stability.csv").read_text()


# -- docs/metrics.md: "add a metric", run as written ------------------------------------------
def doc_blocks(lang: str) -> list[str]:
    from pathlib import Path

    page = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"
    return re.findall(rf"```{lang}\n(.*?)```", page.read_text(), re.S)


@pytest.fixture
def walkthrough(monkeypatch):
    """The page's metric file, registered for this test only, and its test."""
    from continual.metrics import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    ns: dict = {}
    metric, test = doc_blocks("python")
    exec(compile(metric, "docs/metrics.md", "exec"), ns)  # noqa: S102 - the doc's own code
    exec(compile(test, "docs/metrics.md", "exec"), ns)  # noqa: S102
    return ns


def test_the_metric_walkthrough_runs_as_written(walkthrough, tmp_path, capsys):
    from continual.config import load_config
    from continual.metrics.registry import compare_columns

    walkthrough["test_plasticity_gap_by_hand"]()
    assert load_config(None, []).metrics.plasticity_gap is False  # its switch, off by default
    assert main(["config", "keys", "metrics.plasticity_gap"]) == 0
    assert "the newest task's accuracy minus the mean of the earlier tasks'" in capsys.readouterr().out

    run_dir = tmp_path / "gap"
    assert main(["fit", f"output_dir={run_dir}", "metrics.plasticity_gap=true", "logger.kind=csv", *SMALL]) == 0
    m = json.loads((run_dir / "metrics.json").read_text())
    R = m["accuracy_matrix"]  # an independent computation: the accuracy matrix of the same passes
    gap = m["plasticity_gap"]
    assert gap["curve"][0] is None and len(gap["curve"]) == len(R)
    assert gap["curve"][1:] == pytest.approx([R[i][i] - sum(R[i][:i]) / i for i in range(1, len(R))], abs=1e-12)
    assert gap["final"] == gap["curve"][-1]
    keys = list(m)
    assert keys.index("padded_class") < keys.index("plasticity_gap") < keys.index("task_inference")  # registry order
    logged = [row for f in (run_dir / "csv").rglob("metrics.csv") for row in csv.DictReader(f.open())]
    assert [float(r["final/plasticity_gap/final"]) for r in logged if r.get("final/plasticity_gap/final")] == [gap["final"]]
    assert [c.read(m) for c in compare_columns() if c.key == "plasticity_gap"] == [gap["final"]]
