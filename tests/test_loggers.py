"""Any Lightning logger (`logger.kind`), all on one step axis across the stream's tasks."""

import csv
import importlib.util
import json
import os
import struct
import subprocess
import sys
import warnings

import lightning as L
import pytest
from lightning.pytorch.demos.boring_classes import BoringModel

from continual.cli.main import main
from continual.loggers import StreamCSVLogger
from continual.run_logger import StepAxis

QUIET = ["trainer.enable_progress_bar=false"]


def fit(tmp_path, *overrides):
    out = tmp_path / "run"
    assert main(["fit", f"output_dir={out}", *QUIET, *overrides]) == 0
    return out, json.loads((out / "metrics.json").read_text())


def wandb_records(run_file):
    """The records of a W&B run file (`run-<id>.wandb`: LevelDB log blocks of protobuf `Record`s)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block, pos, buf = run_file.read_bytes(), 32768, 7, b""  # 7: the ':W&B' header
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = struct.unpack("<HB", data[pos + 4:pos + 7])
        buf += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last fragment of one
            record = pb.Record()
            record.ParseFromString(buf)
            yield record
            buf = b""


def test_wandb_steps_increase_across_tasks_and_per_task_metrics_plot_against_the_task(tmp_path):
    # a process of its own: W&B's service writes the run file's last block when the process ends
    env = {k: v for k, v in os.environ.items() if k != "WANDB_MODE"}  # the default: offline
    out = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "continual.cli.main", "fit", f"output_dir={out}", *QUIET, "logger.group=seeds_of_x",
                    "logger.job_type=task_il"], env={**env, "PYTHONPATH": os.pathsep.join(sys.path)}, check=True, capture_output=True)
    m = json.loads((out / "metrics.json").read_text())
    (run_file,) = (out / "wandb").glob("offline-run-*/run-*.wandb")
    records = list(wandb_records(run_file))
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert (run.run_group, run.job_type) == ("seeds_of_x", "task_il")
    rows = [{i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
            for r in records if r.WhichOneof("record_type") == "history"]
    steps = [r["trainer/global_step"] for r in rows if "train/loss" in r]
    assert steps == sorted(set(steps))  # strictly increasing over all five tasks
    per_task = [(r["task"], r["trainer/global_step"]) for r in rows if "acc/task_1" in r]
    assert [t for t, _ in per_task] == [1, 2, 3, 4, 5]
    ends = [s for _, s in per_task]
    assert ends == sorted(ends) and ends[0] > 0
    for first, last in zip(ends, ends[1:]):  # each task's steps lie between its neighbours' ends
        assert any(first < s < last for s in steps)
    assert max(steps) > 4 * ends[0]  # not five tasks drawn on top of each other over one task's steps
    axes = {r.metric.name: r.metric.step_metric for r in records if r.WhichOneof("record_type") == "metric" and r.metric.name}
    assert axes.get("acc/task_1") == axes.get("final/acc") == "task", axes
    final = [r for r in rows if "final/acc" in r]
    assert len(final) == 1 and final[0]["final/acc"] == pytest.approx(m["acc"]) and final[0]["task"] == 5


@pytest.mark.skipif(not importlib.util.find_spec("tensorboard"), reason="needs tensorboard (the [dev] extra installs it)")
def test_tensorboard_and_csv_get_the_same_metrics_on_one_step_axis(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, m = fit(tmp_path, "logger.kind=[tensorboard,csv]")
    assert not (out / "wandb").exists()
    rows = list(csv.DictReader((out / "csv" / "version_0" / "metrics.csv").open()))
    loss_steps = [int(r["step"]) for r in rows if r["train/loss"]]
    assert loss_steps == sorted(set(loss_steps))
    ends = [int(r["step"]) for r in rows if r["acc/task_1"]]
    assert [r["task"] for r in rows if r["acc/task_1"]] == ["1", "2", "3", "4", "5"]
    assert loss_steps[-1] > 4 * ends[0]
    (final,) = [r for r in rows if r["final/acc"]]
    assert float(final["final/acc"]) == pytest.approx(m["acc"])

    events = EventAccumulator(str(out / "tensorboard")).Reload()
    tb_loss = [e.step for e in events.Scalars("train/loss")]
    assert tb_loss == loss_steps
    assert [e.step for e in events.Scalars("acc/task_1")] == ends
    assert events.Scalars("final/acc")[0].value == pytest.approx(m["acc"])


class _Logged(BoringModel):
    def training_step(self, batch, batch_idx):
        out = super().training_step(batch, batch_idx)
        self.log("train/loss", out["loss"])
        return out


@pytest.mark.parametrize("one_trainer", [False, True], ids=["trainer_per_task", "one_trainer"])
def test_the_step_axis_is_the_same_with_a_trainer_per_task_or_one_trainer(tmp_path, one_trainer):
    axis = StepAxis()
    logger = StreamCSVLogger(axis, save_dir=str(tmp_path), name="csv", version="")
    model, kw = _Logged(), dict(limit_train_batches=6, limit_val_batches=0, log_every_n_steps=1, logger=logger,
                                enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False)
    trainer = L.Trainer(max_epochs=1, **kw)
    for task in range(3):
        if one_trainer:
            trainer.fit_loop.max_epochs = task + 1  # continue: global_step goes on from the last task
        else:
            trainer = L.Trainer(max_epochs=1, **kw)  # global_step starts at 0 again
        axis.task_start(trainer.global_step)
        trainer.fit(model)
        axis.task_end(trainer.global_step)
    logger.save()
    steps = [int(r["step"]) for r in csv.DictReader((tmp_path / "csv" / "metrics.csv").open()) if r["train/loss"]]
    assert steps == list(range(18)) and axis.done == 18


@pytest.mark.parametrize("override, expected", [
    ("logger.kind=tensorbord", "logger.kind='tensorbord' is not valid (did you mean 'tensorboard'?); choose one or a list of: wandb, tensorboard, csv, mlflow, none"),
    ("logger.kind=[csv,7]", "logger.kind=7 is not valid"),
    ("trainer.logger=false", "trainer.logger is set by continual; use logger.kind"),
])
def test_bad_logger_settings_are_one_line_errors(capsys, override, expected):
    assert main(["config", "show", override]) == 2
    assert expected in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is not None, reason="mlflow is installed")
def test_mlflow_without_mlflow_names_the_install(capsys):
    assert main(["fit", "logger.kind=mlflow"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "continual: error: logger.kind=mlflow needs mlflow, which is not installed: pip install mlflow (or drop mlflow from logger.kind)"


@pytest.mark.parametrize("overrides, kind", [
    (["logger.wandb=false"], "none"),
    (["logger.wandb=true", "logger.kind=csv"], ["csv", "wandb"]),
    (["logger.wandb=false", "logger.kind=[csv,wandb]"], "csv"),
    (["logger.wandb=null", "logger.kind=csv"], "csv"),
])
def test_the_retired_wandb_switch_is_read_as_logger_kind(overrides, kind):
    from omegaconf import OmegaConf

    from continual.config import load_config

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = load_config(None, overrides)
    got = OmegaConf.to_container(cfg.logger)
    assert got["kind"] == kind and "wandb" not in got
    retired = [w for w in caught if "logger.wandb" in str(w.message)]
    if "logger.wandb=null" in overrides:  # the old default, in every old config.yaml: nothing to say
        assert not retired
    else:
        (w,) = retired
        assert w.category is FutureWarning and "is retired; read as logger.kind=" in str(w.message) and "\n" not in str(w.message)


def test_an_old_run_config_with_the_wandb_switch_loads_and_counts_as_the_same_config(tmp_path):
    """Old config.yaml files hold `logger.wandb` (null unless set); they still load, as a config file
    and as the config a finished compare cell or a resumed run was made with (logger.* may differ)."""
    from continual.config import load_config
    from continual.grid import changed_since
    from continual.build import method_schema
    from continual.rundir.state import config_diff, fingerprint

    out, _ = fit(tmp_path, "logger.kind=csv", "data.n_tasks=1", "trainer.max_epochs=1")
    text = (out / "config.yaml").read_text()
    assert "\nlogger:\n  kind: csv\n" in text
    for old in ("null", "false"):
        (out / "config.yaml").write_text(text.replace("\nlogger:\n  kind: csv\n", f"\nlogger:\n  kind: csv\n  wandb: {old}\n"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            cfg = load_config(str(out / "config.yaml"))
        assert cfg.logger.kind == "csv" and changed_since(out, cfg) is None
        assert config_diff({**fingerprint(cfg), "logger.wandb": None if old == "null" else False}, cfg, method_schema(cfg)) is None
    with pytest.warns(FutureWarning, match=r"^logger.wandb=false is retired; read as logger.kind=csv\."):
        changed = load_config(str(out / "config.yaml"), ["seed=1"])
    assert changed_since(out, changed) == "seed: 0 -> 1"
