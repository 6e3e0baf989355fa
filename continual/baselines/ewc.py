"""Elastic weight consolidation (Kirkpatrick et al. 2017) and its online variant (Schwarz et al. 2018).

After each task the diagonal Fisher F and the weights theta* are stored; later tasks add
`lambda_/2 * sum F (theta - theta*)^2` per stored task. Online EWC keeps a single running
Fisher, `F = gamma * F_old + F_new`, anchored at the latest weights, and penalizes with
`gamma * F` (as Schwarz et al. 2018 and van de Ven & Tolias 2019's code do).
"""

from __future__ import annotations

from omegaconf import DictConfig

from continual.baselines.finetune import FineTune
from continual.baselines.fisher import fisher_diagonal


class EWC(FineTune):
    config_key = "ewc"

    def __init__(self, net, hp: DictConfig, **kwargs):
        super().__init__(net, **kwargs)
        self.hp = hp
        self.anchors: list[tuple[dict, dict]] = []  # (Fisher, theta*) per task; one entry if online

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

    def on_train_end(self) -> None:
        h = self.hp
        fisher = fisher_diagonal(self, self.trainer.train_dataloader, h.fisher, h.fisher_samples, h.fisher_batch_size)
        theta = {n: p.detach().clone() for n, p in self.net.named_parameters()}
        if h.online and self.anchors:
            old = self.anchors[0][0]
            fisher = {n: h.gamma * old[n] + f for n, f in fisher.items()}
            self.anchors = []
        self.anchors.append((fisher, theta))
