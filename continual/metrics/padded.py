"""Padded-class accuracy: how the `N_v` within-task logits do, and whether a padded slot ever wins.

Per task, routed by the sample's true task: accuracy of the argmax over the `N_v` logits the
method predicts with; `win_rate`, how often that argmax is a padded slot (a bug detector: with
padded slots masked it must read 0); `would_win_rate`, how often a padded slot would have won
had it not been masked (what the masking is worth).
"""

from __future__ import annotations

import torch

from continual.metrics.base import StreamCallback
from continual.metrics.protocol import Padded

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


class PaddedClass(StreamCallback):
    key = "padded_class"
    reads = "padded"

    def __init__(self, n_tasks: int, n_v: int):
        super().__init__()
        self.n_tasks, self.n_v = n_tasks, n_v
        self.rows: list[list[list[int]]] = []  # after task i: [task][FIELDS]

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._counts = torch.zeros(self.n_tasks, len(FIELDS), dtype=torch.long, device=pl_module.device)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.after >= 0:
            self._counts += padded_counts(outputs["padded"], batch["task"], self.n_tasks)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        if self.after >= 0:
            self.store(self.rows, self.sum_ranks(trainer, self._counts).tolist())

    def state_dict(self) -> dict:
        return {"rows": self.rows}

    def load_state_dict(self, state: dict) -> None:
        self.rows = state["rows"]

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
