"""Task inference: how often the method's inferred task is the sample's true task.

After task i, the confusion matrix `C[true][inferred]` over the test sets of the tasks learned
so far (0..i): an unlearned task cannot be inferred. Exact integer counts, summed over ranks.
"""

from __future__ import annotations

import torch

from continual.metrics.base import Metric, Switch, pct
from continual.metrics.registry import register


def accuracy(confusion: list[list[int]]) -> float | None:
    total = sum(map(sum, confusion))
    return sum(confusion[j][j] for j in range(len(confusion))) / total if total else None


@register
class TaskInference(Metric):
    key = "task_inference"
    reads = "task"
    switch = Switch(True, "accuracy and confusion matrix of the inferred task")
    state = ("confusions",)

    @classmethod
    def build(cls, cfg, stream, module) -> "TaskInference":
        return cls(len(stream))

    def __init__(self, n_tasks: int):
        super().__init__()
        self.n_tasks = n_tasks
        self.confusions: list[list[list[int]]] = []  # after task i: [true][inferred] over tasks 0..i

    def zeros(self, device) -> torch.Tensor:
        return torch.zeros(self.n_tasks, self.n_tasks, dtype=torch.long, device=device)

    def count(self, counts, outputs, batch, task) -> None:
        if task <= self.after:  # an unlearned task cannot be inferred
            flat = batch["task"] * self.n_tasks + outputs["task"]
            counts.view(-1).index_add_(0, flat, torch.ones_like(flat))

    def results(self) -> dict:
        last = self.confusions[-1] if self.confusions else []
        return {
            "accuracy": accuracy(last),
            "per_task": [row[j] / sum(row) if sum(row) else None for j, row in enumerate(last[: len(self.confusions)])],
            "accuracy_curve": [accuracy(c) for c in self.confusions],
            "confusion_matrix": last,
        }

    def scalars(self) -> dict:
        a = accuracy(self.confusions[-1]) if self.confusions else None
        return {} if a is None else {"task_inference/accuracy": a}

    @classmethod
    def summary(cls, metrics: dict) -> list[str]:
        return [f"task inference {pct(metrics[cls.key]['accuracy'])}"] if metrics.get(cls.key) else []

    def log_wandb(self, logger, metrics: dict) -> None:
        C = metrics[self.key]["confusion_matrix"]
        logger.log_table(key="task_confusion", columns=["true_task"] + [f"inferred_T{j + 1}" for j in range(len(C))],
                         data=[[i + 1, *row] for i, row in enumerate(C)])
