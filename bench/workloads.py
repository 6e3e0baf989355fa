"""The same Split-MNIST work done five ways, each a zero-argument callable for `timing.repeat`.

* `raw`: the hand-written loop of `bench.raw_loop` (fine-tuning, task-IL).
* `lightning`: the same work, each task's epochs run by a bare Lightning Trainer (`bench.lightning_loop`).
* `finetune`, `router`: `continual.experiment.run` in-process, exactly what `continual fit`
  runs after parsing the config (data loading, every Trainer, test passes, run-dir files).
* `router_step`: the router's training steps (forward, loss, backward, Adam) over every task's
  batches with no Lightning and no evaluation: the floor under `router`.

Every workload starts from the config, so each pays for reading the stream once.
"""

from __future__ import annotations

import contextlib
import io
import tempfile

import torch
from omegaconf import DictConfig

from bench.raw_loop import run_raw
from continual.build import build_method
from continual.config import load_config
from continual.data.datamodule import TaskStreamDataModule
from continual.data.loader import TensorLoader
from continual.data.streams import build_stream
from continual.experiment import run
from continual.features import load_stream

QUIET = ["logger.kind=none", "trainer.enable_progress_bar=false"]


def config(path: str, overrides: list[str]) -> DictConfig:
    """The config as `continual fit --config path overrides` would load it, writing to a temp dir."""
    return load_config(path, [*overrides, *QUIET, f"output_dir={tempfile.mkdtemp(prefix='bench_')}", "overwrite=true"])


def reference(cfg: DictConfig, device: str, loop=run_raw) -> list[list[float]]:
    """A reference loop on the config's stream, its tensors on `device`: the hand-written loop,
    or `loop` (bench.lightning_loop.run_lightning: the same work under a bare Trainer)."""
    stream = load_stream(cfg)  # what a method sees: flat features
    TaskStreamDataModule(stream, 1, 1).to(device)
    return loop(stream, list(cfg.backbone.hidden), cfg.optim.lr, cfg.data.batch_size, cfg.data.eval_batch_size, cfg.seed,
                cfg.trainer.max_epochs)


def platform(cfg: DictConfig) -> list[list[float]]:
    with contextlib.redirect_stdout(io.StringIO()):  # the run's summary: the table says enough
        return run(cfg)["accuracy_matrix"]


def router_step(cfg: DictConfig, device: str) -> None:
    stream = load_stream(cfg)  # what a method sees: flat features
    TaskStreamDataModule(stream, 1, 1).to(device)
    module = build_method(cfg, stream).to(device)
    for task in stream.tasks:  # without a Trainer, training_step logs nothing
        module.set_task(task.id)
        with torch.no_grad():  # the keys start at k-means centres of the task's queries, as in `fit`
            module.memories[task.id].fit_keys(module.query(task.x_train[:4096]), torch.Generator().manual_seed(cfg.seed))
        opt = module.configure_optimizers()
        loader = TensorLoader(task.x_train, task.y_train, task.id, cfg.data.batch_size, train=True, seed=cfg.seed)
        for i, batch in enumerate(loader):
            loss = module.training_step(batch, i)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def work(cfg: DictConfig) -> dict:
    """What one run does: its tasks, and the training samples and optimizer steps of every epoch."""
    stream = build_stream(cfg.data, cfg.seed)
    epochs, size = cfg.trainer.max_epochs, cfg.data.batch_size
    return {"n_tasks": len(stream), "train_samples": sum(len(t.y_train) for t in stream.tasks) * epochs,
            "train_steps": sum(-(-len(t.y_train) // size) for t in stream.tasks) * epochs}
