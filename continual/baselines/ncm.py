"""Nearest class mean (the classifier of iCaRL, Rebuffi et al. 2017, without its exemplars or
its trained representation).

Each output keeps the running sum and count of its samples' features; a sample's logit for an
output is minus its squared Euclidean distance to that output's mean. Nothing is trained and a
class's mean never changes once its task is over (except in domain-IL, where later tasks' classes
join the output's mean); later classes can still take its samples in class-IL, which is all the
forgetting it has. It shows how far fixed features and one vector per class go without a gradient.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from continual.helpers.statistics import ClassStatistics, class_sums, sq_dist
from continual.methods import register
from continual.models.mlp import MLP


@register("ncm")
class NCM(ClassStatistics):
    def __init__(self, net: MLP, hp: DictConfig, **kwargs):
        super().__init__(net, hp, **kwargs)
        n_out = self.labels.n_out
        self.register_buffer("sums", torch.zeros(n_out, self.dim, dtype=torch.float64))
        self.register_buffer("counts", torch.zeros(n_out, dtype=torch.float64))

    def means(self) -> torch.Tensor:
        return self.sums / self.counts.clamp(min=1)[:, None]

    def seen(self) -> torch.Tensor:
        return self.counts > 0

    def scores(self, z: torch.Tensor) -> torch.Tensor:
        return -sq_dist(z, self.means())

    def learn(self, z: torch.Tensor, out: torch.Tensor) -> None:
        counts, sums = class_sums(z, out, self.labels.n_out)
        self.counts += counts
        self.sums += sums
