"""Learning-rate schedules (`optim.scheduler`), stepped after every optimizer step.

A schedule is the learning rate at step s (counted from 0) of N optimizer steps, lr = `optim.lr`,
lo = `optim.min_lr`, W the warm-up steps (`optim.warmup_steps`, or `optim.warmup_fraction` x N
rounded down):

* `cosine`: lo + (lr - lo) (1 + cos(pi s / N)) / 2 (torch's `CosineAnnealingLR(T_max=N)`);
* `step`: lr x gamma^floor(s / step_size) (torch's `StepLR`);
* `linear_warmup_cosine`: lr (s + 1) / W for s < W (the first step already learns), then the
  cosine above over the remaining N - W steps;
* `onecycle`: the learning rates of torch's `OneCycleLR` (cosine phases, `pct_start` = W / N): from
  lr / div_factor up to lr at step W - 1, then down to lo at step N - 1. Momentum is not cycled.

`optim.scheduler_scope=task` restarts the schedule for each task (N = that task's optimizer steps,
Lightning's `estimated_stepping_batches`); `stream` runs it once over the whole stream: N = the sum
over tasks of each task's steps, and s goes on where the previous task stopped (the position is
saved with the module, as `optim.carry_state` carries the optimizer's moments). A task's steps
follow Lightning's count: batches per epoch (after `limit_train_batches`) over
`accumulate_grad_batches`, rounded up, times `max_epochs`, at most `max_steps`; a task stopped
early (`max_time`, a callback) leaves the rest of its schedule untaken.
"""

from __future__ import annotations

import math

import torch
from omegaconf import DictConfig

from continual.errors import ConfigError

WARMUP = ("onecycle", "linear_warmup_cosine")  # the schedules with a warm-up
# the optional keys each schedule reads: one set for another schedule is refused, not ignored
OWN_KEYS = {"warmup_steps": WARMUP, "warmup_fraction": WARMUP, "step_size": ("step",)}


def check(optim: DictConfig) -> None:
    """The `optim.*` schedule keys that do not go together: one line each, before anything runs."""
    name = optim.scheduler
    for key, schedules in OWN_KEYS.items():
        if optim[key] is not None and name not in schedules:
            raise ConfigError(f"optim.{key} is read by optim.scheduler={'|'.join(schedules)} only, not optim.scheduler={name}; drop it")
    if name == "step" and optim.step_size is None:
        raise ConfigError("optim.scheduler=step needs optim.step_size (optimizer steps between decays), e.g. optim.step_size=100")
    if name in WARMUP and (optim.warmup_steps is None) == (optim.warmup_fraction is None):
        raise ConfigError(f"optim.scheduler={name} needs one of optim.warmup_fraction (e.g. 0.3) or optim.warmup_steps, not both or neither")
    if name in ("cosine", *WARMUP) and optim.min_lr >= optim.lr:
        raise ConfigError(f"optim.min_lr={optim.min_lr} must be below optim.lr={optim.lr} for optim.scheduler={name}")


def warmup(optim: DictConfig, total: int) -> int:
    return optim.warmup_steps if optim.warmup_steps is not None else int(optim.warmup_fraction * total)


def _cos(start: float, end: float, progress: float) -> float:
    return end + (start - end) * (1 + math.cos(math.pi * progress)) / 2


def lr_at(optim: DictConfig, step: int, total: int) -> float:
    """The learning rate of step `step` (from 0) of `total` under `optim.scheduler`."""
    lr, lo, name = optim.lr, optim.min_lr, optim.scheduler
    if name == "step":
        return lr * optim.gamma ** (step // optim.step_size)
    if name == "cosine":
        return _cos(lr, lo, step / total)
    w = warmup(optim, total)
    if name == "linear_warmup_cosine":
        return lr * (step + 1) / w if step < w else _cos(lr, lo, (step - w) / (total - w))
    if name == "onecycle":  # torch's phase ends: W - 1 and N - 1
        if step <= w - 1:
            return _cos(lr / optim.div_factor, lr, step / (w - 1) if w > 1 else 1.0)
        return _cos(lr, lo, (step - w + 1) / (total - w))
    return lr


def task_steps(trainer, batches: int) -> int | float:
    """The optimizer steps of a fit over `batches` batches per epoch under `trainer`'s settings:
    Lightning's `estimated_stepping_batches`, for any task's loader (`check_count`)."""
    limit = trainer.limit_train_batches
    n = min(batches, limit) if isinstance(limit, int) else int(batches * limit)
    if trainer.max_epochs == -1:
        return math.inf if trainer.max_steps == -1 else trainer.max_steps
    steps = math.ceil(n / trainer.accumulate_grad_batches) * max(trainer.max_epochs, 1)
    return min(steps, trainer.max_steps) if trainer.max_steps != -1 else steps


def total_steps(optim: DictConfig, trainer, task: int, n_tasks: int) -> int | float:
    """N: the task's optimizer steps (scope task), or the sum over every task's (scope stream),
    counted from the data module's batches per epoch (`task_steps`).

    Not by asking Lightning's `estimated_stepping_batches` here: in `configure_optimizers` it sets
    up the training loader before a mid-task checkpoint is restored, and Lightning (2.6) then never
    hands the loader its saved position, so a resumed task would replay its epoch from the start.
    `check_count` compares the two once Lightning has set the loader up."""
    dm = trainer.datamodule
    if dm is None or not hasattr(dm, "train_batches"):
        raise ConfigError("optim.scheduler counts the steps of the task stream's data module; fit a ContinualModule through "
                          "`continual fit` or `continual.run`, or use optim.scheduler=none")
    steps = [task_steps(trainer, dm.train_batches(t)) for t in range(n_tasks)]
    return steps[task] if optim.scheduler_scope == "task" else sum(steps)


def check_count(trainer, task: int) -> None:
    """Refuse a run whose count of the task's steps is not Lightning's (a trainer setting this
    count does not know): its schedule would end early or be cut off."""
    own, counted = trainer.estimated_stepping_batches, task_steps(trainer, trainer.datamodule.train_batches(task))
    if own != counted:
        raise ConfigError(f"optim.scheduler cannot count the optimizer steps of task {task + 1} under these trainer settings "
                          f"({counted}; Lightning estimates {own}); use optim.scheduler=none")


def scheduler(optimizer: torch.optim.Optimizer, optim: DictConfig, total: int | float, start: int):
    """The LambdaLR that sets `optimizer`'s learning rate to `lr_at(start + s, total)` at its step s."""
    name, scope = optim.scheduler, optim.scheduler_scope
    if not math.isfinite(total):
        raise ConfigError(f"optim.scheduler={name} needs each task's number of optimizer steps, which Lightning cannot "
                          "tell here (trainer.max_epochs=-1 without trainer.max_steps); set trainer.max_epochs or trainer.max_steps")
    if name in WARMUP:
        w, what = warmup(optim, total), "the task's" if scope == "task" else "the stream's"
        if w >= total:
            raise ConfigError(f"optim.scheduler={name}: a warm-up of {w} steps is not shorter than {what} {total} optimizer steps; "
                              "lower optim.warmup_steps or optim.warmup_fraction")
        if w == 0:
            raise ConfigError(f"optim.scheduler={name}: optim.warmup_fraction={optim.warmup_fraction} of {what} {total} optimizer "
                              "steps is no step of warm-up; raise it")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_at(optim, start + s, total) / optim.lr)
