"""`StreamCallback`: a Lightning callback that measures the per-task test passes of a stream.

The driver hands the same callback objects to every task's Trainer and calls `begin(t)` before
each test pass (`t = -1`: the pass before any training, `t >= 0`: after training task t), so
state spans the stream. Each reads what the method's test step returned (`outputs`, see
`continual.metrics.protocol`), never calls the method. Counts are integer tensors summed over
processes (`sum_ranks`), never averages of averages; the evaluation loader shards without
padding, so no sample counts twice. `state_dict`/`load_state_dict` (Lightning's callback
state) hold the stream so far, for the resume file and Lightning's checkpoints.
"""

from __future__ import annotations

import torch
from lightning.pytorch import Callback


class StreamCallback(Callback):
    key: str  # the metrics.json entry
    reads: str | None = None  # the optional `evaluate` output it needs (continual.metrics.protocol)

    def __init__(self) -> None:
        self.after = -1  # the task the current test pass follows

    def begin(self, after: int) -> None:
        self.after = after

    def active(self, module) -> bool:
        return self.reads is None or self.reads in module.eval_outputs

    def store(self, rows: list, row) -> None:
        """Make `row` the entry of the pass after task `after`: a repeated pass (resume) replaces its row."""
        del rows[self.after:]
        rows.append(row)

    @staticmethod
    def sum_ranks(trainer, t: torch.Tensor) -> torch.Tensor:
        if trainer.world_size > 1:
            torch.distributed.all_reduce(t)
        return t

    # stream state (tensors and plain lists only: loaded weights_only)
    def state_dict(self) -> dict:
        raise NotImplementedError

    def load_state_dict(self, state: dict) -> None:
        raise NotImplementedError

    def results(self):
        """The metrics.json entry (None when the method does not expose what this measures)."""
        raise NotImplementedError

    def scalars(self) -> dict:
        """Scalars of the latest pass, logged to W&B at each task boundary."""
        return {}
