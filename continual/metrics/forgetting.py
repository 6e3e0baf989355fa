"""The accuracy matrix and what follows from it: ACC, BWT, FWT, forgetting per task and per class.

`R[i][j]` is built from exact (correct, total) counts per task and per class of every test pass
after task i; the pass before any training gives the FWT reference. The summary formulas are
`continual.metrics.stream`'s.
"""

from __future__ import annotations

import torch

from continual.metrics import plots
from continual.metrics.base import Column, Metric, pct
from continual.metrics.registry import register
from continual.metrics.stream import forgetting_of, incremental_accuracy, summarize


def ratio(c: int, n: int) -> float | None:
    return c / n if n else None


@register
class Forgetting(Metric):
    key = "forgetting"
    state = ("initial", "rows")  # counts of the pass before training, of the pass after task i
    initial_pass = True
    columns = (
        Column("acc", "ACC", lambda m: m.get("acc"), "percent"),
        Column("acc_incremental", "ACC incremental", lambda m: m.get("acc_incremental"), "percent"),
        Column("bwt", "BWT", lambda m: m.get("bwt"), "percent"),
        Column("avg_forgetting", "forgetting", lambda m: m.get("avg_forgetting"), "percent"),
    )

    @classmethod
    def build(cls, cfg, stream, module) -> "Forgetting":
        return cls(stream.task_classes, stream.n_classes, stream.meta.get("base_classes"))

    def __init__(self, task_classes: list[list[int]], n_classes: int, base_classes: int | None = None):
        """`base_classes`: the stream's base task holds that many classes (`data.base_classes`)."""
        super().__init__()
        self.n_tasks, self.n_classes, self.base_classes = len(task_classes), n_classes, base_classes
        self.learned_in = {c: t for t, classes in enumerate(task_classes) for c in classes}
        self.initial: dict | None = None

    def zeros(self, device) -> torch.Tensor:
        """[correct, total] x (tasks, then classes)."""
        return torch.zeros(2, self.n_tasks + self.n_classes, dtype=torch.long, device=device)

    def count(self, counts, outputs, batch, task) -> None:
        hit = (outputs["pred"] == outputs["target"]).long()
        for part, key in ((counts[:, : self.n_tasks], batch["task"]), (counts[:, self.n_tasks:], batch["y"])):
            part[0].index_add_(0, key, hit)
            part[1].index_add_(0, key, torch.ones_like(hit))

    def row(self, counts, module) -> dict:
        T = self.n_tasks
        return {"correct": counts[0][:T], "total": counts[1][:T], "class_correct": counts[0][T:], "class_total": counts[1][T:]}

    def keep(self, row) -> None:
        if self.after < 0:
            self.initial = row
        else:
            super().keep(row)

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
        if self.base_classes is not None:
            out["base_classes"] = self.base_classes
        if len(self.rows) == self.n_tasks:
            out.update(summarize(out["accuracy_matrix"], out["initial_accuracy"]))
            if self.base_classes is not None:
                out["acc_incremental"] = incremental_accuracy(out["accuracy_matrix"])
        return out

    @classmethod
    def entries(cls, results) -> dict:
        return results  # the accuracy-matrix keys sit at metrics.json's top level

    def scalars(self) -> dict:
        return {f"acc/task_{j + 1}": a for j, a in enumerate(self.matrix()[-1])} if self.rows else {}

    @classmethod
    def final_scalars(cls, metrics: dict) -> dict:
        # RunLogger logs final/acc, final/bwt, ... (continual.run_logger.FINAL_KEYS): what sweeps optimize; with a base task, this too
        return {"final/acc_incremental": metrics["acc_incremental"]} if metrics.get("acc_incremental") is not None else {}

    @classmethod
    def summary(cls, metrics: dict) -> list[str]:
        R = metrics["accuracy_matrix"]
        T = len(R[0]) if R else 0
        # numbers on the validation split (data.eval_split=val, for choosing settings) must not read as test numbers
        split = ", validation split" if metrics.get("eval_split") == "val" else ""
        lines = [f"accuracy matrix (%), row i = after training task i, column j = task j   [{metrics['method']}, {metrics['scenario']}-IL{split}]"]
        lines.append("          " + "".join(f"{'T' + str(j + 1):>8}" for j in range(T)))
        for i, row in enumerate(R):
            lines.append(f"after T{i + 1:<3}" + "".join(f"{100 * v:8.2f}" for v in row))
        if "acc_incremental" in metrics:
            lines.append(f"base task T1: {metrics['base_classes']} classes   ACC over the incremental tasks T2-T{T} {pct(metrics['acc_incremental'])}")
        lines.append(
            f"ACC {pct(metrics['acc'])}   BWT {pct(metrics['bwt'])}   FWT {pct(metrics['fwt'])}   "
            f"avg forgetting {pct(metrics['avg_forgetting'])}"
        )
        lines.append("forgetting per task: " + " ".join(pct(f).strip() for f in metrics["forgetting"]))
        return lines

    def files(self, metrics: dict, title: str) -> dict:
        return {"accuracy_curves.png": plots.accuracy_curves(metrics["accuracy_matrix"], title)}
