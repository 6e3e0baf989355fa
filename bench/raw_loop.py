"""The reference: a hand-written PyTorch loop doing exactly the work `continual fit` does for
fine-tuning, so the ratio between the two is Lightning's and the platform's overhead alone.

Same work as `continual.experiment.run` with `method=finetune`: the same stream tensors
(train split after `data.val_fraction` is held out), the same seeded batch order, the task-IL
output mask, Adam, one test pass over every task before training (for forward transfer),
and per task `epochs` training epochs each followed by a validation pass over its val split,
then one test pass over every task, evaluated in `eval_batch_size` batches.
"""

from __future__ import annotations

import torch
from torch import nn

from continual.data.streams import Stream
from continual.models.mlp import MLP
from continual.scenarios import LabelSpace


def _batches(n: int, size: int, seed: int, task: int, epoch: int, device) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed * 1_000_003 + task * 1009 + epoch)  # TensorLoader's order
    return list(torch.randperm(n, generator=gen).to(device).split(size))


@torch.no_grad()
def _accuracy(net: nn.Module, labels: LabelSpace, x, y, task: int, size: int) -> tuple[int, int]:
    own = labels.own[task]
    correct = sum(
        int((net(xb).masked_fill(~own, float("-inf")).argmax(1) == labels.targets(yb)).sum())
        for xb, yb in zip(x.split(size), y.split(size))
    )
    return correct, len(y)


def test_row(net: nn.Module, labels: LabelSpace, stream: Stream, size: int) -> list[float]:
    """One test pass: every task's test accuracy (task-IL), a row of the accuracy matrix."""
    return [c / n for c, n in (_accuracy(net, labels, t.x_test, t.y_test, t.id, size) for t in stream.tasks)]


def run_raw(stream: Stream, hidden: list[int], lr: float, batch_size: int, eval_batch_size: int, seed: int = 0,
            epochs: int = 1) -> list[list[float]]:
    """Fine-tune an MLP over the stream (task-IL) on the device its tensors are on; returns the
    accuracy matrix."""
    torch.manual_seed(seed)
    device = stream.tasks[0].x_train.device
    labels = LabelSpace("task", stream.task_classes, stream.n_classes).to(device)
    net = MLP(stream.n_features, hidden, labels.n_out).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)

    def test_all() -> list[float]:
        net.eval()
        return test_row(net, labels, stream, eval_batch_size)

    test_all()  # the forward-transfer reference pass
    rows = []
    for t in stream.tasks:
        own, targets = labels.own[t.id], labels.targets(t.y_train)
        for epoch in range(epochs):
            net.train()
            for idx in _batches(len(t.y_train), batch_size, seed, t.id, epoch, device):
                logits = net(t.x_train[idx]).masked_fill(~own, float("-inf"))
                loss = nn.functional.cross_entropy(logits, targets[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            net.eval()
            _accuracy(net, labels, t.x_val, t.y_val, t.id, eval_batch_size)
        rows.append(test_all())
    return rows
