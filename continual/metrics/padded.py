"""Padded-class accuracy: how the `N_v` within-task logits do, and whether a padded slot ever wins.

Per task, routed by the sample's true task: accuracy of the argmax over the `N_v` logits the
method predicts with; `win_rate`, how often that argmax is a padded slot (a bug detector: with
padded slots masked it must read 0); `would_win_rate`, how often a padded slot would have won
had it not been masked (what the masking is worth).
"""

from __future__ import annotations

import torch

from continual.metrics.base import Metric, Switch, pct
from continual.metrics.protocol import Padded
from continual.metrics.registry import register

FIELDS = ("correct", "total", "padded_wins", "padded_would_win")


def padded_counts(p: Padded, task: torch.Tensor, n_tasks: int) -> torch.Tensor:
    """[n_tasks, 4] integer counts (FIELDS) of one batch."""
    pick, pick_unmasked = p.logits.argmax(1), p.unmasked.argmax(1)
    rows = torch.arange(len(pick), device=pick.device)
    per_sample = torch.stack(
        [pick == p.target, torch.ones_like(pick, dtype=torch.bool), ~p.valid[rows, pick], ~p.valid[rows, pick_unmasked]], 1
    ).long()
    return torch.zeros(n_tasks, len(FIELDS), dtype=torch.long, device=pick.device).index_add_(0, task, per_sample)


def rates(counts: list[list[int]]) -> dict:
    correct, total, wins, would = (sum(r[k] for r in counts) for k in range(len(FIELDS)))
    return {
        "accuracy": correct / total if total else None,
        "win_rate": wins / total if total else None,
        "would_win_rate": would / total if total else None,
    }


@register
class PaddedClass(Metric):
    key = "padded_class"
    reads = "padded"
    switch = Switch(True, "accuracy over the N_v padded logits and the padded-slot win rate")

    @classmethod
    def build(cls, cfg, stream, module) -> "PaddedClass":
        return cls(len(stream), module.within_task.n_v)  # built only for methods that return `padded`

    def __init__(self, n_tasks: int, n_v: int):
        super().__init__()
        self.n_tasks, self.n_v = n_tasks, n_v
        self.rows: list[list[list[int]]] = []  # after task i: [task][FIELDS]

    def zeros(self, device) -> torch.Tensor:
        return torch.zeros(self.n_tasks, len(FIELDS), dtype=torch.long, device=device)

    def count(self, counts, outputs, batch, task) -> None:
        counts += padded_counts(outputs["padded"], batch["task"], self.n_tasks)

    def results(self) -> dict:
        """Rates of the last pass over the tasks learned by then, per task and overall."""
        last = self.rows[-1][: len(self.rows)] if self.rows else []
        return {
            "n_v": self.n_v,
            **rates(last),
            "per_task": [rates([r]) for r in last],
            "win_rate_curve": [rates(row[: i + 1])["win_rate"] for i, row in enumerate(self.rows)],
            "counts": {"fields": list(FIELDS), "after_task": self.rows},
        }

    def scalars(self) -> dict:
        r = rates(self.rows[-1][: len(self.rows)]) if self.rows else {}
        return {f"padded/{k}": v for k, v in r.items() if v is not None}

    @classmethod
    def summary(cls, metrics: dict) -> list[str]:
        p = metrics.get(cls.key)
        if not p:
            return []
        return [f"padded-class accuracy {pct(p['accuracy'])}   padded win rate {pct(p['win_rate'])}   would win unmasked {pct(p['would_win_rate'])}"]
