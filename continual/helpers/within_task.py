"""`WithinTaskOutputs`: for methods whose every task uses the same `n_v` outputs (the router, SupSup).

Output j of task t is task t's j-th class; outputs past a task's classes are padding. One
object holds the two tables this needs and every use of them (targets, padding, labels), so no
method rebuilds them. Its buffers are not persistent: they follow from the stream, not from
training, and leave `state_dict` unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from continual.errors import ConfigError
from continual.scenarios import max_classes_per_task


class WithinTaskOutputs(nn.Module):
    def __init__(self, task_classes: list[list[int]], n_classes: int, scenario: str, n_v: int | None = None,
                 setting: str = "n_v"):
        """`n_v`: the padded width, None for the largest task's class count; one smaller than a
        task is a ConfigError naming the config `setting` it came from."""
        super().__init__()
        largest = max_classes_per_task(task_classes)
        for t, classes in enumerate(task_classes):
            if n_v is not None and len(classes) > n_v:
                raise ConfigError(
                    f"{setting}={n_v} is smaller than task {t + 1}'s {len(classes)} classes {classes}; "
                    f"set {setting}>={largest} (or leave it unset for the largest task's class count)"
                )
        self.n_v = largest if n_v is None else n_v
        self.domain = scenario == "domain"  # the target space is then the within-task index itself
        table = torch.full((len(task_classes), self.n_v), -1, dtype=torch.long)
        index = torch.full((n_classes,), -1, dtype=torch.long)
        for t, classes in enumerate(task_classes):
            table[t, : len(classes)] = torch.tensor(classes)
            index[torch.tensor(classes)] = torch.arange(len(classes))
        self.register_buffer("class_table", table, persistent=False)  # [T, n_v] global ids, -1 = padding
        self.register_buffer("index", index, persistent=False)  # [n_classes] each class's output in its task

    def targets(self, y: torch.Tensor) -> torch.Tensor:
        """Global class ids -> their outputs within their task (the training target)."""
        return self.index[y]

    def valid(self, task: torch.Tensor | int) -> torch.Tensor:
        """[..., n_v] bool: the outputs of `task` (a task id or one per sample) that are a class."""
        return self.class_table[task] >= 0

    def mask_padding(self, logits: torch.Tensor, task: torch.Tensor | int) -> torch.Tensor:
        """The first `n_v` logits, padded outputs -inf (they can never be predicted)."""
        return logits[:, : self.n_v].masked_fill(~self.valid(task), float("-inf"))

    def label(self, logits: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """The predicted label in the scenario's target space: the best output as a global class,
        or in domain-IL the output index itself."""
        j = logits.argmax(1)
        return j if self.domain else self.class_table[task, j]
