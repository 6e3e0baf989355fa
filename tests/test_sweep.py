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
    if spec["method"] == "bayes" and search.engine() is None:
        with pytest.raises(ConfigError, match="pip install sweeps"):
            validate(spec)  # refused before a sweep folder is made
    validate(spec, check_start=spec["method"] != "bayes" or search.engine() is not None)  # method, metric, command, every value against the schema
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


@pytest.mark.slow  # subprocesses: seconds each
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
    printed = capsys.readouterr().out
    assert "* best (maximize final/acc (test))" in printed
    assert f"sweep directory: {out}   (upload the offline W&B runs with: wandb sync {out}/run-*/wandb/offline-run-*)\n" in printed
    assert main(["sweep", str(path), "--dir", str(out)]) == 0  # continuing a finished grid runs nothing
    assert len(json.loads((out / "results.json").read_text())["runs"]) == 2
    (out / "results.json").unlink()  # as if killed after its trials finished, before it wrote their results
    capsys.readouterr()
    assert main(["sweep", str(path), "--dir", str(out)]) == 0
    assert capsys.readouterr().out.count("done earlier, skipped") == 2  # the finished runs are read, not run again
    assert json.loads((out / "results.json").read_text())["runs"] == runs


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


def test_bayes_tells_the_engine_a_trial_still_running_is_running_not_failed():
    """With --workers, the next trial is proposed while others run: the engine must see them as
    running (pending points), else it takes them for failed and may propose their parameters again."""
    from continual.sweep.runner import STOPPED

    statuses = {"finished": 0.7, "running (this sweep)": None, "running in another process (pid 12 on h)": None,
                STOPPED: None, "failed (DataError: no MNIST, see run-004.log)": None,
                "failed (its process ended before it finished)": None}
    states = [search.engine_state({"params": {}, "metric": m, "status": s}) for s, m in statuses.items()]
    assert states == ["finished", "running", "running", "running", "failed", "failed"]
    if search.engine() is not None:  # the names are the engine's own
        assert {search.engine().RunState(s).value for s in states} == {"finished", "running", "failed"}


@pytest.mark.slow  # subprocesses: seconds each
def test_overrides_apply_to_every_trial_and_may_not_set_a_swept_parameter(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(sys.path))
    path, out = write_spec(tmp_path, TINY), tmp_path / "sweep"
    assert main(["sweep", str(path), "--dir", str(out), "data.n_tasks=2", "logger.kind=none"]) == 0
    assert f"sweep directory: {out}\n" in capsys.readouterr().out  # no W&B runs: nothing to upload
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert len(runs) == 2 and all(r["status"] == "finished" for r in runs)
    for r in runs:
        assert len(json.loads((Path(r["run_dir"]) / "metrics.json").read_text())["tasks"]) == 2
    assert main(["sweep", str(path), "--dir", str(tmp_path / "s2"), "optim.lr=0.1"]) == 2
    assert "override 'optim.lr=0.1' sets a swept parameter" in capsys.readouterr().err


@pytest.mark.slow  # subprocesses: seconds each
def test_identical_failures_stop_the_sweep_and_a_continued_sweep_retries_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(sys.path))
    spec = TINY.replace("[0.001, 0.01]", "[0.001, 0.01, 0.02]")
    path, out = write_spec(tmp_path, spec), tmp_path / "sweep"
    broken = ["data.stream=helpers:broken_stream"]  # a valid config whose trials fail
    assert main(["sweep", str(path), "--dir", str(out), "--max-failures", "2", *broken]) == 2
    warning, err = capsys.readouterr().err.strip().split("\n", 1)
    assert warning.startswith("continual: warning: sweep 'tiny' ranks its trials on the test split")
    assert err.startswith(f"continual: error: sweep stopped: 2 trials in a row failed the same way, the first ({out / 'run-000'}.log): ")
    assert "no data in this stream" in err and "\n" not in err
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [r["params"]["optim.lr"] for r in runs] == [0.001, 0.01] and all(r["metric"] is None for r in runs)
    # fixed: the failed trials run first, then the rest of the grid
    assert main(["sweep", str(path), "--dir", str(out), "data.n_tasks=2", "logger.kind=none"]) == 0
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [(r["run"], r["params"]["optim.lr"], r["metric"] is not None) for r in runs] == [
        ("run-000", 0.001, False), ("run-001", 0.01, False), ("run-002", 0.001, True), ("run-003", 0.01, True), ("run-004", 0.02, True),
    ]


