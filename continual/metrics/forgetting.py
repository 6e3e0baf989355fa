"""The accuracy matrix and what follows from it: ACC, BWT, FWT, forgetting per task and per class.

`R[i][j]` is built from exact (correct, total) counts per task and per class of every test pass
after task i; the pass before any training gives the FWT reference. The summary formulas are
`continual.metrics.stream`'s.
"""

from __future__ import annotations

import torch

from continual.metrics.base import StreamCallback
from continual.metrics.stream import forgetting_of, summarize


def ratio(c: int, n: int) -> float | None:
    return c / n if n else None


class Forgetting(StreamCallback):
    key = "forgetting"

    def __init__(self, task_classes: list[list[int]], n_classes: int):
        super().__init__()
        self.n_tasks, self.n_classes = len(task_classes), n_classes
        self.learned_in = {c: t for t, classes in enumerate(task_classes) for c in classes}
        self.initial: dict | None = None  # counts of the pass before training
        self.rows: list[dict] = []  # counts of the pass after task i

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        # [correct, total] x tasks and x classes
        self._tasks = torch.zeros(2, self.n_tasks, dtype=torch.long, device=pl_module.device)
        self._classes = torch.zeros(2, self.n_classes, dtype=torch.long, device=pl_module.device)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        hit = (outputs["pred"] == outputs["target"]).long()
        for counts, key in ((self._tasks, batch["task"]), (self._classes, batch["y"])):
            counts[0].index_add_(0, key, hit)
            counts[1].index_add_(0, key, torch.ones_like(hit))

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        tasks, classes = self.sum_ranks(trainer, self._tasks).tolist(), self.sum_ranks(trainer, self._classes).tolist()
        record = {"correct": tasks[0], "total": tasks[1], "class_correct": classes[0], "class_total": classes[1]}
        if self.after < 0:
            self.initial = record
        else:
            self.store(self.rows, record)

    def state_dict(self) -> dict:
        return {"initial": self.initial, "rows": self.rows}

    def load_state_dict(self, state: dict) -> None:
        self.initial, self.rows = state["initial"], state["rows"]

    # -- what the driver and metrics.json read ------------------------------------------------
    @property
    def tasks_done(self) -> int:
        return len(self.rows)

    def matrix(self) -> list[list[float]]:
        return [[c / n for c, n in zip(r["correct"], r["total"])] for r in self.rows]

    def initial_accuracy(self) -> list[float]:
        return [c / n for c, n in zip(self.initial["correct"], self.initial["total"])]

    def per_class(self) -> dict:
        """Accuracy per class after each task, and each class's forgetting (from the task that taught it)."""
        matrix = [[ratio(c, n) for c, n in zip(r["class_correct"], r["class_total"])] for r in self.rows]
        classes = sorted(self.learned_in)
        full = len(self.rows) == self.n_tasks
        return {
            "classes": classes,
            "accuracy_matrix": [[row[c] for c in classes] for row in matrix],
            "forgetting": [forgetting_of([row[c] for row in matrix], self.learned_in[c]) if full else None for c in classes],
            "counts": {"correct": [r["class_correct"] for r in self.rows], "total": [r["class_total"] for r in self.rows]},
        }

    def results(self) -> dict:
        """The accuracy-matrix keys of metrics.json (summary keys once every task is done)."""
        out = {
            "accuracy_matrix": self.matrix(),
            "initial_accuracy": self.initial_accuracy(),
            "counts": {"correct": [r["correct"] for r in self.rows], "total": [r["total"] for r in self.rows]},
            "per_class": self.per_class(),
        }
        if len(self.rows) == self.n_tasks:
            out.update(summarize(out["accuracy_matrix"], out["initial_accuracy"]))
        return out

    def scalars(self) -> dict:
        return {f"acc/task_{j + 1}": a for j, a in enumerate(self.matrix()[-1])} if self.rows else {}
