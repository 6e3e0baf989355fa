"""Task-given accuracy of a class-IL run: each test sample predicted among its own task's outputs.

The class-IL-trained model, told each sample's task at test time: what Mammoth reports as the
task-IL number of a class-IL run (`mask_classes` in its utils/evaluate.py; Buzzega et al. 2020's
task-IL column). `R_tg[i][j]` is task j's accuracy after task i, every task evaluated after every
task as in the accuracy matrix; `acc` is the mean of its last row. Class-IL only: in task-IL it is
`acc` itself, and domain-IL tasks share all their outputs.
"""

from __future__ import annotations

import torch

from continual.metrics.base import Column, Metric, Switch, pct
from continual.metrics.registry import register
from continual.metrics.stream import average_accuracy


@register
class TaskGiven(Metric):
    key = "task_given"
    reads = "task_given"
    switch = Switch(True, "class-IL: accuracy with each test sample's own task's outputs (Mammoth's task-IL of a class-IL run)")
    columns = (Column("task_given_acc", "task-given ACC", lambda m: (m.get("task_given") or {}).get("acc"), "percent"),)

    @classmethod
    def active(cls, module) -> bool:
        return super().active(module) and module.labels.scenario == "class"

    @classmethod
    def build(cls, cfg, stream, module) -> "TaskGiven":
        return cls(len(stream))

    def __init__(self, n_tasks: int):
        super().__init__()
        self.n_tasks = n_tasks

    def zeros(self, device) -> torch.Tensor:
        return torch.zeros(2, self.n_tasks, dtype=torch.long, device=device)  # [correct, total] per task

    def count(self, counts, outputs, batch, task) -> None:
        hit = (outputs["task_given"] == outputs["target"]).long()
        counts[0].index_add_(0, batch["task"], hit)
        counts[1].index_add_(0, batch["task"], torch.ones_like(hit))

    def results(self) -> dict:
        matrix = [[c / n for c, n in zip(correct, total)] for correct, total in self.rows]
        return {
            "acc": average_accuracy(matrix) if len(matrix) == self.n_tasks else None,
            "accuracy_matrix": matrix,
            "counts": {"correct": [r[0] for r in self.rows], "total": [r[1] for r in self.rows]},
        }

    def scalars(self) -> dict:
        if not self.rows:
            return {}
        seen = len(self.rows)  # the mean over the tasks learned so far, as Mammoth logs it
        correct, total = self.rows[-1]
        return {"task_given/acc": sum(c / n for c, n in zip(correct[:seen], total[:seen])) / seen}

    @classmethod
    def summary(cls, metrics: dict) -> list[str]:
        entry = metrics.get(cls.key)
        return [f"task-given ACC (each sample among its own task's outputs) {pct(entry['acc'])}"] if entry else []
