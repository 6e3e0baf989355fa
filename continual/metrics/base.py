"""`Metric`: a Lightning callback that measures the per-task test passes of a stream, and
everything the platform needs to know about it (`continual.metrics.registry` reads it).

The driver hands the same callback objects to every task's Trainer and calls `begin(t)` before
each test pass (`t = -1`: the pass before any training, `t >= 0`: after training task t), so
state spans the stream. Each reads what the method's test step returned (`outputs`, see
`continual.metrics.protocol`), never calls the method.

Most metrics count: `zeros` gives a pass's integer counts, `count` adds a batch to them, and at
the end of the pass the counts are summed over processes (`sum_ranks`, never averages of
averages; the evaluation loader shards without padding, so no sample counts twice), turned into
a `row` and kept (`keep`: one row per pass, a repeated pass after a resume replaces its row).
`state` names the attributes that hold the stream so far: `state_dict`/`load_state_dict`
(Lightning's callback state) save and restore them for the resume file and checkpoints.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, ClassVar, NamedTuple

import torch
from lightning.pytorch import Callback


class Switch(NamedTuple):
    """The metric's `metrics.<key>` config switch."""

    default: bool
    help: str  # shown by `continual config keys`


class Column(NamedTuple):
    """A column of the `continual compare` table: mean and std over seeds of `read(metrics.json)`."""

    key: str  # the table's `<key>_mean`, `<key>_std`
    title: str  # its heading in compare.md
    read: Callable[[dict], Any]  # one run's value from its metrics.json (None: the run has none)
    format: str  # "percent", "count" or "seconds"


def pct(v) -> str:
    """A fraction as a percentage for the printed summary (n/a for None)."""
    return "   n/a" if v is None else f"{100 * v:6.2f}"


class Metric(Callback):
    key: ClassVar[str]  # its metrics.json entry, its state key, its `final/<key>/...` scalars
    reads: ClassVar[str | None] = None  # the optional `evaluate` output it needs (continual.metrics.protocol)
    switch: ClassVar[Switch | None] = None  # None: always measured
    # more `metrics.*` keys it reads: (name, type, dataclasses.field) as `dataclasses.make_dataclass` takes them
    options: ClassVar[tuple] = ()
    columns: ClassVar[tuple[Column, ...]] = ()  # what `continual compare` tabulates of it
    state: ClassVar[tuple[str, ...]] = ("rows",)  # the attributes holding the stream; the last gets a row per pass
    initial_pass: ClassVar[bool] = False  # whether it measures the pass before any training too

    @classmethod
    def build(cls, cfg, stream, module) -> "Metric":
        """The callback of a run (its config, its `Stream`, the method)."""
        return cls()

    def __init__(self) -> None:
        self.after = -1  # the task the current test pass follows
        for name in self.state:
            setattr(self, name, [])

    def begin(self, after: int) -> None:
        self.after = after

    @classmethod
    def active(cls, module) -> bool:
        """Whether `module`'s `evaluate` returns what this metric reads."""
        return cls.reads is None or cls.reads in module.eval_outputs

    # -- one test pass: count, sum over processes, keep a row ---------------------------------
    def zeros(self, device) -> torch.Tensor | None:
        """The integer counts of a pass before its first batch (None: the metric counts nothing per batch)."""
        return None

    def count(self, counts: torch.Tensor, outputs: dict, batch: dict, task: int) -> None:
        """Add a batch of task `task`'s test set to `counts`, in place."""

    def row(self, counts: list | None, module):
        """What the pass keeps: by default its counts, summed over processes, as nested lists."""
        return counts

    def keep(self, row) -> None:
        """Keep the row of this pass in the last `state` attribute."""
        self.store(getattr(self, self.state[-1]), row)

    def store(self, rows: list, row) -> None:
        """Make `row` the entry of the pass after task `after`: a repeated pass (resume) replaces its row."""
        del rows[self.after:]
        rows.append(row)

    def measuring(self) -> bool:
        return self.after >= 0 or self.initial_pass

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._counts = self.zeros(pl_module.device)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._counts is not None and self.measuring():
            self.count(self._counts, outputs, batch, dataloader_idx)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        if self.measuring():
            counts = self.sum_ranks(trainer, self._counts).tolist() if self._counts is not None else None
            self.keep(self.row(counts, pl_module))

    @staticmethod
    def sum_ranks(trainer, t: torch.Tensor) -> torch.Tensor:
        if trainer.world_size > 1:
            torch.distributed.all_reduce(t)
        return t

    # stream state (tensors and plain lists only: loaded weights_only)
    def state_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.state}

    def load_state_dict(self, state: dict) -> None:
        for name in self.state:
            setattr(self, name, copy.copy(state[name]))

    # -- what a run reports ----------------------------------------------------------------------
    def results(self):
        """Its metrics.json entry."""
        raise NotImplementedError

    @classmethod
    def entries(cls, results) -> dict:
        """Its top-level metrics.json keys, from `results()` (None: off, or the method does not expose what it reads)."""
        return {cls.key: results}

    def scalars(self) -> dict:
        """Scalars of the latest pass, logged at each task boundary."""
        return {}

    @classmethod
    def final_scalars(cls, metrics: dict) -> dict:
        """Numbers of the finished stream for the loggers: `final/<key>/<name>` of its entry's numbers."""
        entry = metrics.get(cls.key) or {}
        return {f"final/{cls.key}/{k}": v for k, v in entry.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}

    @classmethod
    def summary(cls, metrics: dict) -> list[str]:
        """Its lines of the summary printed at the end of a run."""
        return []

    def files(self, metrics: dict, title: str) -> dict:
        """File name -> content (CSV text, or a matplotlib figure for a .png) written into the run directory."""
        return {}

    def log_wandb(self, logger, metrics: dict) -> None:
        """Tables and histograms of the finished stream (W&B only)."""
