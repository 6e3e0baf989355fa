"""`RunLogger`: the one place a run reports to its Lightning loggers (W&B, TensorBoard, CSV, MLflow).

It owns the loggers `logger.kind` names (W&B by default, offline unless the user chose a mode);
every task's Trainer logs training steps to them, and the task loop hands it the stream metrics
after each task and the final summary. Every logger receives the same metrics; W&B also gets
the tables and plots. With no logger every call is a no-op. Rank 0 only: on other ranks
Lightning's loggers do nothing.

One step axis for the whole stream: a Trainer's `global_step` restarts with each new Trainer,
so the loggers add an offset (`StepAxis`) that makes task t's steps follow task t-1's whether
each task has its own Trainer or one Trainer continues across tasks. W&B additionally plots the
per-task metrics (`acc/*`, `final/*`) against `task` (1 = after the first task).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from continual.errors import ConfigError
from continual.registry import did_you_mean

FINAL_KEYS = ("acc", "bwt", "fwt", "avg_forgetting")  # logged as final/<key>: what sweeps optimize
KINDS = ("wandb", "tensorboard", "csv", "mlflow", "none")
# kind -> (a module that provides it, the package to install)
_NEEDS = {"tensorboard": (("tensorboard", "tensorboardX"), "tensorboard"), "mlflow": (("mlflow",), "mlflow")}


def logger_kinds(cfg: DictConfig) -> list[str]:
    """The loggers `cfg` (the `logger` section) asks for, checked; a one-line ConfigError otherwise."""
    kinds = list(cfg.kind) if OmegaConf.is_list(cfg.kind) or isinstance(cfg.kind, list) else [cfg.kind]
    for kind in kinds:
        if kind not in KINDS:
            raise ConfigError(f"logger.kind={kind!r} is not valid{did_you_mean(kind, KINDS)}; choose one or a list of: {', '.join(KINDS)} (e.g. logger.kind=[wandb,csv])")
    kinds = [k for k in dict.fromkeys(kinds) if k != "none"]
    for kind in kinds:
        modules, package = _NEEDS.get(kind, ((), None))
        if modules and not any(importlib.util.find_spec(m) for m in modules):
            raise ConfigError(f"logger.kind={kind} needs {package}, which is not installed: pip install {package} (or drop {kind} from logger.kind)")
    return kinds


class StepAxis:
    """Steps of earlier tasks, added to the step a Trainer logs, so the stream has one increasing axis."""

    def __init__(self, done: int = 0):
        self.done = done  # training steps of the tasks finished so far
        self.offset = done

    def task_start(self, trainer_step: int) -> None:
        """A new Trainer starts at 0 (offset: the steps done); one that continues is already there (offset 0)."""
        self.offset = self.done - trainer_step

    def task_end(self, trainer_step: int) -> None:
        self.done = self.offset + trainer_step


def _lightning_loggers(cfg: DictConfig, kinds: list[str], run_dir: Path, axis: StepAxis, run_id: str | None) -> list:
    from continual import loggers

    name = cfg.logger.name or run_dir.name
    config = OmegaConf.to_container(cfg, resolve=True)
    out = []
    for kind in kinds:
        if kind == "wandb":
            if cfg.logger.mode is None and not os.environ.get("WANDB_SWEEP_ID"):  # a `wandb agent` run reports online
                os.environ.setdefault("WANDB_MODE", "offline")  # never block on the network by default
            out.append(loggers.StreamWandbLogger(
                axis, project=cfg.logger.project, entity=cfg.logger.entity, group=cfg.logger.group, job_type=cfg.logger.job_type,
                name=name, save_dir=str(run_dir), mode=cfg.logger.mode or os.environ.get("WANDB_MODE", "online"),
                tags=list(cfg.logger.tags), config=config, **({"id": run_id, "resume": "allow"} if run_id else {}),
            ))
            continue
        if kind == "tensorboard":
            logger = loggers.StreamTensorBoardLogger(axis, save_dir=str(run_dir), name="tensorboard", version="", default_hp_metric=False)
        elif kind == "csv":
            logger = loggers.StreamCSVLogger(axis, save_dir=str(run_dir), name="csv")  # csv/version_<n>: one per session, as
            # Lightning's CSV writer replaces a folder's metrics.csv (a resumed run starts version_1)
        else:  # mlflow: $MLFLOW_TRACKING_URI if set, else a file store in the run directory
            logger = loggers.StreamMLFlowLogger(axis, experiment_name=cfg.logger.project, run_name=name, save_dir=str(run_dir / "mlruns"),
                                                tags={"group": cfg.logger.group} if cfg.logger.group else None)
        logger.log_hyperparams(config)
        out.append(logger)
    return out


class RunLogger:
    def __init__(self, cfg: DictConfig, run_dir: Path, state: dict | None = None):
        """`state`: a resumed run's saved state (its W&B run and the steps already logged)."""
        from lightning.pytorch.loggers import WandbLogger

        self.axis = StepAxis(state.get("logged_steps", 0) if state else 0)
        self.loggers = _lightning_loggers(cfg, logger_kinds(cfg.logger), run_dir, self.axis, state["wandb_id"] if state else None)
        self.wandb = next((lg for lg in self.loggers if isinstance(lg, WandbLogger)), None)
        self._task_axis: set[str] = set()  # W&B keys already plotted against `task`

    @property
    def lightning(self) -> list | None:
        """The Lightning loggers for a Trainer's `logger=`; None without any."""
        return self.loggers or None

    @property
    def run_id(self) -> str | None:
        return self.wandb.version if self.wandb is not None else None

    def state(self) -> dict:
        """What a resumed run needs to continue the same W&B run on the same step axis."""
        return {"wandb_id": self.run_id, "logged_steps": self.axis.done}

    def task_start(self, trainer_step: int) -> None:
        """Called before task training starts, with the Trainer's `global_step` then."""
        self.axis.task_start(trainer_step)

    def task_end(self, task: int, scalars: dict, trainer_step: int) -> None:
        """Task `task`'s (0-based) stream metrics, once its Trainer reached `trainer_step`."""
        self.axis.task_end(trainer_step)
        self._log({"task": task + 1, **scalars})

    def _log(self, scalars: dict) -> None:
        """Per-task metrics at the stream's current step; W&B plots them against `task`."""
        if self.wandb is not None:
            for key in scalars.keys() - self._task_axis - {"task"}:
                self.wandb.experiment.define_metric(key, step_metric="task")
            self._task_axis |= scalars.keys()
        for logger in self.loggers:
            logger.log_stream_metrics(scalars, self.axis.done)

    def finish(self, metrics: dict, suite, pngs: dict[str, Path]) -> None:
        if not self.loggers:
            return
        from continual.metrics.registry import final_scalars

        summary = {k: metrics[k] for k in FINAL_KEYS if metrics[k] is not None}
        summary.update({f"forgetting/task_{j + 1}": f for j, f in enumerate(metrics["forgetting"]) if f is not None})
        T = len(metrics["accuracy_matrix"])
        self._log({"task": T, **{f"final/{k}": v for k, v in summary.items()}, **final_scalars(metrics)})
        for logger in self.loggers:
            logger.finalize("success")
        if self.wandb is not None:
            self._finish_wandb(metrics, suite, pngs, summary)

    def _finish_wandb(self, metrics: dict, suite, pngs: dict[str, Path], summary: dict) -> None:
        import wandb

        logger = self.wandb
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
