"""Sweep files are valid against the config schema; `continual sweep` runs one with no W&B server."""

import csv
import json
import os
import sys
from pathlib import Path

import pytest

from continual.cli.main import main
from continual.errors import ConfigError
from continual.sweep import search
from continual.sweep.spec import command, load_spec, validate

SWEEPS = sorted((Path(__file__).resolve().parents[1] / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_every_sweep_file_is_valid_and_optimizes_a_logged_metric(path):
    spec = load_spec(path)
    validate(spec)  # method, metric (a key continual fit logs), command, every value against the schema
    first = search.next_params(spec, []) if spec["method"] != "bayes" else {k: "x" for k in spec["parameters"]}
    cmd = command(spec, first)
    assert cmd[:2] == ["continual", "fit"] and all(f"{k}=" in " ".join(cmd) for k in spec["parameters"])


def test_sweep_files_exist():
    methods = {load_spec(p)["method"] for p in SWEEPS}
    assert {"grid", "bayes"} <= methods


def write_spec(tmp_path, text: str) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(text)
    return path


TINY = """
method: grid
metric: {name: final/acc, goal: maximize}
parameters:
  optim.lr: {values: [0.001, 0.01]}
command: ["${env}", continual, fit, trainer.max_epochs=1, trainer.enable_progress_bar=false, "${args_no_hyphens}"]
"""


def test_a_bad_parameter_is_refused_before_any_run(tmp_path, capsys):
    bad = write_spec(tmp_path, TINY.replace("optim.lr", "optim.lrr"))
    assert main(["sweep", str(bad), "--dir", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "optim.lrr" in err and "did you mean 'lr'" in err
    with pytest.raises(ConfigError, match="not logged by continual fit"):
        validate({**load_spec(write_spec(tmp_path, TINY)), "metric": {"name": "val/acc", "goal": "maximize"}})


def test_offline_grid_sweep_runs_two_fits_and_writes_a_results_table(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(sys.path))  # the runs import this checkout
    monkeypatch.delenv("WANDB_MODE", raising=False)
    path, out = write_spec(tmp_path, TINY), tmp_path / "sweep"
    assert main(["sweep", str(path), "--dir", str(out)]) == 0
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [r["params"] for r in runs] == [{"optim.lr": 0.001}, {"optim.lr": 0.01}]
    for r in runs:
        metrics = json.loads((Path(r["run_dir"]) / "metrics.json").read_text())
        assert r["status"] == "finished" and r["metric"] == metrics["acc"] and metrics["complete"]
        assert len(list((Path(r["run_dir"]) / "wandb").glob("offline-run-*"))) == 1  # for `wandb sync`
    assert [row["optim.lr"] for row in csv.DictReader((out / "results.csv").open())] == ["0.001", "0.01"]
    assert "* best (maximize final/acc)" in capsys.readouterr().out
    assert main(["sweep", str(path), "--dir", str(out)]) == 0  # continuing a finished grid runs nothing
    assert len(json.loads((out / "results.json").read_text())["runs"]) == 2


def test_random_search_draws_are_seeded_per_run_and_in_range():
    spec = {"method": "random", "parameters": {
        "optim.lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2},
        "router.h": {"min": 8, "max": 64},
        "router.mask": {"values": ["soft", "hard"]},
    }}
    draws = [search.next_params(spec, [{}] * i, seed=1) for i in range(20)]
    assert draws == [search.next_params(spec, [{}] * i, seed=1) for i in range(20)]
    assert all(1e-4 <= d["optim.lr"] <= 1e-2 and isinstance(d["router.h"], int) and 8 <= d["router.h"] <= 64 for d in draws)
    assert {d["router.mask"] for d in draws} == {"soft", "hard"}


def test_bayes_asks_the_wandb_engine():
    if search.engine() is None:
        pytest.skip("bayes search needs W&B's engine: pip install sweeps (optional extra [bayes], pins numpy<2)")
    spec = load_spec(SWEEPS[[load_spec(p)["method"] for p in SWEEPS].index("bayes")])
    history = []
    for i in range(3):
        params = search.next_params(spec, history)
        assert set(params) == set(spec["parameters"]) and 1e-4 <= params["optim.lr"] <= 1e-2
        history.append({"params": params, "metric": 0.5 + 0.1 * i})
