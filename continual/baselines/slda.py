"""Streaming linear discriminant analysis (Hayes & Kanan 2020, "Lifelong Machine Learning with
Deep Streaming Linear Discriminant Analysis", CVPR-W).

Running class means mu_c (counts n_c) and ONE covariance Sigma = S / N shared by all classes,
S the pooled within-class scatter sum_c sum_{i in c} (x_i - mu_c)(x_i - mu_c)^T over the N samples
seen. Prediction is the LDA rule with shrinkage eps: Lambda = [(1 - eps) Sigma + eps I]^-1
(a pseudo-inverse, as in the paper's code, so eps = 0 runs too), logits W x + b with
W_c = Lambda mu_c and b_c = -1/2 mu_c^T Lambda mu_c.

A task's data merges into the running statistics exactly (the parallel-variance formula of Chan
et al. 1979): with m_c, n'_c its class means and counts and M its scatter about m_c,

    S   <- S + M + sum_c n_c n'_c / (n_c + n'_c) (m_c - mu_c)(m_c - mu_c)^T
    mu_c <- (n_c mu_c + n'_c m_c) / (n_c + n'_c),   n_c <- n_c + n'_c

so S equals the scatter of all samples seen taken at once, and one sample at a time it is
Welford's update. (The paper's per-sample rule weights the outer product by t/(t+1), t the total
count, instead of n_c/(n_c+1): it approaches this one only once every class has many samples.)

Why: a linear classifier on fixed features, learned in one pass and the same whatever order or
batches the data came in, so the only forgetting is old classes losing samples to new ones; the
shared covariance is what it adds over the nearest class mean (`ncm`, its base): with shrinkage 1
(Lambda = I) the two rank outputs alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from continual.baselines.ncm import NCM
from continual.config.fields import in_range
from continual.helpers.statistics import ClassStatistics, class_sums
from continual.methods import register
from continual.models.mlp import MLP


@register("slda")
class SLDA(NCM):
    @dataclass
    class Config(ClassStatistics.Config):
        shrinkage: float = in_range(0, 1, 1e-4)  # eps in Lambda = [(1 - eps) Sigma + eps I]^-1

    def __init__(self, net: MLP, hp: DictConfig, **kwargs):
        super().__init__(net, hp, **kwargs)
        self.register_buffer("scatter", torch.zeros(self.dim, self.dim, dtype=torch.float64))  # S

    def scores(self, z: torch.Tensor) -> torch.Tensor:
        eps = self.hp.shrinkage
        sigma = self.scatter / self.counts.sum().clamp(min=1)
        eye = torch.eye(self.dim, dtype=sigma.dtype, device=sigma.device)
        precision = torch.linalg.pinv((1 - eps) * sigma + eps * eye, hermitian=True)
        mu = self.means()
        w = mu @ precision  # row c: (Lambda mu_c)^T, Lambda being symmetric
        return z @ w.T - 0.5 * (w * mu).sum(1)

    def learn(self, z: torch.Tensor, out: torch.Tensor) -> None:
        n_new, sums = class_sums(z, out, self.labels.n_out)
        m = sums / n_new.clamp(min=1)[:, None]
        centered = z - m[out]
        gap = m - self.means()
        weight = self.counts * n_new / (self.counts + n_new).clamp(min=1)
        self.scatter += centered.T @ centered + (gap * weight[:, None]).T @ gap
        super().learn(z, out)
