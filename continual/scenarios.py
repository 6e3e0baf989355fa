"""Scenarios: how a global label becomes a target and which outputs a prediction may use.

* task-incremental: one output per class of the stream; a sample may only be assigned one of
  its own task's classes (the task id is given, train and test).
* class-incremental: one output per class; a sample may be assigned any class of the tasks
  learned so far, and nothing else: a task not learned yet is evaluated without its own
  classes (its task id would be a hint class-IL does not give), so FWT is 0 for any method
  that cannot predict unseen classes.
* domain-incremental: one output per within-task class (`max classes per task`), shared by
  every task; the target is the class's index inside its task.
"""

from __future__ import annotations

import torch
from torch import nn


def max_classes_per_task(task_classes: list[list[int]]) -> int:
    """The largest task's class count: the domain-IL output width, and the padded within-task
    width `n_v` of methods whose tasks share their outputs (`continual.helpers.within_task`)."""
    return max(len(c) for c in task_classes)


class LabelSpace(nn.Module):
    def __init__(self, scenario: str, task_classes: list[list[int]], n_classes: int):
        super().__init__()
        self.scenario = scenario
        T = len(task_classes)
        self.n_out = max_classes_per_task(task_classes) if scenario == "domain" else n_classes
        target = torch.full((n_classes,), -1, dtype=torch.long)
        own = torch.zeros(T, self.n_out, dtype=torch.bool)
        for t, classes in enumerate(task_classes):
            for i, c in enumerate(classes):
                target[c] = i if scenario == "domain" else c
                own[t, target[c]] = True
        self.register_buffer("target_of", target, persistent=False)
        self.register_buffer("own", own, persistent=False)  # [T, n_out]: task t's outputs
        self.register_buffer("upto", own.cumsum(0) > 0, persistent=False)  # tasks 0..t

    def targets(self, y: torch.Tensor) -> torch.Tensor:
        return self.target_of[y]

    def allowed(self, task: torch.Tensor, current: int) -> torch.Tensor:
        """[B, n_out] bool: the outputs each sample may be assigned while task `current` is learned."""
        if self.scenario == "task":
            return self.own[task]
        if self.scenario == "class":
            return self.upto[current].expand(len(task), -1)
        return torch.ones(len(task), self.n_out, dtype=torch.bool, device=task.device)
