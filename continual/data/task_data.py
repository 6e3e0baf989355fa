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

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device) -> "TaskData":
        return TaskData(self.id, self.x.to(device), self.y.to(device), self.task.to(device))

    def batches(self, batch_size: int) -> TensorLoader:
        """In order, in batches of `batch_size`; under DDP each rank gets its strided share."""
        return TensorLoader(self.x, self.y, self.id, batch_size, train=False, task=self.task)
