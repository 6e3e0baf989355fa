"""Run one experiment: a method over a task stream, one Lightning `Trainer` fitting each task.

The task loop, top to bottom. Per task t: the method's `on_task_start` hook gets task t's
training data, `fit` trains on it (so `trainer.*` config keys mean exactly what Lightning
says, with `max_epochs` counted per task), `on_task_end` gets the data again, and one `test`
pass over every task's test set gives row t of the accuracy matrix. A test pass before any
training gives the random-init reference for forward transfer. One more Trainer runs every
test pass.

The pieces only meet here: the data module and the method get the task cursor, the metric
callbacks see every test pass, the frozen-module guard every fit, the user's both; the run
directory (`RunDirectory`) writes every file and the state `resume=` continues from, and the
`RunLogger` reports to the loggers (W&B by default). Under DDP every rank runs this loop; only rank 0 writes.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
import warnings
from typing import Sequence

from omegaconf import DictConfig, OmegaConf


class _SigtermNoted:
    """Notes a SIGTERM that arrives anywhere in the loop, for the next `_stop_if_terminated`.

    Lightning handles SIGTERM only while it fits or tests (its handler is installed for each call
    and composes with this one); between those calls Python's default would kill the run on the
    spot. In the main thread only (signal handlers cannot be set elsewhere)."""

    received = False

    def __enter__(self) -> "_SigtermNoted":
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._note)
        return self

    def _note(self, signum, frame) -> None:
        self.received = True

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


def _stop_if_terminated(tr, run_dir, tasks_done: int, sigterm: _SigtermNoted) -> None:
    """Lightning swallows a SIGTERM that arrives outside training steps, and one between its calls
    is only noted: honour them here."""
    from continual.errors import Interrupted
    from continual.rundir import layout

    if tr.received_sigterm or sigterm.received:
        raise Interrupted(
            f"stopped by SIGTERM with {tasks_done} task(s) finished; checkpoints are in {layout.checkpoint_dir(run_dir)}: "
            f"continue with the same command plus resume={run_dir}"
        )


def check_accelerator(cfg: DictConfig) -> None:
    """`trainer.accelerator=gpu|cuda` without a visible GPU: one line, before anything is written."""
    import torch

    from continual.errors import ConfigError

    wanted = str(cfg.trainer.get("accelerator", "auto")).lower()
    if wanted in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.accelerator={wanted} but torch sees no CUDA GPU here (torch {torch.__version__}, "
            f"CUDA build: {torch.version.cuda or 'no'}); use trainer.accelerator=auto or cpu"
        )


def check_batches(cfg: DictConfig, stream) -> None:
    """A `trainer.limit_train_batches` fraction that rounds to no batch of some task trains nothing
    there (Lightning would stop with a traceback mid-stream): one line, before anything is written."""
    import math

    from continual.errors import ConfigError

    limit = cfg.trainer.get("limit_train_batches")
    if not isinstance(limit, float):
        return
    for task in stream.tasks:
        n = math.ceil(len(task.y_train) / cfg.data.batch_size)
        if int(n * limit) < 1:
            raise ConfigError(
                f"trainer.limit_train_batches={limit} keeps no batch of task {task.id + 1} ({n} batches of "
                f"data.batch_size={cfg.data.batch_size}); give at least {1 / n:.3g}, or an integer number of batches"
            )


def check_stream_for(cfg: DictConfig, stream) -> None:
    """Every check of the stream against the run's settings, before any feature is extracted or
    file written: its data (`check_stream`), the batches it trains, the class-split settings."""
    from continual.data.streams.check import check_class_split, check_stream

    check_stream(stream, cfg.data.eval_split)
    check_batches(cfg, stream)
    check_class_split(cfg.data, stream)


def run(cfg: DictConfig, callbacks: Sequence = ()) -> dict:
    """Train `cfg.method` over the stream; returns the metrics dict written to metrics.json.

    `callbacks`: Lightning callbacks of your own, attached to every task's Trainer (fit and test).
    Ends with a garbage collection: the module, its trainers and the stream refer to each other,
    and a process running runs in turn (an in-process grid, a loop over `run`) kept every finished
    run's data until Python's rare full collection (R-MNIST joint cells: killed for memory at the
    fourth)."""
    try:
        return _noting_sigterm(cfg, callbacks)
    finally:
        gc.collect()  # once that call's frame, and what it held, is gone


def _noting_sigterm(cfg: DictConfig, callbacks: Sequence) -> dict:
    with _SigtermNoted() as sigterm:
        return _task_loop(cfg, callbacks, sigterm)


def _task_loop(cfg: DictConfig, callbacks: Sequence, sigterm: _SigtermNoted) -> dict:
    import lightning as L
    from lightning.pytorch.utilities import rank_zero_only
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from continual.build import build_method, method_schema
    from continual.callbacks import FiniteLossGuard, FrozenBackboneGuard, TaskCheckpoint, TaskProgressBar
    from continual.callbacks.checkpointing import AtomicCheckpointIO
    from continual.callbacks.heartbeat import Heartbeat
    from continual.data.datamodule import TaskStreamDataModule
    from continual.errors import Interrupted
    from continual.features import load_stream
    from continual.metrics import report
    from continual.metrics.suite import MetricSuite
    from continual.rundir import state as run_state
    from continual.rundir.folder import RunDirectory
    from continual.run_logger import RunLogger

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    # data.val_fraction=0 serves no validation loader on purpose; Lightning warns about it
    warnings.filterwarnings("ignore", "Total length of `list` across ranks is zero")
    # the frozen backbone stays in eval mode on purpose (no dropout/batch-norm updates in it)
    warnings.filterwarnings("ignore", r"Found \d+ module\(s\) in eval mode at the start of training")
    # Lightning 2.6 on torch >= 2.10 warns about its own pytree use on every batch transfer
    warnings.filterwarnings("ignore", r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning)
    is_zero = rank_zero_only.rank == 0
    check_accelerator(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    # the frozen extractor's flat features, what every method sees; data and model errors surface before any file is written
    stream = load_stream(cfg, lambda s: check_stream_for(cfg, s))
    module = build_method(cfg, stream)
    run_dir = RunDirectory(cfg, writer=is_zero, schema=method_schema(cfg))
    state = run_dir.load_state()
    if state is not None and state["complete"]:
        if is_zero:
            print(f"run {run_dir.path} is already complete; nothing to resume")
        return run_dir.read_metrics()
    run_dir.write_config()
    dm = TaskStreamDataModule(
        stream, cfg.data.batch_size, cfg.data.eval_batch_size, cfg.seed, joint=module.joint,
        probe_per_task=cfg.metrics.probe_per_task, eval_split=cfg.data.eval_split,
    )
    wandb = RunLogger(cfg, run_dir.path, state)
    guard = FrozenBackboneGuard()
    suite = MetricSuite(cfg, stream, module)  # the same callbacks see every task's test pass
    stream_callbacks = {"guard": guard, "metrics": suite}
    fingerprint = run_state.fingerprint(cfg)
    T = len(stream)
    heartbeat = Heartbeat()  # with the progress bar off: a line a minute, timed from the run's start

    def trainer(task: int | None = None) -> L.Trainer:
        """The Trainer that fits `task` (its mid-task checkpoints, the frozen-module guard), or
        with None the one Trainer of every test pass (the metric callbacks). Callbacks ride only
        where their hooks fire: Lightning calls every callback at every training step."""
        kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
        kwargs.setdefault("default_root_dir", str(run_dir.path))
        cbs = [*callbacks]
        if kwargs.get("enable_progress_bar", True):
            cbs.append(TaskProgressBar(T))
        elif task is not None:
            cbs.append(heartbeat)
        if task is None:
            cbs += suite.callbacks
        else:
            cbs += [guard, TaskCheckpoint(run_dir.path, task, fingerprint, cfg.checkpoint_every_n_steps, cfg.checkpoint_every_s),
                    FiniteLossGuard(task)]
            kwargs["enable_checkpointing"] = True
            plugins = kwargs.get("plugins") or []
            kwargs["plugins"] = [*(plugins if isinstance(plugins, list) else [plugins]), AtomicCheckpointIO()]
        tr = L.Trainer(**kwargs, logger=wandb.lightning if wandb.lightning is not None else False, callbacks=cbs)
        dm.to(tr.strategy.root_device)
        return tr

    tester = trainer()

    def test(after: int) -> None:
        """The test pass over every task after training task `after` (-1: before any training)."""
        suite.begin(after)
        tester.test(module, datamodule=dm, verbose=False)
        _stop_if_terminated(tester, run_dir.path, max(after, 0), sigterm)

    started = time.perf_counter()
    elapsed = state["wall_time_s"] if state else 0.0

    def save_state(complete: bool) -> None:
        run_dir.save_state(
            complete=complete, module=module.state_dict(), callbacks={k: cb.state_dict() for k, cb in stream_callbacks.items()},
            wall_time_s=elapsed + time.perf_counter() - started, **wandb.state(),
        )

    if state is None:
        if cfg.resume and is_zero:  # a requeued job's first start, or a mistyped folder: say which
            print(f"resume={run_dir.path}: no saved state there yet; the run starts from task 1")
        test(-1)
        save_state(False)
    else:
        module.load_state_dict(state["module"])
        for key, cb in stream_callbacks.items():
            cb.load_state_dict(state["callbacks"][key])
        run_state.set_rng_state(state["rng"])  # as the uninterrupted run had it at this task boundary
        if is_zero:
            print(f"resuming {run_dir.path}: {suite.tasks_done} of {T} tasks already done")
    base = {
        "method": cfg.method,
        "scenario": cfg.scenario,
        "seed": cfg.seed,
        "eval_split": cfg.data.eval_split,
        "stream": stream.name,
        "tasks": stream.task_classes,
        "task_labels": [t.labels for t in stream.tasks],
        "provenance": report.provenance(),
    }
    metrics: dict = {}
    for t in range(suite.tasks_done, T):
        _stop_if_terminated(tester, run_dir.path, t, sigterm)  # noted since the last check
        dm.set_task(t)
        module.set_task(t)
        tr = trainer(task=t)
        device = tr.strategy.root_device
        data = dm.task_data().to(device)
        module.to(device).on_task_start(data)
        ckpt = run_dir.mid_task_checkpoint(t)
        if ckpt is not None and is_zero:
            print(f"resuming task {t + 1} mid-way from {ckpt}")
        wandb.task_start(tr.global_step)
        try:
            # statistics methods learn in their hooks; joint's tasks after the first have no data (Lightning would warn)
            if any(p.requires_grad for p in module.parameters()) and len(data.y):
                tr.fit(module, datamodule=dm, ckpt_path=ckpt, weights_only=True)
        except SIGTERMException:
            raise Interrupted(f"stopped by SIGTERM during task {t + 1}; {run_dir.interrupted(t)}") from None
        _stop_if_terminated(tr, run_dir.path, t, sigterm)
        module.to(device).on_task_end(data)
        test(t)
        metrics = {**base, "complete": t == T - 1, "tasks_done": t + 1, **suite.results(),
                   "wall_time_s": elapsed + time.perf_counter() - started}
        wandb.task_end(t, suite.scalars(), tr.global_step)
        if t < T - 1:
            save_state(False)
        run_dir.task_done(metrics)  # partial metrics.json; the task's mid-task checkpoint goes
    metrics["wall_time_s"] = elapsed + time.perf_counter() - started
    pngs = run_dir.finish(metrics, suite)
    save_state(True)
    if is_zero:
        wandb.finish(metrics, suite, pngs)
        print(report.format_summary(metrics))
        print(f"run directory: {run_dir.path}")
    return metrics
