"""`TaskData`: one task's training data as the task loop hands it to a method's task hooks."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from continual.data.loader import TensorLoader


@dataclass
class TaskData:
    id: int  # the task the hooks are called for
    x: torch.Tensor  # [N, features] its training inputs (joint: every task's, on the first task)
    y: torch.Tensor  # [N] global class ids
    task: torch.Tensor  # [N] each sample's task id
    # its validation split (`data.val_fraction`; empty without one): for a method that chooses a
    # setting of its own on it (`ranpac.ridge`), never on test
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device) -> "TaskData":
        val = [v.to(device) if v is not None else None for v in (self.x_val, self.y_val)]
        return TaskData(self.id, self.x.to(device), self.y.to(device), self.task.to(device), *val)

    def batches(self, batch_size: int) -> TensorLoader:
        """In order, in batches of `batch_size`; under DDP each rank gets its strided share."""
        return TensorLoader(self.x, self.y, self.id, batch_size, train=False, task=self.task)
