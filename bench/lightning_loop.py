"""The raw loop's work with each task's epochs driven by a bare Lightning `Trainer`: no
callbacks, no logger, no checkpoints, a fresh Adam per task (as `continual`). Between the raw
loop and `continual` fine-tuning it shows how much of the difference is Lightning's own loop.
"""

from __future__ import annotations

import logging
import math

import lightning as L
import torch
from torch import nn

from bench.raw_loop import _batches, test_row
from continual.data.streams import Stream
from continual.models.mlp import MLP
from continual.scenarios import LabelSpace


class _Epochs:
    """One task's split as (x, y) batches, in the raw loop's seeded order when training."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, size: int, seed: int, task: int, train: bool):
        self.x, self.y, self.size, self.seed, self.task, self.train, self.epoch = x, y, size, seed, task, train, 0

    def __len__(self) -> int:
        return math.ceil(len(self.y) / self.size)

    def __iter__(self):
        n = len(self.y)
        idx = (_batches(n, self.size, self.seed, self.task, self.epoch, self.y.device) if self.train
               else torch.arange(n, device=self.y.device).split(self.size))
        self.epoch += 1
        return ((self.x[i], self.y[i]) for i in idx)


class _Task(L.LightningModule):
    def __init__(self, net: MLP, labels: LabelSpace, lr: float):
        super().__init__()
        self.net, self.labels, self.lr, self.task = net, labels, lr, 0

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).masked_fill(~self.labels.own[self.task], float("-inf"))

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(self._logits(x), self.labels.targets(y))

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        (self._logits(x).argmax(1) == self.labels.targets(y)).sum()

    def configure_optimizers(self):
        return torch.optim.Adam(self.net.parameters(), lr=self.lr)


def run_lightning(stream: Stream, hidden: list[int], lr: float, batch_size: int, eval_batch_size: int, seed: int = 0,
                  epochs: int = 1) -> list[list[float]]:
    """As `bench.raw_loop.run_raw`, each task's training and validation by `Trainer.fit`."""
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # as continual's run does
    torch.manual_seed(seed)
    device = stream.tasks[0].x_train.device
    labels = LabelSpace("task", stream.task_classes, stream.n_classes)
    module = _Task(MLP(stream.n_features, hidden, labels.n_out), labels, lr)

    def test_all() -> list[float]:
        module.to(device).eval()  # Lightning moves the module back to the CPU when fit ends
        return test_row(module.net, labels, stream, eval_batch_size)

    test_all()
    rows = []
    for t in stream.tasks:
        module.task = t.id
        module.train()
        trainer = L.Trainer(max_epochs=epochs, accelerator="auto", devices=1, logger=False, enable_checkpointing=False,
                            enable_model_summary=False, enable_progress_bar=False, num_sanity_val_steps=0)
        trainer.fit(module, _Epochs(t.x_train, t.y_train, batch_size, seed, t.id, True),
                    _Epochs(t.x_val, t.y_val, eval_batch_size, seed, t.id, False))
        rows.append(test_all())
    return rows
