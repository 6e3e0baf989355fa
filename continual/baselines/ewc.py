"""Elastic weight consolidation (Kirkpatrick et al. 2017) and its online variant (Schwarz et al. 2018).

After each task the diagonal Fisher F and the weights theta* are stored; later tasks add
`lambda_/2 * sum F (theta - theta*)^2` per stored task. Online EWC keeps a single running
Fisher, `F = gamma * F_old + F_new`, anchored at the latest weights, and penalizes with
`gamma * F` (as Schwarz et al. 2018 and van de Ven & Tolias 2019's code do).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from omegaconf import DictConfig

from continual.baselines.finetune import FineTune
from continual.config.fields import at_least, choice, positive
from continual.data.task_data import TaskData
from continual.helpers.fisher import fisher_diagonal
from continual.methods import register


@register("ewc")
class EWC(FineTune):
    @dataclass
    class Config:
        lambda_: float = at_least(0, 100.0)  # penalty weight: loss + lambda_/2 * sum F (theta - theta*)^2
        online: bool = False  # one running Fisher (gamma-decayed) instead of one penalty per task
        gamma: float = at_least(0, 1.0)  # online only: decay of the old Fisher
        fisher: str = choice("predicted", ("predicted", "empirical", "sampled"))  # label used in the Fisher
        fisher_samples: Optional[int] = positive(None, integer=True, note="or null for the whole training set")  # None: the task's whole training set
        fisher_batch_size: int = positive(256, integer=True)  # per-sample gradients computed this many at a time

    def __init__(self, net, hp: DictConfig, **kwargs):
        super().__init__(net, **kwargs)
        self.hp = hp
        self.anchors: list[tuple[dict, dict]] = []  # (Fisher, theta*) per task; one entry if online

    def task_state(self) -> dict:
        return {"anchors": self.anchors}

    def load_task_state(self, state: dict) -> None:
        self.anchors = list(state["anchors"])

    def penalty(self):
        total = 0.0
        scale = self.hp.gamma if self.hp.online else 1.0
        for fisher, theta in self.anchors:
            for n, p in self.net.named_parameters():
                total = total + (fisher[n] * (p - theta[n]).pow(2)).sum()
        return 0.5 * scale * total

    def training_step(self, batch: dict, batch_idx: int):
        loss = super().training_step(batch, batch_idx)
        if self.anchors:
            loss = loss + self.hp.lambda_ * self.penalty()
        return loss

    def on_task_end(self, data: TaskData) -> None:
        h = self.hp
        fisher = fisher_diagonal(self, data.batches(h.fisher_batch_size), h.fisher, h.fisher_samples)
        theta = {n: p.detach().clone() for n, p in self.net.named_parameters()}
        if h.online and self.anchors:
            old = self.anchors[0][0]
            fisher = {n: h.gamma * old[n] + f for n, f in fisher.items()}
            self.anchors = []
        self.anchors.append((fisher, theta))
