"""The benchmark's pieces run end to end on a tiny workload (no timing is asserted)."""

import json

import pytest

from bench.__main__ import main
from bench.lightning_loop import run_lightning
from bench.raw_loop import run_raw
from continual.config import load_config
from continual.data.streams import build_stream
from continual.features import extract_features


def test_bench_quick_writes_every_table(tmp_path, capsys):
    assert main(["--quick", "--skip", "startup", "--out", str(tmp_path)]) == 0
    (result,) = tmp_path.glob("bench_*.json")
    data = json.loads(result.read_text())
    rows = data["workloads"]
    assert set(rows) == {"raw", "lightning", "finetune", "raw_5ep", "lightning_5ep", "finetune_5ep", "router", "router_step"}
    assert rows["finetune_5ep"]["train_samples"] == 5 * rows["finetune"]["train_samples"]
    assert rows["finetune_5ep"]["train_steps"] == 5 * rows["finetune"]["train_steps"]
    out = capsys.readouterr().out
    assert out.startswith(f"device: {data['machine']['device']}")  # the tables are read with the device they ran on
    ratio = rows["finetune"]["wall_s"]["median"] / rows["raw"]["wall_s"]["median"]
    assert f"{ratio:.2f} x raw " in out  # each row is read against its reference
    assert set(data["tokens"]["exponent"]) == {"learned", "perceiver"}
    # the feature row: later runs read the cache (no extracting), and learn exactly what the same
    # method learns from the same feature tensors given as raw inputs
    f = data["features"]
    assert f["features_first"]["extraction_s"] > 0 and f["features"]["extraction_s"] == 0
    assert f["features"]["final_acc"] == f["raw_width"]["final_acc"] == f["features_first"]["final_acc"] and f["width"] == 256
    assert f"{f['features']['wall_s']['median'] / f['raw_width']['wall_s']['median']:.2f} x (target <= 1.1)" in out
    # the overhead split, recomputed by hand from the rows: 4 extra epochs add only steps
    t = {k: r["wall_s"]["median"] for k, r in rows.items()}
    for name in ("lightning", "finetune"):
        per_step = ((t[f"{name}_5ep"] - t["raw_5ep"]) - (t[name] - t["raw"])) / (4 * rows[name]["train_steps"])
        assert abs(data["overhead"][name]["per_step_ms"] - 1e3 * per_step) < 1e-9
        assert abs(data["overhead"][name]["per_run_s"] - (t[name] - t["raw"] - per_step * rows[name]["train_steps"])) < 1e-9
        assert f"{1e3 * per_step:.2f} ms per training step" in out


@pytest.mark.parametrize("loop", [run_raw, run_lightning], ids=["raw", "lightning"])
def test_reference_loops_learn_the_stream(loop):
    cfg = load_config(None, ["data.stream=split_digits"])
    rows = loop(extract_features(cfg, build_stream(cfg.data, cfg.seed)), [64], 1e-3, 128, 8192, epochs=5)
    assert len(rows) == len(rows[0]) == 5
    assert min(rows[i][i] for i in range(5)) > 0.7  # each task just learned (task-IL, two classes: chance is 0.5)


def test_scaling_run_writes_its_rows_after_every_task(tmp_path, monkeypatch):
    """A scaling run stopped by a time limit keeps the rows of the tasks it finished."""
    from bench import scaling

    saved, real = [], scaling.atomic_write
    monkeypatch.setattr(scaling, "atomic_write", lambda path, text: (saved.append(json.loads(text)), real(path, text)))
    assert scaling.main(["--tasks", "3", "--out", str(tmp_path), "data.stream=split_digits"]) == 0
    assert [len(s["rows"]) for s in saved] == [1, 2, 3, 3]  # after each task, then with the summary
    (result,) = tmp_path.glob("scaling_*.json")
    data = json.loads(result.read_text())
    assert [r["task"] for r in data["rows"]] == [1, 2, 3] and all(r["fit_s"] > 0 and r["test_s"] > 0 for r in data["rows"])
    assert data["acc"] > 0.5 and data["wall_s"] > 0
