"""Task inference: how often the method's inferred task is the sample's true task.

After task i, the confusion matrix `C[true][inferred]` over the test sets of the tasks learned
so far (0..i): an unlearned task cannot be inferred. Exact integer counts, summed over ranks.
"""

from __future__ import annotations

import torch

from continual.metrics.base import StreamCallback


def accuracy(confusion: list[list[int]]) -> float | None:
    total = sum(map(sum, confusion))
    return sum(confusion[j][j] for j in range(len(confusion))) / total if total else None


class TaskInference(StreamCallback):
    key = "task_inference"
    reads = "task"

    def __init__(self, n_tasks: int):
        super().__init__()
        self.n_tasks = n_tasks
        self.confusions: list[list[list[int]]] = []  # after task i: [true][inferred] over tasks 0..i

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._confusion = torch.zeros(self.n_tasks, self.n_tasks, dtype=torch.long, device=pl_module.device)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if 0 <= self.after and dataloader_idx <= self.after:
            flat = batch["task"] * self.n_tasks + outputs["task"]
            self._confusion.view(-1).index_add_(0, flat, torch.ones_like(flat))

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        if self.after >= 0:
            self.store(self.confusions, self.sum_ranks(trainer, self._confusion).tolist())

    def state_dict(self) -> dict:
        return {"confusions": self.confusions}

    def load_state_dict(self, state: dict) -> None:
        self.confusions = state["confusions"]

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
