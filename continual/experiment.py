"""Run one experiment: a method over a task stream, one Lightning `Trainer` per task.

Per task t: `fit` on task t (so `trainer.*` config keys mean exactly what Lightning says, with
`max_epochs` counted per task), then one `test` pass over every task's test set, which gives
row t of the accuracy matrix. A test pass before any training gives the random-init
reference for forward transfer. After every task the run directory and the resume state are
rewritten, and the task in progress is checkpointed every few steps, so a crash loses at most
those steps and `resume=<run dir>` continues where it stopped (`continual.resume`).

Under DDP every rank runs this loop; only rank 0 writes files and the W&B run.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from datetime import datetime
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from continual.errors import ConfigError

RUN_DIR_ENV = "CONTINUAL_RUN_DIR"  # set by rank 0 so processes launched later agree on it
FINAL_KEYS = ("acc", "bwt", "fwt", "avg_forgetting")  # logged to W&B as final/<key>: what sweeps optimize


def build_method(cfg: DictConfig, stream):
    from continual.methods import REGISTRY, method_class
    from continual.models.backbone import build_backbone
    from continual.scenarios import LabelSpace

    if cfg.method not in REGISTRY:
        raise ConfigError(f"method='{cfg.method}' has no implementation")
    n_out = LabelSpace(cfg.scenario, stream.task_classes, stream.n_classes).n_out
    common = dict(task_classes=stream.task_classes, n_classes=stream.n_classes, scenario=cfg.scenario, optim=cfg.optim)
    return method_class(cfg.method).from_config(build_backbone(cfg, stream, n_out), cfg, **common)


def _launcher_job_id() -> str | None:
    """An id every process of an externally launched job shares (srun, torchrun --rdzv-id)."""
    if os.environ.get("SLURM_JOB_ID"):
        return "slurm" + os.environ.get("SLURM_ARRAY_JOB_ID", os.environ["SLURM_JOB_ID"]) + os.environ.get("SLURM_ARRAY_TASK_ID", "")
    run_id = os.environ.get("TORCHELASTIC_RUN_ID", "none")
    return None if run_id == "none" else run_id


def resolve_run_dir(cfg: DictConfig) -> Path:
    if cfg.resume:
        if cfg.output_dir and Path(cfg.output_dir) != Path(cfg.resume):
            raise ConfigError(f"resume={cfg.resume} and output_dir={cfg.output_dir} differ; resume continues in its own run directory: drop output_dir")
        return Path(cfg.resume)
    if cfg.output_dir:
        return Path(cfg.output_dir)
    if os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV])
    stamp = _launcher_job_id()
    if stamp is None:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # started by torchrun / fabric run: ranks cannot agree on a time
            raise ConfigError("this job was started by a multi-process launcher; pass output_dir=<run dir> so every rank writes to the same place")
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return Path("runs") / f"{stamp}_{cfg.method}_{cfg.data.stream}_{cfg.scenario}_s{cfg.seed}"


def prepare_run_dir(cfg: DictConfig, is_rank_zero: bool) -> Path:
    run_dir = resolve_run_dir(cfg)
    os.environ[RUN_DIR_ENV] = str(run_dir)
    if is_rank_zero:
        if (run_dir / "metrics.json").exists() and not cfg.overwrite and not cfg.resume:
            raise ConfigError(
                f"output_dir '{run_dir}' already holds a metrics.json; choose another output_dir or pass overwrite=true"
            )
        run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def make_logger(cfg: DictConfig, run_dir: Path, run_id: str | None = None):
    """The W&B logger (rank 0 creates the run); `run_id` continues a resumed run's W&B run."""
    if not cfg.logger.wandb:
        return None
    from lightning.pytorch.loggers import WandbLogger

    if cfg.logger.mode is None and not os.environ.get("WANDB_SWEEP_ID"):  # a `wandb agent` run reports online
        os.environ.setdefault("WANDB_MODE", "offline")  # never block on the network by default
    mode = cfg.logger.mode or os.environ.get("WANDB_MODE", "online")
    return WandbLogger(
        project=cfg.logger.project,
        name=cfg.logger.name or run_dir.name,
        save_dir=str(run_dir),
        mode=mode,
        tags=list(cfg.logger.tags),
        config=OmegaConf.to_container(cfg, resolve=True),
        **({"id": run_id, "resume": "allow"} if run_id else {}),
    )


