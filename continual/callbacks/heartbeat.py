"""With the progress bar off, a line to stderr at least every minute of training ("task 2/5, epoch
3, 4m10s elapsed"): a long run in a log or a compare grid shows that it is alive and where it is.
The grid runner relays the last such line of a subprocess cell's log (`progress_in`)."""

from __future__ import annotations

import re
import sys
import time

import lightning as L

EVERY_S = 60.0
_LINE = re.compile(r"[Tt]ask (\d+)/(\d+),? epoch (\d+)")  # this line, or the progress bar's description


def elapsed(seconds: float) -> str:
    """125.0 -> '2m05s'."""
    minutes, s = divmod(int(seconds), 60)
    return f"{minutes}m{s:02d}s" if minutes else f"{s}s"


def progress_line(task: int, n_tasks: int, epoch: int, seconds: float) -> str:
    """`task` counts from 0, as the module does; the line counts from 1, as the progress bar does."""
    return f"task {task + 1}/{n_tasks}, epoch {epoch}, {elapsed(seconds)} elapsed"


def progress_in(text: str) -> tuple[int, int, int] | None:
    """The last (task, of tasks, epoch) a run's output shows, from this callback's lines or the bar's."""
    found = _LINE.findall(text)
    return tuple(map(int, found[-1])) if found else None


class Heartbeat(L.Callback):
    """Shared by every task's Trainer of a run, so the time counts from the run's start."""

    def __init__(self, every_s: float | None = None, clock=time.monotonic, stream=None):
        self.every_s, self.clock, self.stream = EVERY_S if every_s is None else every_s, clock, stream
        self.start = self.last = clock()

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._beat(trainer, module)

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args) -> None:
        self._beat(trainer, module)

    def _beat(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        now = self.clock()
        if now - self.last < self.every_s or trainer.global_rank != 0:
            return
        self.last = now
        line = progress_line(module.current_task, module.n_tasks, trainer.current_epoch, now - self.start)
        print(line, file=self.stream or sys.stderr, flush=True)
