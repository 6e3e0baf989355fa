"""Where each file of a run folder lives: the one list of a run's paths.

Everything else (the run folder, the state, the checkpoint callback, compare and sweep) asks
here, so renaming or moving a file is one edit.
"""

from __future__ import annotations

from pathlib import Path

CONFIG = "config.yaml"
METRICS = "metrics.json"
METRICS_CSV = "metrics.csv"
ACCURACY_PNG = "accuracy_matrix.png"
LOCK = ".continual.lock"  # an flock the system drops when its process dies
CHECKPOINTS = "checkpoints"
STATE = "state.pt"  # the task-boundary state
LAST = "last"  # the mid-task Lightning checkpoint; Lightning appends .ckpt
# what a run writes at its top level; `overwrite=true` removes these (and the checkpoints) first
RESULTS = (METRICS, CONFIG, METRICS_CSV, "*.png", "*.csv")


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINTS


def state_path(run_dir: str | Path) -> Path:
    return checkpoint_dir(run_dir) / STATE


def last_checkpoint_path(run_dir: str | Path) -> Path:
    return checkpoint_dir(run_dir) / f"{LAST}.ckpt"
