"""`TaskStreamDataModule`: the stream as a LightningDataModule that serves one task at a time.

`set_task(t)` picks the task that `train_dataloader`/`val_dataloader` serve; `test_dataloader`
always serves every task (one loader each, in task order) so the accuracy matrix row and the
forward-transfer entries come from a single test pass.
"""

from __future__ import annotations

import lightning as L
import torch

from continual.data.loader import TensorLoader
from continual.data.streams import Stream


class TaskStreamDataModule(L.LightningDataModule):
    def __init__(self, stream: Stream, batch_size: int, eval_batch_size: int, seed: int = 0):
        super().__init__()
        self.stream = stream
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

    def _loader(self, t: int, split: str, train: bool) -> TensorLoader:
        x, y = self.stream.tasks[t].split(split)
        size = self.batch_size if train else self.eval_batch_size
        return TensorLoader(x, y, t, size, train=train, seed=self.seed)

    def train_dataloader(self) -> TensorLoader:
        return self._loader(self.task, "train", train=True)

    def val_dataloader(self) -> TensorLoader | list:
        loader = self._loader(self.task, "val", train=False)
        return loader if len(loader.y) else []  # data.val_fraction=0: no validation

    def test_dataloader(self) -> list[TensorLoader]:
        return [self._loader(t, "test", train=False) for t in range(len(self.stream))]
