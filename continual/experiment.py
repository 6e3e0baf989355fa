"""Run one experiment: a method over a task stream, one Lightning `Trainer` per task.

Per task t: `fit` on task t (so `trainer.*` config keys mean exactly what Lightning says, with
`max_epochs` counted per task), then one `test` pass over every task's test set, which gives
row t of the accuracy matrix. A test pass before any training gives the random-init
reference for forward transfer. After every task the run directory is rewritten, so a crash
loses at most the task in progress.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from continual.errors import ConfigError

RUN_DIR_ENV = "CONTINUAL_RUN_DIR"  # set by rank 0 so processes launched later agree on it


def build_method(cfg: DictConfig, stream):
    from continual.baselines import REGISTRY, method_class
    from continual.models.backbone import build_backbone
    from continual.scenarios import LabelSpace

    if cfg.method not in REGISTRY:
        raise ConfigError(f"method='{cfg.method}' has no implementation")
    n_out = LabelSpace(cfg.scenario, stream.task_classes, stream.n_classes).n_out
    common = dict(task_classes=stream.task_classes, n_classes=stream.n_classes, scenario=cfg.scenario, optim=cfg.optim)
    return method_class(cfg.method).from_config(build_backbone(cfg, stream, n_out), cfg, **common)


def resolve_run_dir(cfg: DictConfig) -> Path:
    if cfg.output_dir:
        return Path(cfg.output_dir)
    if os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV])
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return Path("runs") / f"{stamp}_{cfg.method}_{cfg.data.stream}_{cfg.scenario}_s{cfg.seed}"


def prepare_run_dir(cfg: DictConfig, is_rank_zero: bool) -> Path:
    run_dir = resolve_run_dir(cfg)
    os.environ[RUN_DIR_ENV] = str(run_dir)
    if is_rank_zero:
        if (run_dir / "metrics.json").exists() and not cfg.overwrite:
            raise ConfigError(
                f"output_dir '{run_dir}' already holds a metrics.json; choose another output_dir or pass overwrite=true"
            )
        run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def make_logger(cfg: DictConfig, run_dir: Path):
    if not cfg.logger.wandb:
        return None
    from lightning.pytorch.loggers import WandbLogger

    if cfg.logger.mode is None:
        os.environ.setdefault("WANDB_MODE", "offline")  # never block on the network by default
    mode = cfg.logger.mode or os.environ["WANDB_MODE"]
    return WandbLogger(
        project=cfg.logger.project,
        name=cfg.logger.name or run_dir.name,
        save_dir=str(run_dir),
        mode=mode,
        tags=list(cfg.logger.tags),
        config=OmegaConf.to_container(cfg, resolve=True),
    )


def run(cfg: DictConfig) -> dict:
    """Train `cfg.method` over the stream; returns the metrics dict written to metrics.json."""
    import lightning as L
    from lightning.pytorch.utilities import rank_zero_only

    from continual.callbacks import FrozenBackboneGuard, TaskProgressBar
    from continual.data.datamodule import TaskStreamDataModule
    from continual.data.streams import build_stream
    from continual.metrics import report
    from continual.metrics.stream import summarize

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    is_zero = rank_zero_only.rank == 0
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    stream = build_stream(cfg.data, cfg.seed)  # data and model errors surface before any file is written
    module = build_method(cfg, stream)
    run_dir = prepare_run_dir(cfg, is_zero)
    if is_zero:
        report.atomic_write(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    dm = TaskStreamDataModule(
        stream, cfg.data.batch_size, cfg.data.eval_batch_size, cfg.seed, joint=getattr(module, "joint", False)
    )
    logger = make_logger(cfg, run_dir)
    guard = FrozenBackboneGuard()
    T = len(stream)

    def trainer() -> L.Trainer:
        kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
        kwargs.setdefault("default_root_dir", str(run_dir))
        bar = [TaskProgressBar(T)] if kwargs.get("enable_progress_bar", True) else []
        tr = L.Trainer(**kwargs, logger=logger if logger is not None else False, callbacks=[guard, *bar])
        dm.to(tr.strategy.root_device)
        return tr

    def test(tr: L.Trainer) -> tuple[list[int], list[int]]:
        tr.test(module, datamodule=dm, verbose=False)
        return module.test_counts()

    started = time.perf_counter()
    correct0, total0 = test(trainer())
    initial = [c / n for c, n in zip(correct0, total0)]
    rows, counts_c, counts_n = [], [], []
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
    for t in range(T):
        dm.set_task(t)
        module.set_task(t)
        tr = trainer()
        tr.fit(module, datamodule=dm)
        correct, total = test(tr)
        rows.append([c / n for c, n in zip(correct, total)])
        counts_c.append(correct)
        counts_n.append(total)
        metrics = {
            **base,
            "complete": t == T - 1,
            "tasks_done": t + 1,
            "accuracy_matrix": rows,
            "initial_accuracy": initial,
            "counts": {"correct": counts_c, "total": counts_n},
            "wall_time_s": time.perf_counter() - started,
        }
        if logger is not None:
            logger.log_metrics({"task": t, **{f"acc/task_{j + 1}": a for j, a in enumerate(rows[-1])}})
        if is_zero and t < T - 1:
            report.write_metrics_json(run_dir, metrics)  # partial: finished tasks survive a crash
    metrics.update(summarize(rows, initial))
    metrics["wall_time_s"] = time.perf_counter() - started
    if is_zero:
        report.write_metrics_json(run_dir, metrics)
        report.write_metrics_csv(run_dir, metrics)
        png = report.save_accuracy_matrix_png(run_dir, metrics)
        if logger is not None:
            log_final(logger, metrics, png)
            logger.experiment.finish()
        print(report.format_summary(metrics))
        print(f"run directory: {run_dir}")
    return metrics


def log_final(logger, metrics: dict, png: Path) -> None:
    import wandb

    summary = {k: metrics[k] for k in ("acc", "bwt", "fwt", "avg_forgetting") if metrics[k] is not None}
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