def test_a_sweep_whose_data_set_is_missing_is_refused_before_its_folder(tmp_path, capsys):
    path, out = write_spec(tmp_path, TINY), tmp_path / "sweep"
    assert main(["sweep", str(path), "--dir", str(out), "data.stream=split_mnist", f"data.root={tmp_path / 'nowhere'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (f"continual: error: sweep 'tiny': MNIST file '{tmp_path}/nowhere/MNIST/raw/train-images-idx3-ubyte' not found; "
                   "set data.root to the folder that holds MNIST/raw, or pass data.download=true to fetch it (needs network)")
    assert not out.exists()


def test_a_trial_past_its_timeout_is_stopped_and_counts_as_failed(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(sys.path))
    path, out = write_spec(tmp_path, TINY), tmp_path / "sweep"
    assert main(["sweep", str(path), "--dir", str(out), "--count", "1", "--timeout", "1"]) == 1  # a failed trial fails the sweep
    (run,) = json.loads((out / "results.json").read_text())["runs"]
    assert run["metric"] is None and run["status"] == "failed (timed out after 1 s, see run-000.log)"


def test_null_values_are_written_as_wandb_agent_writes_them_and_read_as_null(tmp_path):
    from continual.config import load_config

    spec = load_spec(write_spec(tmp_path, TINY.replace("optim.lr: {values: [0.001, 0.01]}", "router.n_v: {values: [null, 4]}")
                                .replace("continual, fit,", "continual, fit, method=router, scenario=class,")))
    validate(spec)  # both values pass the schema, as `wandb agent` would pass them
    cmd = command(spec, {"router.n_v": None})
    assert cmd[-1] == "router.n_v=None"  # str(None): what `wandb agent` puts in ${args_no_hyphens}
    assert load_config(None, cmd[2:]).router.n_v is None


@pytest.mark.slow  # a subprocess trial: seconds
def test_a_trial_another_process_runs_is_recorded_as_running_and_read_back_once_it_finished(tmp_path, monkeypatch, capsys):
    import fcntl

    from continual import experiment
    from continual.config import load_config
    from continual.rundir.layout import LOCK
    from continual.sweep.runner import trial

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(sys.path))
    path, out, fast = write_spec(tmp_path, TINY), tmp_path / "sweep", ["data.n_tasks=2", "logger.kind=none"]
    held = trial(load_spec(path), {"optim.lr": 0.001}, out / "run-000", fast)
    held.run_dir.mkdir(parents=True)
    with open(held.run_dir / LOCK, "w") as lock:  # a live `continual fit` of that trial holds its folder
        fcntl.flock(lock, fcntl.LOCK_EX)
        lock.write("pid 1 on other\n")
        lock.flush()
        assert main(["sweep", str(path), "--dir", str(out), *fast]) == 0  # nothing failed
    assert "[run-000] final/acc = None  running in another process (pid 1 on other)" in capsys.readouterr().out
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [(r["run"], r["params"]["optim.lr"], r["status"]) for r in runs] == [
        ("run-000", 0.001, "running in another process (pid 1 on other)"), ("run-001", 0.01, "finished")]
    assert not (out / "run-000.log").exists()  # its holder's output is not this sweep's
    metrics = experiment.run(load_config(held.config, held.fit_overrides()))  # the holder finishes
    assert main(["sweep", str(path), "--dir", str(out), *fast]) == 0
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [(r["run"], r["metric"], r["status"]) for r in runs] == [("run-000", metrics["acc"], "finished"), ("run-001", runs[1]["metric"], "finished")]


def test_the_shipped_sweeps_start_from_the_validation_chosen_router_and_rank_on_validation():
    from continual.sweep.spec import fit_config, ranked_split

    for path in SWEEPS:
        spec = load_spec(path)
        config, fixed = fit_config(spec)
        assert config == "router_split_mnist.yaml" and "data.eval_split=val" in fixed, path.name
        assert ranked_split(spec) == "val"


