"""`TaskStreamDataModule`: the stream as a LightningDataModule that serves one task at a time.

`set_task(t)` picks the task that `train_dataloader`/`val_dataloader` serve; `test_dataloader`
always serves every task (one loader each, in task order) so the accuracy matrix row and the
forward-transfer entries come from a single test pass: its `eval_split`, `test`, or `val` while
hyperparameters are chosen.

With `joint=True` (the `joint` upper bound) the first task's fit sees the union of every
task's training data, each sample with its own task id, and later fits see no data: the
model is unchanged after task 1, so every row of the accuracy matrix equals the first.

`task_data()` is what the task loop hands to a method's task hooks: the training data the
current task is fit on, with its validation split. Test batches flag the first `probe_per_task`
samples of each task (`batch["probe"]`).
"""

from __future__ import annotations

import math

import lightning as L
import torch

from continual.data.loader import TensorLoader
from continual.data.streams import Stream
from continual.data.task_data import TaskData


class TaskStreamDataModule(L.LightningDataModule):
    def __init__(
        self, stream: Stream, batch_size: int, eval_batch_size: int, seed: int = 0, joint: bool = False, probe_per_task: int = 0,
        eval_split: str = "test",
    ):
        super().__init__()
        self.stream, self.joint, self.probe_per_task, self.eval_split = stream, joint, probe_per_task, eval_split
        self.batch_size, self.eval_batch_size, self.seed = batch_size, eval_batch_size, seed
        self.task = 0

    def set_task(self, t: int) -> None:
        self.task = t

    def to(self, device: torch.device | str) -> "TaskStreamDataModule":
        """Move every split onto `device` once, so batches never cross the bus."""
        for task in self.stream.tasks:
            for name in ("train", "val", "test"):
                for prefix in ("x", "y"):
                    attr = f"{prefix}_{name}"
                    setattr(task, attr, getattr(task, attr).to(device))
        return self

    def transfer_batch_to_device(self, batch: dict, device: torch.device, dataloader_idx: int) -> dict:
        """Batches are already on the device after `to`: skip Lightning's walk over the batch's
        entries at every step."""
        if batch["x"].device == device:
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def _loader(self, t: int, split: str, train: bool) -> TensorLoader:
        x, y = self.stream.tasks[t].split(split)
        size = self.batch_size if train else self.eval_batch_size
        return TensorLoader(x, y, t, size, train=train, seed=self.seed, probe=0 if train else self.probe_per_task)

    def task_data(self) -> TaskData:
        """The training data the current task is fit on (joint: the union on task 0, nothing later)."""
        loader = self.train_dataloader()
        task = loader.task if loader.task is not None else torch.full_like(loader.y, self.task)
        val = self._val_loader()
        return TaskData(self.task, loader.x, loader.y, task, val.x, val.y)

    def _union(self, split: str, train: bool) -> TensorLoader:
        """Every task's `split` in one loader (joint training); empty after the first task."""
        tasks = self.stream.tasks if self.task == 0 else []
        parts = [t.split(split) for t in tasks]
        x = torch.cat([p[0] for p in parts]) if parts else self.stream.tasks[0].x_train[:0]
        y = torch.cat([p[1] for p in parts]) if parts else self.stream.tasks[0].y_train[:0]
        ids = torch.cat([torch.full((len(p[1]),), t.id, device=y.device) for t, p in zip(tasks, parts)]) if parts else y
        size = self.batch_size if train else self.eval_batch_size
        return TensorLoader(x, y, 0, size, train=train, seed=self.seed, task=ids)

    def train_batches(self, t: int) -> int:
        """Task t's training batches per epoch, without building its loader (a schedule over the
        whole stream counts every task's steps; joint: all on task 0)."""
        sizes = [len(task.split("train")[1]) for task in self.stream.tasks]
        n = (sum(sizes) if t == 0 else 0) if self.joint else sizes[t]
        return math.ceil(n / self.batch_size)

    def train_dataloader(self) -> TensorLoader:
        return self._union("train", True) if self.joint else self._loader(self.task, "train", train=True)

    def _val_loader(self) -> TensorLoader:
        return self._union("val", False) if self.joint else self._loader(self.task, "val", train=False)

    def val_dataloader(self) -> TensorLoader | list:
        loader = self._val_loader()
        return loader if len(loader.y) else []  # data.val_fraction=0: no validation

    def test_dataloader(self) -> list[TensorLoader]:
        """Every task's evaluation split: `test`, or `val` while hyperparameters are chosen."""
        return [self._loader(t, self.eval_split, train=False) for t in range(len(self.stream))]
