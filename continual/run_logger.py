"""`RunLogger`: the one place a run reports to Weights & Biases.

It owns the Lightning `WandbLogger` the task's Trainers log training steps to, and logs what
the task loop hands it: the stream metrics after each task and the final summary, tables and
plots. W&B is offline unless the user chose a mode; with `logger.wandb=false` every call is a
no-op. Rank 0 only: on other ranks Lightning's logger does nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

FINAL_KEYS = ("acc", "bwt", "fwt", "avg_forgetting")  # logged as final/<key>: what sweeps optimize


class RunLogger:
    def __init__(self, cfg: DictConfig, run_dir: Path, run_id: str | None = None):
        """`run_id` continues a resumed run's W&B run."""
        self.lightning = None
        if not cfg.logger.wandb:
            return
        from lightning.pytorch.loggers import WandbLogger

        if cfg.logger.mode is None and not os.environ.get("WANDB_SWEEP_ID"):  # a `wandb agent` run reports online
            os.environ.setdefault("WANDB_MODE", "offline")  # never block on the network by default
        mode = cfg.logger.mode or os.environ.get("WANDB_MODE", "online")
        self.lightning = WandbLogger(
            project=cfg.logger.project,
            name=cfg.logger.name or run_dir.name,
            save_dir=str(run_dir),
            mode=mode,
            tags=list(cfg.logger.tags),
            config=OmegaConf.to_container(cfg, resolve=True),
            **({"id": run_id, "resume": "allow"} if run_id else {}),
        )

    @property
    def run_id(self) -> str | None:
        return self.lightning.version if self.lightning is not None else None

    def task_end(self, task: int, scalars: dict) -> None:
        if self.lightning is not None:
            self.lightning.log_metrics({"task": task, **scalars})

    def finish(self, metrics: dict, suite, pngs: dict[str, Path]) -> None:
        if self.lightning is None:
            return
        import wandb

        logger = self.lightning
        summary = {k: metrics[k] for k in FINAL_KEYS if metrics[k] is not None}
        summary.update({f"forgetting/task_{j + 1}": f for j, f in enumerate(metrics["forgetting"]) if f is not None})
        logger.log_metrics({f"final/{k}": v for k, v in summary.items()})
        T = len(metrics["accuracy_matrix"])
        logger.log_table(
            key="accuracy_matrix",
            columns=["after_task"] + [f"T{j + 1}" for j in range(T)],
            data=[[i + 1, *row] for i, row in enumerate(metrics["accuracy_matrix"])],
        )
        suite.log(logger, metrics)
        logger.experiment.log({k: wandb.Image(str(p)) for k, p in pngs.items()})
        for k, v in summary.items():
            logger.experiment.summary[k] = v
        logger.experiment.finish()