def test_a_sweep_ranked_on_test_is_warned_about_and_its_table_names_the_split(tmp_path, capsys):
    path = write_spec(tmp_path, TINY)
    assert main(["sweep", str(path), "--dir", str(tmp_path / "t"), "--count", "0"]) == 0
    out, err = capsys.readouterr()
    assert err == ("continual: warning: sweep 'tiny' ranks its trials on the test split; choose hyperparameters "
                   "with data.eval_split=val in its command and report test once\n")
    assert out.splitlines()[0].split() == ["run", "optim.lr", "final/acc", "(test)", "status"]
    assert main(["sweep", str(path), "--dir", str(tmp_path / "v"), "--count", "0", "data.eval_split=val"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "* best (maximize final/acc (val))" in out


def test_a_sweep_may_rank_on_a_number_of_a_metric_entry(tmp_path):
    from continual.sweep.spec import metric_value

    spec = load_spec(write_spec(tmp_path, TINY.replace("final/acc", "final/padded_class/accuracy")))
    validate(spec)
    metrics = {"acc": 0.5, "padded_class": {"n_v": 5, "accuracy": 0.75, "per_task": []}, "slda": None}
    assert metric_value(spec, metrics) == 0.75
    assert metric_value({"metric": {"name": "final/acc"}}, metrics) == 0.5
    assert metric_value({"metric": {"name": "final/padded_class/per_task"}}, metrics) is None  # not a number
    assert metric_value(spec, {**metrics, "padded_class": None}) is None  # a method without padded outputs
    for bad in ("final/padded_class", "final/nosuch/accuracy", "val/acc", "final/padded_class/"):
        with pytest.raises(ConfigError, match="not logged by continual fit"):
            validate({**spec, "metric": {"name": bad, "goal": "maximize"}})


UNEQUAL = ["method=router", "scenario=class", "data.classes_per_task=[2,3,5]", "router.memories=4"]


@pytest.mark.parametrize("stream, n_v", [(UNEQUAL[2], (5, 8)), ("data.stream=split_digits", (2, 4))], ids=["unequal", "equal"])
def test_padded_outputs_neither_predict_nor_learn_so_n_v_changes_only_the_random_draw(stream, n_v):
    """Why N_v cannot matter beyond its random draw: with the same weights on a task's classes,
    the router with more padded outputs gives the same logits for them, -inf for the padding,
    and its padded rows get no gradient; on equal and unequal streams alike."""
    import torch

    from continual import build_method, build_stream, extract_features
    from continual.config import load_config

    def router(width):
        cfg = load_config(None, [*UNEQUAL[:2], stream, "router.memories=4", "backbone.hidden=[64,64]", f"router.n_v={width}"])
        features = extract_features(cfg, build_stream(cfg.data, cfg.seed))  # the flat features the method sees
        return build_method(cfg, features), features

    (small, stream_data), (big, _) = router(n_v[0]), router(n_v[1])
    big_tensors = {**dict(big.named_parameters()), **dict(big.named_buffers())}
    with torch.no_grad():  # the small router's weights in the big one's first rows
        for name, value in [*small.named_parameters(), *small.named_buffers()]:
            big_tensors[name][tuple(slice(0, s) for s in value.shape)] = value
    task = stream_data.tasks[0]
    k = len(task.classes)  # 2: padded outputs from k on
    x, t = task.x_test[:32], torch.zeros(32, dtype=torch.long)
    a, b = small.route(x, t)["logits"], big.route(x, t)["logits"]
    # equal up to rounding: the value heads are one matrix product, and the CPU BLAS may block a
    # wider product differently (it does with AVX-512 MKL), so the last bits can differ
    torch.testing.assert_close(a[:, :k], b[:, :k], rtol=1e-5, atol=1e-7)
    assert torch.isinf(a[:, k:]).all() and torch.isinf(b[:, k:]).all()
    loss = torch.nn.functional.cross_entropy(b, big.within_task.targets(task.y_test[:32]))  # the router's class loss
    loss.backward()
    memory = big.memories[0]
    assert memory.values.grad[:, k:].abs().sum() == 0 and memory.value_bias.grad[:, k:].abs().sum() == 0
    assert memory.values.grad[:, :k].abs().sum() > 0


@pytest.mark.slow  # two router runs; test_padded_outputs_neither_predict_nor_learn... covers the mechanism in seconds
def test_two_trials_that_differ_only_in_n_v_on_an_unequal_stream(tmp_path):
    """Real runs: what N_v changes is the memory (hand-computed), the padded slots that would win
    unmasked, and the random draw of the value heads, hence the accuracies; never a prediction
    of a padded class."""
    from continual.cli.main import main as cli

    from helpers import QUICK

    runs = {}
    for width in (5, 8):
        out = tmp_path / f"n_v{width}"
        assert cli(["fit", f"output_dir={out}", *QUICK, *UNEQUAL, f"router.n_v={width}"]) == 0
        runs[width] = json.loads((out / "metrics.json").read_text())
    five, eight = runs[5], runs[8]
    assert (five["padded_class"]["n_v"], eight["padded_class"]["n_v"]) == (5, 8)
    T, slots, feat = 3, 4, 64  # 3 tasks, router.memories=4, the last hidden layer's width
    assert eight["stored_floats"] - five["stored_floats"] == T * slots * (8 - 5) * (feat + 1)  # value rows + biases
    assert [b - a for a, b in zip(five["trainable_params_per_task"], eight["trainable_params_per_task"])] == [slots * 3 * (feat + 1)] * T
    assert five["padded_class"]["win_rate"] == eight["padded_class"]["win_rate"] == 0  # a padded class is never predicted
    assert five["padded_class"]["per_task"][2]["would_win_rate"] == 0  # the 5-class task has no padding at N_v=5
    assert five["accuracy_matrix"] != eight["accuracy_matrix"]  # another draw of the value heads, another run


HISTORY = [  # h x N_v, one failed trial and a repeated pair (mean of two)
    {"run": "run-000", "params": {"router.h": 16, "router.n_v": 2}, "metric": 0.5, "status": "finished"},
    {"run": "run-001", "params": {"router.h": 64, "router.n_v": 2}, "metric": 0.7, "status": "finished"},
    {"run": "run-002", "params": {"router.h": 16, "router.n_v": 4}, "metric": 0.6, "status": "finished"},
    {"run": "run-003", "params": {"router.h": 64, "router.n_v": 4}, "metric": None, "status": "failed (exit 2)"},
    {"run": "run-004", "params": {"router.h": 16, "router.n_v": 2}, "metric": 0.7, "status": "finished"},
    {"run": "run-005", "params": {"router.h": 8, "router.n_v": 2}, "metric": 0.1, "status": "finished"},
]
HXNV = {"name": "hxnv", "metric": {"name": "final/acc", "goal": "maximize"},
        "parameters": {"router.h": {"values": [8, 16, 64]}, "router.n_v": {"values": [2, 4]}, "seed": {"value": 0}}}


def test_the_sweep_figure_is_a_heatmap_of_two_varying_keys_and_panels_otherwise(tmp_path):
    from continual.sweep import plot

    assert plot.varying(HXNV, HISTORY) == ["router.h", "router.n_v"]  # seed is constant
    xs, ys, grid = plot.heatmap_data(HXNV, HISTORY, "router.h", "router.n_v")
    assert (xs, ys) == (["8", "16", "64"], ["2", "4"])  # by size, not as text
    assert grid[0] == [0.1, (0.5 + 0.7) / 2, 0.7] and grid[1][1] == 0.6  # (16, 2): the mean of its two trials and grid[1][0] != grid[1][0] and grid[1][2] != grid[1][2]  # NaN: no finished trial
    one = [h for h in HISTORY if h["params"]["router.n_v"] == 2]
    assert plot.varying(HXNV, one) == ["router.h"]
    labels, at, values = plot.panel_data(HXNV, one, "router.h")
    assert labels == ["8", "16", "64"] and at == [1.0, 2.0, 1.0, 0.0] and values == [0.5, 0.7, 0.7, 0.1]
    for history in (HISTORY, one):
        path = plot.write(tmp_path, HXNV, history)
        assert path == tmp_path / "sweep.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot.write(tmp_path / "none", HXNV, [HISTORY[3]]) is None  # nothing finished: no figure


@pytest.mark.slow  # subprocesses: seconds each
def test_two_workers_run_the_trials_at_once_and_the_figure_draws_results_csv(tmp_path, monkeypatch, capsys):
    from continual.sweep import plot

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(sys.path))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    spec = write_spec(tmp_path, TINY.replace("trainer.max_epochs=1", "trainer.max_epochs=1, data.n_tasks=2, logger.kind=none"))
    out = tmp_path / "s"
    assert main(["sweep", str(spec), "--dir", str(out), "--workers", "2"]) == 0
    assert "2 workers: each cell in its own process" in capsys.readouterr().out
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [(r["run"], r["optim.lr"], r["status"]) for r in rows] == [("run-000", "0.001", "finished"), ("run-001", "0.01", "finished")]
    for r in rows:
        assert float(r["final/acc (test)"]) == json.loads((out / r["run"] / "metrics.json").read_text())["acc"]  # ranked on: named
    history = json.loads((out / "results.json").read_text())["runs"]
    labels, at, values = plot.panel_data(load_spec(spec), history, "optim.lr")
    assert labels == ["0.001", "0.01"] and values == [float(r["final/acc (test)"]) for r in rows]
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG" and not (out / "wandb").exists()  # logger.kind=none: not in W&B


def test_the_sweep_figure_goes_to_wandb_as_an_image(tmp_path):
    from continual.sweep import plot

    path = plot.write(tmp_path, HXNV, HISTORY)
    plot.log_wandb(path, HXNV, "continual", "offline")
    (run,) = (tmp_path / "wandb").glob("offline-run-*")
    (image,) = run.glob("files/media/images/sweep_plot_*.png")
    assert image.read_bytes()[:4] == b"\x89PNG"
