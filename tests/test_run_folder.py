"""The run folder itself (`continual.rundir`): its lock, its one completeness rule, its state round
trip, the checksums of its checkpoints, and the temporary files a killed write leaves.

Each test drives the real `RunDirectory` on a real folder; no training is needed.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest
import torch

from continual.build import method_schema
from continual.callbacks.checkpointing import AtomicCheckpointIO
from continual.config import load_config
from continual.errors import CheckpointError, ConfigError
from continual.rundir import finished_metrics, layout, read_metrics, state
from continual.rundir.folder import RunDirectory, resolve_run_dir


def folder(path, *overrides) -> RunDirectory:
    cfg = load_config(None, [f"output_dir={path}", "logger.kind=none", *overrides])
    return RunDirectory(cfg, writer=True, schema=method_schema(cfg))


def resumed(path, *overrides) -> RunDirectory:
    cfg = load_config(None, [f"resume={path}", "logger.kind=none", *overrides])
    return RunDirectory(cfg, writer=True, schema=method_schema(cfg))


# -- the lock -----------------------------------------------------------------------------------

HOLD = textwrap.dedent("""
    import sys, time
    from continual.build import method_schema
    from continual.config import load_config
    from continual.rundir.folder import RunDirectory
    cfg = load_config(None, [f"output_dir={sys.argv[1]}", "logger.kind=none"])
    RunDirectory(cfg, writer=True, schema=method_schema(cfg))
    print("holding", flush=True)
    time.sleep(600)
