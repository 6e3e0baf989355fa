"""The one reader of a run's `metrics.json` and `config.yaml`, and the one rule for "this run is finished"."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from continual.rundir.layout import CONFIG, METRICS


def read_metrics(run_dir: str | Path) -> dict:
    """The run's metrics.json as written (partial or complete); OSError / ValueError if unreadable."""
    return json.loads((Path(run_dir) / METRICS).read_text())


def finished_metrics(run_dir: str | Path) -> dict | None:
    """The metrics of a finished run (`"complete": true`), else None (missing, torn, or partial)."""
    try:
        metrics = read_metrics(run_dir)
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) and metrics.get("complete") is True else None


def saved_config(run_dir: str | Path) -> DictConfig:
    """The config a run was made with, as written (untyped); OSError / ValueError if unreadable."""
    return OmegaConf.load(Path(run_dir) / CONFIG)
