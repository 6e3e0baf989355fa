"""Nearest prototype: k prototypes per output found by k-means (k-means++ seeding, Arthur &
Vassilvitskii 2007, then Lloyd's iterations); a sample's logit for an output is minus its squared
distance to the output's nearest prototype.

Why: one mean per class (`ncm`) cannot follow a class with several modes; k prototypes can, at k
times the memory, so the pair shows what that memory buys. With k = 1 it is the nearest class mean.

At a task's end each output in its data is clustered; a class with at most k samples keeps its
samples. Each prototype keeps its mass (the samples it stands for): when an output returns in a
later task (domain-IL), its old prototypes join the new samples as points of that mass, so the
clustering summarizes every task. Seeding draws from a generator seeded with (seed, task): the
same prototypes on every run, rank and resume.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch.nn import functional as F

from continual.config.fields import positive
from continual.helpers.statistics import ClassStatistics, sq_dist
from continual.methods import register
from continual.models.mlp import MLP


def kmeans(points: torch.Tensor, mass: torch.Tensor, k: int, iters: int, gen: torch.Generator):
    """Weighted k-means of `points` [N, d] with masses [N]: at most k centers and the mass each
    holds (0 for a center left without points). Masses are sample counts, so a held mass is at least 1."""
    if len(points) <= k:
        return points, mass
    centers = points[torch.multinomial(mass.cpu(), 1, generator=gen).to(points.device)]
    while len(centers) < k:  # k-means++: the next center drawn with probability ~ mass x squared distance
        d2 = sq_dist(points, centers).min(1).values * mass
        if not d2.sum() > 0:  # every point coincides with a center (duplicates)
            break
        pick = torch.multinomial(d2.cpu(), 1, generator=gen).to(points.device)
        centers = torch.cat([centers, points[pick]])
    for _ in range(iters):
        share = F.one_hot(sq_dist(points, centers).argmin(1), len(centers)).to(mass.dtype) * mass[:, None]
        held = share.sum(0)
        centers = torch.where(held[:, None] > 0, share.T @ points / held.clamp(min=1)[:, None], centers)
    return centers, held


@register("prototypes")
class Prototypes(ClassStatistics):
    @dataclass
    class Config(ClassStatistics.Config):
        k: int = positive(16, integer=True)  # prototypes per output
        iters: int = positive(20, integer=True)  # Lloyd iterations

    @classmethod
    def from_config(cls, net, cfg, **common):
        return cls(net, hp=cfg.prototypes, seed=cfg.seed, **common)

    def __init__(self, net: MLP, hp: DictConfig, seed: int = 0, **kwargs):
        super().__init__(net, hp, **kwargs)
        self.seed = seed
        n_out = self.labels.n_out
        self.register_buffer("protos", torch.zeros(n_out, hp.k, self.dim, dtype=torch.float64))
        self.register_buffer("mass", torch.zeros(n_out, hp.k, dtype=torch.float64))  # 0: an empty slot

    def seen(self) -> torch.Tensor:
        return (self.mass > 0).any(1)

    def scores(self, z: torch.Tensor) -> torch.Tensor:
        d2 = sq_dist(z, self.protos.flatten(0, 1)).view(len(z), *self.mass.shape)
        return -d2.masked_fill(self.mass == 0, float("inf")).min(2).values

    def learn(self, z: torch.Tensor, out: torch.Tensor) -> None:
        gen = torch.Generator().manual_seed(self.seed * 1000 + self.current_task)  # (seed, task)
        for o in out.unique().tolist():
            old = self.mass[o] > 0  # prototypes from earlier tasks (domain-IL)
            points = torch.cat([self.protos[o][old], z[out == o]])
            mass = torch.cat([self.mass[o][old], z.new_ones(int((out == o).sum()))])
            centers, held = kmeans(points, mass, self.hp.k, self.hp.iters, gen)
            self.protos[o] = 0
            self.mass[o] = 0
            self.protos[o, : len(centers)] = centers
            self.mass[o, : len(centers)] = held
