"""The benchmark's pieces run end to end on a tiny workload (no timing is asserted)."""

import json

from bench.__main__ import main
from bench.raw_loop import run_raw
from continual.config import load_config
from continual.data.streams import build_stream


def test_bench_quick_writes_every_table(tmp_path, capsys):
    assert main(["--quick", "--skip", "startup", "--out", str(tmp_path)]) == 0
    (result,) = tmp_path.glob("bench_*.json")
    data = json.loads(result.read_text())
    rows = data["workloads"]
    assert set(rows) == {"raw", "finetune", "raw_5ep", "finetune_5ep", "router", "router_step"}
    assert rows["finetune_5ep"]["train_samples"] == 5 * rows["finetune"]["train_samples"]
    out = capsys.readouterr().out
    assert out.startswith(f"device: {data['machine']['device']}")  # the tables are read with the device they ran on
    ratio = rows["finetune"]["wall_s"]["median"] / rows["raw"]["wall_s"]["median"]
    assert f"{ratio:.2f} x raw " in out  # each row is read against its reference
    assert set(data["tokens"]["exponent"]) == {"learned", "perceiver"}


def test_raw_loop_learns_the_stream():
    cfg = load_config(None, ["data.stream=split_digits"])
    rows = run_raw(build_stream(cfg.data, cfg.seed), [64], 1e-3, 128, 8192)
    assert len(rows) == len(rows[0]) == 5
    assert rows[0][0] > 0.6  # task 1 after its 3 steps, task-IL: two classes, chance is 0.5
