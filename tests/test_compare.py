"""`continual compare` on a tiny grid: tables, plot, resume, and a failing cell."""

import csv
import json
import os
import sys

import pytest
import yaml

from continual.cli.main import main

FAST = ["data.n_tasks=2", "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "logger.kind=none"]


def write_grid(tmp_path, **extra):
    grid = {
        "base": "split_digits.yaml",
        "out": str(tmp_path / "grid"),
        "methods": {"finetune": ["method=finetune"], "joint": ["method=joint"]},
        "scenarios": ["task", "class"],
        "seeds": [0, 1],
        "overrides": FAST,
        "reference": {"joint": {"task": 99.0, "class/task_given_acc": 98.5}},
        **extra,
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path


def test_compare_writes_tables_and_resumes(tmp_path, capsys):
    path = write_grid(tmp_path)
    assert main(["compare", "--config", str(path)]) == 0
    out = tmp_path / "grid"
    rows = list(csv.DictReader((out / "compare.csv").open()))
    assert [(r["method"], r["scenario"]) for r in rows] == [("finetune", "task"), ("finetune", "class"), ("joint", "task"), ("joint", "class")]
    assert all(r["seeds"] == "2" and r["failed"] == "0" for r in rows)
    import statistics

    accs = [json.loads((out / f"joint__class__s{s}" / "metrics.json").read_text())["acc"] for s in (0, 1)]
    joint_class = rows[3]
    assert float(joint_class["acc_mean"]) == statistics.fmean(accs)
    assert float(joint_class["acc_std"]) == statistics.stdev(accs)
    md = (out / "compare.md").read_text()
    assert "| joint |" in md and "99.0" in md and f"{100 * statistics.fmean(accs):.1f}" in md
    # a `<scenario>/<column>` reference: beside that column of the scenario's cells (class-IL's task-given ACC)
    given = [json.loads((out / f"joint__class__s{s}" / "metrics.json").read_text())["task_given"]["acc"] for s in (0, 1)]
    assert float(joint_class["task_given_acc_mean"]) == statistics.fmean(given) and joint_class["reference_task_given_acc"] == "98.5"
    lines = md.splitlines()
    head = next(line for line in lines if line.startswith("| method | task-IL"))
    joint_line = next(line for line in lines if line.startswith("| joint |"))  # the first table's
    assert head == "| method | task-IL ACC | task-IL paper | class-IL ACC | class-IL paper | class-IL task-given ACC | paper |"
    assert joint_line.endswith(f"| {100 * statistics.fmean(given):.1f} ± {100 * statistics.stdev(given):.1f} | 98.5 |")
    assert rows[2]["reference_task_given_acc"] == ""  # joint's task-IL cells: no such reference
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"
    assert not (out / "wandb").exists()  # logger.kind=none: the summary is not logged either
    logger = yaml.safe_load((out / "joint__class__s1" / "config.yaml").read_text())["logger"]
    assert (logger["group"], logger["job_type"]) == ("grid/joint", "class")  # W&B groups a row's seeds
    before = (out / "joint__class__s1" / "metrics.json").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["compare", "--config", str(path)]) == 0  # every cell done: nothing re-runs
    assert capsys.readouterr().out.count("skipped") == 8
    assert (out / "joint__class__s1" / "metrics.json").stat().st_mtime_ns == before


def test_a_failing_cell_is_reported_and_the_rest_run(tmp_path):
    path = write_grid(tmp_path, scenarios=["task"], seeds=[0], per_cell={"joint": ["data.stream=helpers:broken_stream"]})
    assert main(["compare", "--config", str(path)]) == 1
    rows = {r["method"]: r for r in csv.DictReader((tmp_path / "grid" / "compare.csv").open())}
    assert rows["finetune"]["failed"] == "0" and float(rows["finetune"]["acc_mean"]) > 0.8
    assert rows["joint"]["failed"] == "1" and "DataError" in rows["joint"]["error"]
    assert "FAILED" in (tmp_path / "grid" / "compare.md").read_text()


def test_a_grid_whose_data_set_is_missing_is_refused_before_any_cell(tmp_path, capsys):
    """Sixty cells of a shipped grid failing one by one on the same missing file was what a new user
    saw without data.root: now one line, exit 2, no folder."""
    path = write_grid(tmp_path, per_cell={"joint": ["data.stream=split_mnist", f"data.root={tmp_path}/none"]})
    assert main(["compare", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == (f"continual: error: [5/8] joint / task-IL / seed 0: MNIST file '{tmp_path}/none/MNIST/raw/train-images-idx3-ubyte' "
                   "not found; set data.root to the folder that holds MNIST/raw, or pass data.download=true to fetch it (needs network)\n")
    assert not (tmp_path / "grid").exists()


def test_bad_compare_config_is_one_line(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("methods: [finetune]\nscenarios: [task]\nseedz: [0]\n")
    assert main(["compare", "--config", str(path)]) == 2
    assert "unknown key 'seedz'" in capsys.readouterr().err
    path = write_grid(tmp_path, reference={"joint": {"class/task_givn_acc": 98.0}})
    assert main(["compare", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "'class/task_givn_acc'" in err and "names no compare column 'task_givn_acc'" in err and "\n" not in err


def test_shards_split_the_grid_and_together_fill_it(tmp_path, capsys):
    path = write_grid(tmp_path, seeds=[0])
    out = tmp_path / "grid"
    assert main(["compare", "--config", str(path), "--shard", "2/2"]) == 0
    ran = sorted(p.name for p in out.iterdir() if (p / "metrics.json").is_file())
    assert ran == ["finetune__class__s0", "joint__class__s0"]  # cells 2 and 4 of 4
    assert main(["compare", "--config", str(path), "--shard", "1/2"]) == 0
    rows = list(csv.DictReader((out / "compare.csv").open()))
    assert all(r["seeds"] == "1" for r in rows)  # the second shard's table holds every cell
    capsys.readouterr()
    assert main(["compare", "--config", str(path), "--shard", "3/2"]) == 2
    assert "--shard '3/2' is not I/N" in capsys.readouterr().err


def test_the_last_shard_to_finish_tabulates_cells_other_shards_finished_meanwhile(tmp_path, monkeypatch):
    import continual.experiment as experiment

    path = write_grid(tmp_path, seeds=[0])
    real_run, calls = experiment.run, []

    def run_and_let_shard_2_finish_meanwhile(cfg):
        calls.append(cfg.output_dir)
        if len(calls) == 2:  # shard 1 is on its second cell; shard 2's cell 2 is already passed
            assert main(["compare", "--config", str(path), "--shard", "2/2"]) == 0
        return real_run(cfg)

    monkeypatch.setattr(experiment, "run", run_and_let_shard_2_finish_meanwhile)
    assert main(["compare", "--config", str(path), "--shard", "1/2"]) == 0
    rows = list(csv.DictReader((tmp_path / "grid" / "compare.csv").open()))
    assert all(r["seeds"] == "1" for r in rows)  # shard 1 finished last and saw all four cells


def test_seeds_and_only_pick_the_cells_to_run(tmp_path, capsys):
    path = write_grid(tmp_path, seeds=[0])
    out = tmp_path / "grid"
    assert main(["compare", "--config", str(path), "--seeds", "1-2,5", "--only", "joint/class,finetune"]) == 0
    ran = sorted(p.name for p in out.iterdir() if (p / "metrics.json").is_file())
    assert ran == sorted(f"{c}__s{s}" for c in ("joint__class", "finetune__task", "finetune__class") for s in (1, 2, 5))
    rows = list(csv.DictReader((out / "compare.csv").open()))
    assert [(r["method"], r["scenario"], r["seeds"]) for r in rows] == [
        ("finetune", "task", "3"), ("finetune", "class", "3"), ("joint", "class", "3")]
    assert "| joint | — |" in (out / "compare.md").read_text()  # joint/task left out, not n/a
    capsys.readouterr()
    # the row left out, alone: it runs; the cells run before are read back, so the tables stay the grid's
    assert main(["compare", "--config", str(path), "--seeds", "1-2,5", "--only", "joint/task"]) == 0
    assert capsys.readouterr().out.count("done earlier, skipped") == 9
    rows = list(csv.DictReader((out / "compare.csv").open()))
    assert [(r["method"], r["scenario"], r["seeds"]) for r in rows] == [
        ("finetune", "task", "3"), ("finetune", "class", "3"), ("joint", "task", "3"), ("joint", "class", "3")]
    assert main(["compare", "--config", str(path), "--only", "joint/domain"]) == 2
    assert "--only 'joint/domain' names no cell of this grid" in capsys.readouterr().err
    assert main(["compare", "--config", str(path), "--seeds", "1-x"]) == 2
    assert "--seeds '1-x' is not a list of seeds" in capsys.readouterr().err


def test_sigterm_stops_the_whole_grid(tmp_path, monkeypatch, capsys):
    import continual.experiment as experiment
    from continual.errors import Interrupted

    path = write_grid(tmp_path, seeds=[0])
    calls = []

    def terminated(cfg):
        calls.append(cfg.output_dir)
        raise Interrupted("stopped by SIGTERM during task 1")

    monkeypatch.setattr(experiment, "run", terminated)
    assert main(["compare", "--config", str(path)]) == 143
    assert len(calls) == 1  # the other three cells did not start
    assert "run the same compare command again" in capsys.readouterr().err


def test_a_finished_cell_run_with_another_config_stops_the_grid_before_anything_runs(tmp_path, capsys):
    path = write_grid(tmp_path, scenarios=["task"], seeds=[0])
    assert main(["compare", "--config", str(path)]) == 0
    out = tmp_path / "grid"
    stored = out / "finetune__task__s0" / "config.yaml"
    # a key the cell's version did not have yet, at its default: the cell still counts as done
    text = stored.read_text()
    assert "  carry_state: false\n" in text
    stored.write_text(text.replace("  carry_state: false\n", ""))
    capsys.readouterr()
    assert main(["compare", "--config", str(path)]) == 0
    assert capsys.readouterr().out.count("skipped") == 2
    # a changed setting: refused with the cell, the key and the fix, and no cell is rerun
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("*/metrics.json")}
    write_grid(tmp_path, scenarios=["task"], seeds=[0], per_cell={"joint": ["optim.lr=0.5"]})
    assert main(["compare", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "joint__task__s0 (optim.lr:" in err and "-> 0.5" in err and "delete those cell folders" in err
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/metrics.json")} == mtimes
    # a config.yaml that is not a config counts as changed, never as done
    stored.write_text("data: [unclosed\n")
    write_grid(tmp_path, scenarios=["task"], seeds=[0])
    assert main(["compare", "--config", str(path)]) == 2
    assert "finetune__task__s0 (its config.yaml cannot be read as a config" in capsys.readouterr().err
    stored.write_text("no_such_key: 1\n")  # a mapping, but not this cell's settings: changed, never done
    assert main(["compare", "--config", str(path)]) == 2
    assert "finetune__task__s0 (" in capsys.readouterr().err


def test_grid_wide_overrides_may_configure_the_rows_method(tmp_path, capsys):
    """A grid of router rows may set `router.*` for every row (as compare/router_val_split_mnist.yaml
    does): the base config's method (finetune) must not be checked against them."""
    path = write_grid(tmp_path, methods={"router": ["method=router"]}, scenarios=["class"], seeds=[0],
                      overrides=[*FAST, "router.h=16"], reference={})
    assert main(["compare", "--config", str(path)]) == 0
    assert "| router |" in capsys.readouterr().out


def test_the_summary_is_logged_to_wandb_when_the_cells_are(tmp_path):
    """W&B is in logger.kind by default: a compare leaves an offline W&B run of its own beside the
    cells, whose table holds the csv's rows; with logger.kind=none there is none."""
    quiet = [o for o in FAST if not o.startswith("logger.")]
    path = write_grid(tmp_path, methods=["finetune"], scenarios=["task"], seeds=[0], overrides=quiet, reference={})
    assert main(["compare", "--config", str(path)]) == 0
    out = tmp_path / "grid"
    (run,) = (out / "wandb").glob("offline-run-*")
    (table,) = run.glob("files/media/table/compare_*.table.json")
    (row,) = csv.DictReader((out / "compare.csv").open())
    logged = json.loads(table.read_text())
    assert logged["columns"] == list(row)
    (data,) = logged["data"]
    assert data[logged["columns"].index("acc_mean")] == float(row["acc_mean"]) == json.loads((out / "finetune__task__s0" / "metrics.json").read_text())["acc"]
    assert main(["compare", "--config", str(path), "--out", str(tmp_path / "none"), "logger.kind=none"]) == 0
    assert (tmp_path / "none" / "compare.csv").is_file() and not (tmp_path / "none" / "wandb").exists()


def test_two_compares_into_one_out_share_the_cells_through_their_locks(tmp_path, capsys, monkeypatch):
    import fcntl

    import continual.experiment as experiment
    from continual.rundir.layout import LOCK

    path = write_grid(tmp_path, seeds=[0])
    out, real_run, calls, second = tmp_path / "grid", experiment.run, [], []

    def run_while_a_second_compare_runs(cfg):
        calls.append(cfg.output_dir)
        if len(calls) == 1:  # the first compare holds its first cell, as a running `continual fit` does, while a second one runs
            (out / "finetune__task__s0").mkdir(parents=True)
            with open(out / "finetune__task__s0" / LOCK, "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                lock.write("pid 1 on first\n")
                lock.flush()
                capsys.readouterr()
                second.append(main(["compare", "--config", str(path)]))
                second.append(capsys.readouterr().out)
        return real_run(cfg)

    monkeypatch.setattr(experiment, "run", run_while_a_second_compare_runs)
    assert main(["compare", "--config", str(path)]) == 0
    assert calls[1:] == [str(out / c) for c in ("finetune__class__s0", "joint__task__s0", "joint__class__s0")]  # each cell ran once
    assert second[0] == 0  # nothing failed: the held cell is left to its holder
    assert "[1/4] finetune / task-IL / seed 0: running in another process (pid 1 on first), skipped for now" in second[1]
    assert "1 cell(s) still running in another process" in second[1] and "FAILED" not in second[1]
    assert capsys.readouterr().out.count("done earlier, skipped") == 3  # the first compare reads what the second ran
    assert not list(out.glob("*.log"))  # no error beside a cell the other compare ran
    rows = list(csv.DictReader((out / "compare.csv").open()))
    assert all(r["seeds"] == "1" and r["failed"] == "0" for r in rows)  # the first compare finished last and tabulated all four


def buffer_floats_held(cell) -> float:
    """The floats a finished ER cell's replay buffer holds (its samples, labels and task ids), read
    from the run's final state."""
    import torch

    state = torch.load(cell / "checkpoints" / "state.pt", weights_only=True)["module"]["_extra_state"]["method"]
    return float(sum(v.numel() for v in state["data"].values()))


def test_budget_from_sizes_a_replay_buffer_by_another_rows_stored_floats(tmp_path, capsys):
    # the matched row is listed first: it still runs after the row it is sized by
    methods = {"er_matched": ["method=er", "budget_from=ewc"], "ewc": ["method=ewc"],
               "er_fixed": ["method=er", "budget_from=20000"]}
    path = write_grid(tmp_path, methods=methods, scenarios=["task"], seeds=[0], reference={},
                      overrides=[*FAST, "backbone.hidden=[64,64]"])
    assert main(["compare", "--config", str(path)]) == 0
    out = tmp_path / "grid"
    budget = json.loads((out / "ewc__task__s0" / "metrics.json").read_text())["stored_floats"]
    assert yaml.safe_load((out / "er_matched__task__s0" / "config.yaml").read_text())["er"]["buffer_floats"] == budget
    per_sample = 64 + 2  # an 8x8 digit, its label and task id
    net = 64 * 64 + 64 + 64 * 64 + 64 + 64 * 10 + 10  # ER's own network, counted in its stored floats
    held = buffer_floats_held(out / "er_matched__task__s0")
    room = budget - net  # what the budget leaves for samples after ER's network
    assert room - per_sample < held <= room and held % per_sample == 0  # the budget to within one sample
    er = json.loads((out / "er_matched__task__s0" / "metrics.json").read_text())["stored_floats"]
    assert er == net + held and budget - per_sample < er <= budget  # matched: ER stores what EWC stores
    assert buffer_floats_held(out / "er_fixed__task__s0") == (20000 - net) // per_sample * per_sample
    printed = capsys.readouterr().out
    assert printed.index("ewc / task-IL / seed 0: running") < printed.index("er_matched / task-IL / seed 0: running")
    rows = {r["method"]: r for r in csv.DictReader((out / "compare.csv").open())}
    assert [rows[m]["failed"] for m in methods] == ["0", "0", "0"]


@pytest.mark.parametrize("methods, words", [
    ({"a": ["method=er", "budget_from=finetun"], "finetune": ["method=finetune"]}, "budget_from=finetun names no row of this grid (did you mean 'finetune'?)"),
    ({"a": ["method=er", "budget_from=b"], "b": ["method=er", "budget_from=a"]}, "budget_from goes round in a cycle (a -> b -> a)"),
    ({"a": ["method=finetune", "budget_from=b"], "b": ["method=ncm"]}, "row 'a': budget_from sets <method>.buffer_floats, which method=finetune has not"),
    ({"a": ["method=er", "budget_from=-3"]}, "budget_from=-3 must be a row name or a positive number of floats"),
])
def test_bad_budget_from_is_one_line_before_anything_runs(tmp_path, capsys, methods, words):
    path = write_grid(tmp_path, methods=methods, scenarios=["task"], seeds=[0], reference={})
    assert main(["compare", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("continual: error:") and len(err.splitlines()) == 1 and words in err, err
    assert not (tmp_path / "grid").exists() or not any((tmp_path / "grid").iterdir())  # no cell ran


def test_the_cells_of_an_only_run_are_fixed_when_it_starts(tmp_path):
    """`cells` is listed again at every stage; a cell another compare finishes meanwhile must not
    join the list halfway (its keys and cells are zipped)."""
    from continual.compare import spec

    grid = spec.load_grid(str(write_grid(tmp_path, scenarios=["task"], seeds=[0, 1], reference={})))
    done = grid.cell_dir("joint", "task", 0)
    done.mkdir(parents=True)
    (done / "metrics.json").write_text('{"complete": true}')
    spec.select(grid, "finetune")
    before = list(grid.cells())
    assert before == [("finetune", "task", 0), ("finetune", "task", 1), ("joint", "task", 0)]  # the finished one, read back
    later = grid.cell_dir("joint", "task", 1)
    later.mkdir(parents=True)
    (later / "metrics.json").write_text('{"complete": true}')
    assert list(grid.cells()) == before


def test_a_budget_row_waits_for_a_referenced_row_not_run_yet(tmp_path, capsys):
    """`--only` the sized row, its referenced row never run: nothing runs, nothing fails, the
    cell is named as waiting."""
    path = write_grid(tmp_path, methods={"er_matched": ["method=er", "budget_from=finetune"], "finetune": ["method=finetune"]},
                      scenarios=["task"], seeds=[0], reference={})
    assert main(["compare", "--config", str(path), "--only", "er_matched"]) == 0
    assert ("er_matched / task-IL / seed 0: waits for the stored floats of finetune's cell task/s0, not finished yet; "
            "--only leaves finetune out: add it to --only, or run it first") in capsys.readouterr().out
    assert not (tmp_path / "grid" / "er_matched__task__s0").exists()
    md = (tmp_path / "grid" / "compare.md").read_text()
    assert "| er_matched | task | 0 | n/a |" in md and md.rstrip().endswith("| not run |")  # not "ok": nothing ran


def test_numbers_on_the_validation_split_are_said_to_be(tmp_path):
    """A grid run with data.eval_split=val chooses settings: its table must not read as test numbers."""
    path = write_grid(tmp_path, scenarios=["task"], seeds=[0], reference={}, per_cell={"joint": ["data.eval_split=val"]})
    assert main(["compare", "--config", str(path)]) == 0
    out = tmp_path / "grid"
    assert [(r["method"], r["eval_split"]) for r in csv.DictReader((out / "compare.csv").open())] == [("finetune", "test"), ("joint", "val")]
    assert ("**Measured on the validation split** (data.eval_split=val): joint/task; the other rows on test."
            in (out / "compare.md").read_text())
    assert main(["compare", "--config", str(path), "--out", str(tmp_path / "all_val"), "data.eval_split=val"]) == 0
    assert "**Measured on the validation split** (data.eval_split=val), not on the test split." in (tmp_path / "all_val" / "compare.md").read_text()
    assert main(["compare", "--config", str(path), "--out", str(tmp_path / "test_only"), "--only", "finetune"]) == 0
    assert "validation" not in (tmp_path / "test_only" / "compare.md").read_text()  # on test: no note


def test_one_seed_has_no_spread_and_the_figures_draw_the_csv(tmp_path):
    """One seed: `± n/a` in the table and an empty std in the csv (not a measured 0.0); compare.png
    and compare_memory.png draw each row's metrics.json numbers, and W&B gets both images."""
    from continual.compare import plot, spec, stats, tables
    from continual.compare.wandb_table import log_wandb

    path = write_grid(tmp_path, scenarios=["class"], seeds=[0], reference={})
    assert main(["compare", "--config", str(path)]) == 0
    out = tmp_path / "grid"
    text = (out / "compare.csv").read_bytes().decode()  # as written: csv ends its lines with \r\n
    rows = list(csv.DictReader(text.splitlines()))
    assert all(r["acc_std"] == "" and r["acc_mean"] != "" and r["stored_floats_std"] == "" for r in rows)
    md = (out / "compare.md").read_text()
    assert "± n/a" in md and "± 0.0" not in md
    runs = {m: json.loads((out / f"{m}__class__s0" / "metrics.json").read_text()) for m in ("finetune", "joint")}
    grid = spec.load_grid(str(path))
    summary = stats.summarize(grid, {(m, "class", 0): metrics for m, metrics in runs.items()})
    assert tables.to_csv(summary) == text  # the rows the figures are drawn from are the csv's
    assert plot.bars(grid, summary, "acc", 100.0) == {"class": ([100 * runs["finetune"]["acc"], 100 * runs["joint"]["acc"]], [0.0, 0.0])}
    assert plot.bars(grid, summary, "avg_forgetting", 100.0)["class"][0] == [100 * runs[m]["avg_forgetting"] for m in ("finetune", "joint")]
    assert plot.bars(grid, summary, "stored_floats")["class"][0] == [runs[m]["stored_floats"] for m in ("finetune", "joint")]
    assert [(p["method"], p["floats"], p["acc"], p["acc_std"]) for p in plot.memory_points(grid, summary)] == [
        (m, runs[m]["stored_floats"], 100 * runs[m]["acc"], 0.0) for m in ("finetune", "joint")]
    for name in ("compare.png", "compare_memory.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    log_wandb(grid, summary, "continual", "offline")  # what a compare whose cells log to W&B does (tested above)
    (run,) = (out / "wandb").glob("offline-run-*")
    assert len(list(run.glob("files/media/images/compare_plot_*.png"))) == 1
    assert len(list(run.glob("files/media/images/compare_memory_plot_*.png"))) == 1


def test_the_figures_draw_the_spread_over_seeds_and_leave_a_missing_cell_out(tmp_path):
    from continual.compare import plot, spec

    grid = spec.load_grid(str(write_grid(tmp_path)))
    rows = [{"method": "finetune", "scenario": "task", "acc_mean": 0.9, "acc_std": 0.02, "stored_floats_mean": 0.0, "stored_floats_std": None},
            {"method": "joint", "scenario": "class", "acc_mean": None, "acc_std": None, "stored_floats_mean": None, "stored_floats_std": None}]
    acc = plot.bars(grid, rows, "acc", 100.0)
    assert acc["task"][0][0] == 90.0 and acc["task"][1][0] == 2.0
    assert all(v != v for v in (acc["task"][0][1], *acc["class"][0]))  # NaN: no bar
    assert plot.memory_points(grid, rows) == [{"method": "finetune", "scenario": "task", "floats": 0.0, "floats_std": 0.0, "acc": 90.0, "acc_std": 2.0}]
    assert plot.memory_png(grid, rows)[:4] == b"\x89PNG"  # a row that stores nothing on the log axis


def test_two_workers_give_the_numbers_of_one(tmp_path, monkeypatch, capsys):
    """Cells in two subprocesses at once equal cells run in turn in this process, at one torch
    thread each (a different thread count may change the last digits)."""
    import torch

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(sys.path))  # the workers import this checkout
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the workers' threads, pinned
    threads = torch.get_num_threads()
    path = write_grid(tmp_path, scenarios=["class"], seeds=[0], reference={})
    torch.set_num_threads(1)
    try:
        assert main(["compare", "--config", str(path), "--out", str(tmp_path / "one")]) == 0
    finally:
        torch.set_num_threads(threads)
    capsys.readouterr()
    assert main(["compare", "--config", str(path), "--out", str(tmp_path / "two"), "--workers", "2"]) == 0
    assert "2 workers: each cell in its own process with 1 torch thread(s) each (OMP_NUM_THREADS, as set)" in capsys.readouterr().out
    one, two = (list(csv.DictReader((tmp_path / d / "compare.csv").open())) for d in ("one", "two"))
    timing = ("wall_time_s_mean", "wall_time_s_std")
    assert [{k: v for k, v in r.items() if k not in timing} for r in one] == [{k: v for k, v in r.items() if k not in timing} for r in two]
    for m in ("finetune", "joint"):
        a, b = (json.loads((tmp_path / d / f"{m}__class__s0" / "metrics.json").read_text()) for d in ("one", "two"))
        assert a["accuracy_matrix"] == b["accuracy_matrix"] and a["stored_floats"] == b["stored_floats"]
        assert (tmp_path / "two" / f"{m}__class__s0.log").is_file()  # a worker's output, beside its cell