""")


def test_the_lock_refuses_a_second_writer_until_the_first_process_dies(tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(ConfigError) as refused:
            folder(run)
        assert f"output_dir '{run}' is in use by another continual run (pid {holder.pid} on " in str(refused.value)
    finally:
        holder.kill()
        holder.wait()
    folder(run)  # the system dropped the lock with the process: the folder is free again
    assert (run / layout.LOCK).is_file()


# -- the one completeness rule ------------------------------------------------------------------

def test_finished_metrics_is_none_unless_metrics_json_is_whole_and_complete(tmp_path):
    run = folder(tmp_path / "run")
    assert finished_metrics(run.path) is None  # missing
    partial = {"acc": 0.5, "complete": False, "tasks_done": 1, "tasks": [[0, 1], [2, 3]]}
    run.task_done(partial)  # the partial metrics.json a task leaves
    assert read_metrics(run.path) == partial and finished_metrics(run.path) is None
    whole = json.dumps({**partial, "complete": True})
    (run.path / layout.METRICS).write_text(whole[:-5])  # torn: a write cut off
    assert finished_metrics(run.path) is None
    (run.path / layout.METRICS).write_text(json.dumps({**partial, "complete": "true"}))  # not the boolean
    assert finished_metrics(run.path) is None
    (run.path / layout.METRICS).write_text(whole)
    assert finished_metrics(run.path) == {**partial, "complete": True}
    with pytest.raises(ConfigError, match=r"already holds a finished run \(metrics.json\); choose another output_dir"):
        folder(run.path)  # the same rule decides that a new run may not write over it


def test_a_partial_run_is_refused_without_resume_and_cleared_by_overwrite(tmp_path):
    run = folder(tmp_path / "run")
    run.write_config()
    run.save_state(complete=False, module={}, callbacks={}, wall_time_s=0.0, wandb_id=None)
    run.task_done({"complete": False, "tasks_done": 1, "tasks": [[0], [1], [2]]})
    layout.last_checkpoint_path(run.path).write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"holds a partial run \(1 of 3 tasks done\); continue it with resume="):
        folder(run.path)
    folder(run.path, "overwrite=true")
    assert sorted(p.name for p in run.path.rglob("*")) == [layout.LOCK, layout.CHECKPOINTS]


# -- state round trip ---------------------------------------------------------------------------

def test_state_round_trip_restores_tensors_counts_and_random_numbers(tmp_path):
    run = folder(tmp_path / "run")
    weights = {"w": torch.randn(3, 4), "buffer": torch.arange(5)}
    counts = {"metrics": {"correct": [[3, 4]], "total": [[5, 5]]}}
    torch.manual_seed(11), random.seed(11), np.random.seed(11)
    run.save_state(complete=False, module=weights, callbacks=counts, wall_time_s=12.5, wandb_id="abc")
    after_save = (torch.rand(3), random.random(), np.random.rand())

    loaded = resumed(run.path, "logger.kind=csv", "trainer.enable_progress_bar=false").load_state()  # volatile keys may differ
    assert loaded["complete"] is False and loaded["wall_time_s"] == 12.5 and loaded["wandb_id"] == "abc"
    assert loaded["callbacks"] == counts and loaded["module"].keys() == weights.keys()
    assert all(torch.equal(loaded["module"][k], v) for k, v in weights.items())
    torch.manual_seed(99), random.seed(99), np.random.seed(99)
    state.set_rng_state(loaded["rng"])
    again = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(again[0], after_save[0]) and again[1:] == after_save[1:]


def test_state_written_under_another_config_is_refused_naming_the_key(tmp_path):
    run = folder(tmp_path / "run")
    run.save_state(complete=False, module={}, callbacks={}, wall_time_s=0.0, wandb_id=None)
    with pytest.raises(CheckpointError, match=r"was written with a different config \(seed: 0 -> 1\)"):
        resumed(run.path, "seed=1").load_state()
    assert folder(tmp_path / "fresh").load_state() is None  # without resume= there is nothing to load


def test_mid_task_checkpoint_only_for_its_own_task_and_never_torn(tmp_path):
    run = folder(tmp_path / "run")
    again = resumed(run.path)
    assert again.mid_task_checkpoint(1) is None  # none written
    last = layout.last_checkpoint_path(run.path)
    last.parent.mkdir(parents=True, exist_ok=True)
    tag = {"continual": state.task_tag(1, state.fingerprint(run.cfg))}
    torch.save(tag, last)  # not sealed by continual: nothing loads unchecked
    with pytest.warns(UserWarning, match="is unchecked \\(it has no checksum\\); ignoring it: task 2 restarts from state.pt"):
        assert again.mid_task_checkpoint(1) is None
    last.write_bytes(state.checkpoint_bytes(tag))
    assert again.mid_task_checkpoint(1) == last
    assert again.mid_task_checkpoint(2) is None  # a finished task's: its end state is saved
    assert folder(tmp_path / "fresh").mid_task_checkpoint(1) is None  # without resume=
    last.write_bytes(last.read_bytes()[:40])
    with pytest.warns(UserWarning, match="is torn or unreadable; ignoring it: task 2 restarts from state.pt"):
        assert again.mid_task_checkpoint(1) is None


# -- damaged files --------------------------------------------------------------------------------

WEIGHTS = torch.arange(4096, dtype=torch.float32)  # 16 KiB whose bytes are easy to find in the file


def flip_weights(path) -> None:
    """Flip 16 bytes inside the stored tensor WEIGHTS (a disk or copy error), and check that torch
    itself still loads the file without complaint, with other numbers: only a checksum can tell."""
    data = bytearray(path.read_bytes())
    at = bytes(data).find(WEIGHTS.numpy().tobytes()) + 1000
    assert at > 1000
    data[at:at + 16] = bytes(b ^ 0xFF for b in data[at:at + 16])
    path.write_bytes(bytes(data))
    loaded = torch.load(path, weights_only=True)
    weights = loaded["module"]["w"] if "module" in loaded else loaded["w"]
    assert weights.shape == WEIGHTS.shape and (weights != WEIGHTS).sum() == 4


def test_a_damaged_state_is_refused_in_one_line_naming_the_file(tmp_path):
    run = folder(tmp_path / "run")
    run.save_state(complete=False, module={"w": WEIGHTS}, callbacks={}, wall_time_s=0.0, wandb_id=None)
    assert torch.equal(resumed(run.path).load_state()["module"]["w"], WEIGHTS)  # whole: it loads
    path = layout.state_path(run.path)
    flip_weights(path)
    with pytest.raises(CheckpointError) as refused:
        resumed(run.path).load_state()
    assert str(refused.value) == (
        f"checkpoint '{path}' is damaged (its bytes no longer match its checksum: a disk or copy error); "
        "restore it from a backup, or start a new run without resume="
    )


def test_a_damaged_mid_task_checkpoint_is_skipped_and_lightning_reads_a_whole_one(tmp_path):
    run = folder(tmp_path / "run")
    last = layout.last_checkpoint_path(run.path)
    checkpoint = {"continual": state.task_tag(1, state.fingerprint(run.cfg)), "w": WEIGHTS}
    AtomicCheckpointIO().save_checkpoint(checkpoint, last)  # as Lightning writes it
    assert torch.equal(AtomicCheckpointIO().load_checkpoint(last)["w"], WEIGHTS)  # as Lightning reads it
    assert resumed(run.path).mid_task_checkpoint(1) == last
    flip_weights(last)
    with pytest.warns(UserWarning, match="is damaged \\(its checksum does not match\\); ignoring it: task 2 restarts from state.pt"):
        assert resumed(run.path).mid_task_checkpoint(1) is None
    with pytest.raises(CheckpointError, match="no longer match its checksum"):
        AtomicCheckpointIO().load_checkpoint(last)


def test_a_killed_writes_temporary_files_go_at_the_next_start(tmp_path):
    run = folder(tmp_path / "run")
    run.write_config()
    run.save_state(complete=False, module={}, callbacks={}, wall_time_s=0.0, wandb_id=None)
    # what `atomic_write` leaves when killed between creating its temporary file and the rename
    stale = [tempfile.mkstemp(dir=d, prefix=f".{name}.")[1] for d, name in
             ((run.path, layout.METRICS), (run.path, layout.CONFIG), (layout.checkpoint_dir(run.path), layout.STATE))]
    kept = [run.path / ".hidden", run.path / "notes.txt", layout.checkpoint_dir(run.path) / ".keep.me"]
    for path in kept:
        path.write_text("mine")
    before = sorted(p.name for p in run.path.rglob("*"))
    assert all(os.path.basename(p) in before for p in stale)
    resumed(run.path)
    after = sorted(p.name for p in run.path.rglob("*"))
    assert after == sorted(set(before) - {os.path.basename(p) for p in stale})
    assert {layout.LOCK, layout.CONFIG, layout.STATE, ".hidden", "notes.txt", ".keep.me"} <= set(after)


def test_the_default_run_folder_has_no_colon_for_your_own_method_or_stream():
    """`module:attr` names your own method or stream; a ':' in a path reads as host:path to scp and rsync."""
    cfg = load_config(None, ["method=continual.baselines.finetune:FineTune", "data.stream=helpers:broken_stream"])
    name = resolve_run_dir(cfg).name
    assert ":" not in name and name.endswith("_continual.baselines.finetune.FineTune_helpers.broken_stream_task_s0")
