"""Joint training: the fine-tuning model and loss fed every task's data at once (the upper bound).

The datamodule serves the union of all tasks on the first task and nothing afterwards (see
`TaskStreamDataModule`), so the T x T accuracy matrix has T identical rows; `trainer.max_steps`
is the whole budget.
"""

from __future__ import annotations

import torch

from continual.baselines.finetune import FineTune
from continual.methods import register


@register("joint")
class Joint(FineTune):
    joint = True

    def allowed(self, batch: dict) -> torch.Tensor:
        """Every task is learned at once: class-IL outputs span the whole stream from the start."""
        return self.labels.allowed(batch["task"], self.n_tasks - 1)