def _stop_if_terminated(tr, run_dir: Path, tasks_done: int) -> None:
    """Lightning swallows a SIGTERM that arrives outside training steps; honour it here."""
    from continual.errors import Interrupted

    if tr.received_sigterm:
        raise Interrupted(
            f"stopped by SIGTERM with {tasks_done} task(s) finished; checkpoints are in {run_dir}/checkpoints: "
            f"continue with the same command plus resume={run_dir}"
        )


def run(cfg: DictConfig) -> dict:
    """Train `cfg.method` over the stream; returns the metrics dict written to metrics.json."""
    import lightning as L
    from lightning.pytorch.utilities import rank_zero_only
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from continual import resume
    from continual.callbacks import FrozenBackboneGuard, TaskCheckpoint, TaskProgressBar
    from continual.data.datamodule import TaskStreamDataModule
    from continual.data.streams import build_stream
    from continual.errors import Interrupted
    from continual.metrics import report
    from continual.metrics.suite import MetricSuite

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    # data.val_fraction=0 serves no validation loader on purpose; Lightning warns about it
    warnings.filterwarnings("ignore", "Total length of `list` across ranks is zero")
    # the frozen backbone stays in eval mode on purpose (no dropout/batch-norm updates in it)
    warnings.filterwarnings("ignore", r"Found \d+ module\(s\) in eval mode at the start of training")
    is_zero = rank_zero_only.rank == 0
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    stream = build_stream(cfg.data, cfg.seed)  # data and model errors surface before any file is written
    module = build_method(cfg, stream)
    run_dir = prepare_run_dir(cfg, is_zero)
    state = resume.load_state(run_dir, cfg) if cfg.resume else None
    if state is not None and state["complete"]:
        if is_zero:
            print(f"run {run_dir} is already complete; nothing to resume")
        return json.loads((run_dir / "metrics.json").read_text())
    if is_zero:
        report.atomic_write(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    dm = TaskStreamDataModule(
        stream, cfg.data.batch_size, cfg.data.eval_batch_size, cfg.seed, joint=getattr(module, "joint", False)
    )
    logger = make_logger(cfg, run_dir, state["wandb_id"] if state else None)
    guard = FrozenBackboneGuard()
    suite = MetricSuite(cfg, stream, module)  # the same callbacks see every task's test pass
    fingerprint = resume.fingerprint(cfg)
    T = len(stream)

    def trainer(task: int | None = None) -> L.Trainer:
        """A Trainer for one test pass, or for fitting `task` (with its mid-task checkpoints)."""
        kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
        kwargs.setdefault("default_root_dir", str(run_dir))
        callbacks = [guard, *suite.callbacks]
        if kwargs.get("enable_progress_bar", True):
            callbacks.append(TaskProgressBar(T))
        if task is not None:
            callbacks.append(TaskCheckpoint(run_dir, task, fingerprint, cfg.checkpoint_every_n_steps))
            kwargs["enable_checkpointing"] = True
        tr = L.Trainer(**kwargs, logger=logger if logger is not None else False, callbacks=callbacks)
        dm.to(tr.strategy.root_device)
        return tr

    def test(tr: L.Trainer, after: int) -> None:
        """The test pass over every task after training task `after` (-1: before any training)."""
        suite.begin(after)
        tr.test(module, datamodule=dm, verbose=False)
        _stop_if_terminated(tr, run_dir, max(after, 0))

    started = time.perf_counter()
    if state is None:
        test(trainer(), -1)
        elapsed = 0.0
    else:
        module.load_state_dict(state["module"])
        module.carried_optim = state["optim"]
        guard.reference = state["guard"]
        suite.restore(state["metrics"])
        elapsed = state["wall_time_s"]
    tasks_done = len(suite.forgetting.rows)

    def save_state(complete: bool) -> None:
        if is_zero:
            resume.save_state(
                run_dir, cfg, complete=complete, module=module.state_dict(), optim=module.carried_optim, guard=guard.reference,
                metrics=suite.export(),
                wall_time_s=elapsed + time.perf_counter() - started,
                wandb_id=logger.version if logger is not None else None,
            )

    if state is None:
        save_state(False)
    else:
        resume.set_rng_state(state["rng"])  # as the uninterrupted run had it at this task boundary
        if is_zero:
            print(f"resuming {run_dir}: {tasks_done} of {T} tasks already done")
    base = {
        "method": cfg.method,
        "scenario": cfg.scenario,
        "seed": cfg.seed,
        "stream": stream.name,
        "tasks": stream.task_classes,
        "task_labels": [t.labels for t in stream.tasks],
        "provenance": report.provenance(),
    }
    metrics: dict = {}
    for t in range(tasks_done, T):
        dm.set_task(t)
        module.set_task(t)
        tr = trainer(task=t)
        ckpt = resume.mid_task_checkpoint(run_dir, t, cfg) if cfg.resume else None
        if ckpt is not None and is_zero:
            print(f"resuming task {t + 1} mid-way from {ckpt}")
        try:
            tr.fit(module, datamodule=dm, ckpt_path=ckpt, weights_only=True)
        except SIGTERMException:
            raise Interrupted(
                f"stopped by SIGTERM during task {t + 1}; its checkpoint is {run_dir}/checkpoints/last.ckpt: "
                f"continue with the same command plus resume={run_dir}"
            ) from None
        _stop_if_terminated(tr, run_dir, t)
        test(tr, t)
        metrics = {
            **base,
            "complete": t == T - 1,
            "tasks_done": t + 1,
            **suite.results(),
            "wall_time_s": elapsed + time.perf_counter() - started,
        }
        if logger is not None:
            logger.log_metrics({"task": t, **suite.scalars()})
        if t < T - 1:
            if is_zero:
                report.write_metrics_json(run_dir, metrics)  # partial: finished tasks survive a crash
            save_state(False)
        if is_zero:
            (resume.checkpoint_dir(run_dir) / f"{resume.LAST}.ckpt").unlink(missing_ok=True)  # task t is in state.pt
    metrics["wall_time_s"] = elapsed + time.perf_counter() - started
    if is_zero:
        report.write_metrics_json(run_dir, metrics)
        report.write_metrics_csv(run_dir, metrics)
        png = report.save_accuracy_matrix_png(run_dir, metrics)
        pngs = suite.write(run_dir, metrics)
        save_state(True)
        if logger is not None:
            log_final(logger, metrics, png)
            suite.log(logger, metrics, pngs)
            logger.experiment.finish()
        print(report.format_summary(metrics))
        print(f"run directory: {run_dir}")
    return metrics


def log_final(logger, metrics: dict, png: Path) -> None:
    import wandb

    summary = {k: metrics[k] for k in FINAL_KEYS if metrics[k] is not None}
    summary.update({f"forgetting/task_{j + 1}": f for j, f in enumerate(metrics["forgetting"]) if f is not None})
    logger.log_metrics({f"final/{k}": v for k, v in summary.items()})
    T = len(metrics["accuracy_matrix"])
    logger.log_table(
        key="accuracy_matrix",
        columns=["after_task"] + [f"T{j + 1}" for j in range(T)],
        data=[[i + 1, *row] for i, row in enumerate(metrics["accuracy_matrix"])],
    )
    logger.experiment.log({"accuracy_matrix_heatmap": wandb.Image(str(png))})
    for k, v in summary.items():
        logger.experiment.summary[k] = v
