"""RanPAC (McDonnell et al. 2023, "RanPAC: Random Projections and Pre-trained Models for Continual
Learning", NeurIPS), without its first-session adaptation: a frozen random projection of the
fixed features and a ridge-regression classifier whose statistics accumulate task by task.

A sample's features f (d) become h = ReLU(f W) (m), W a d x m matrix of N(0, 1) entries drawn from
the run's seed. The classifier keeps the Gram matrix G = sum h h^T and the class sums
C = sum h y^T (y the one-hot output) of every training sample seen; after each task its weights
are the ridge solution (G + lambda I)^-1 C, so after task t they are exactly the joint
least-squares classifier of all data seen so far, with no sample stored. Logits: h (G + lambda I)^-1 C.

`ranpac.ridge` is lambda, or a list of candidates: then after each task the one with the least
squared error on the validation split of the tasks seen so far (`data.val_fraction`) is used.
The paper picks lambda by the same error on a held-out part of the training data; here that part
is the validation split, never test. The validation error of any lambda needs only that split's
own Gram matrix and class sums, kept like G and C: no validation sample is stored either.

Why: a linear classifier on fixed features that is the same whatever order the data came in,
like `slda`, but fit by least squares on a wide nonlinear projection, where classes that are not
linearly separable in the features may be. State (`stored_floats`): G (m x m), the class sums and
the classifier's weights (m per output), the count per output, the lambda in use and, with a list
of candidates, the validation Gram matrix and class sums (m x m + m per output). W is not state:
it is drawn again from the seed, as the frozen backbone is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from continual.config.fields import Rule, positive
from continual.data.task_data import TaskData
from continual.errors import ConfigError
from continual.helpers.statistics import ClassStatistics, class_sums
from continual.methods import register
from continual.models.mlp import MLP


def _valid_ridge(value) -> bool:
    values = value if isinstance(value, list) else [value]
    return len(values) > 0 and all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < math.inf for v in values)


def candidates(hp: DictConfig) -> list[float]:
    """`ranpac.ridge` as a list of lambdas (one number: a list of one)."""
    return [float(r) for r in (hp.ridge if OmegaConf.is_list(hp.ridge) or isinstance(hp.ridge, list) else [hp.ridge])]


def ridge_solutions(gram: torch.Tensor, sums: torch.Tensor, ridges: list[float]) -> torch.Tensor:
    """[len(ridges), m, n_out] the ridge weights (G + lambda I)^-1 C for each lambda, from one
    eigendecomposition of G (`sums`: C^T, [n_out, m])."""
    vals, vecs = torch.linalg.eigh(gram)
    proj = vecs.T @ sums.T  # Q^T C
    return torch.stack([vecs @ (proj / (vals + lam)[:, None]) for lam in ridges])


def squared_error(w: torch.Tensor, gram: torch.Tensor, sums: torch.Tensor) -> torch.Tensor:
    """sum ||y - h w||^2 over a split from its Gram matrix and class sums, less sum ||y||^2 (the
    same for every w): tr(w^T G w) - 2 tr(w^T C)."""
    return ((gram @ w) * w).sum((-2, -1)) - 2 * (sums.T * w).sum((-2, -1))


@register("ranpac")
class RanPAC(ClassStatistics):
    @dataclass
    class Config(ClassStatistics.Config):
        m: int = positive(2000, integer=True)  # width of the random projection
        # lambda, or a list of candidates chosen on the validation split after each task
        ridge: Any = field(default_factory=lambda: [10.0 ** k for k in range(-4, 7)],
                           metadata={"rule": Rule(_valid_ridge, "a positive number or a non-empty list of them")})

    @classmethod
    def check(cls, hp: DictConfig, cfg: DictConfig) -> None:
        n = len(candidates(hp))
        if n > 1 and cfg.data.val_fraction == 0:
            raise ConfigError(
                f"ranpac.ridge lists {n} candidates but data.val_fraction=0 leaves no validation split to choose "
                f"among them; set data.val_fraction>0 or give one value, e.g. ranpac.ridge=1.0"
            )

    @classmethod
    def from_config(cls, net, cfg, **common):
        return cls(net, hp=cfg.ranpac, seed=cfg.seed, **common)

    def __init__(self, net: MLP, hp: DictConfig, seed: int = 0, **kwargs):
        super().__init__(net, hp, **kwargs)
        n_out, m = self.labels.n_out, hp.m
        self.ridges = candidates(hp)
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("projection", torch.randn(self.dim, m, generator=gen, dtype=torch.float64), persistent=False)
        self.register_buffer("gram", torch.zeros(m, m, dtype=torch.float64))  # G
        self.register_buffer("sums", torch.zeros(n_out, m, dtype=torch.float64))  # C^T
        self.register_buffer("counts", torch.zeros(n_out, dtype=torch.float64))
        self.register_buffer("weights", torch.zeros(m, n_out, dtype=torch.float64))
        self.register_buffer("ridge", torch.tensor(self.ridges[0], dtype=torch.float64))  # the lambda in use
        if len(self.ridges) > 1:
            self.register_buffer("val_gram", torch.zeros(m, m, dtype=torch.float64))
            self.register_buffer("val_sums", torch.zeros(n_out, m, dtype=torch.float64))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(super().embed(x) @ self.projection)

    def seen(self) -> torch.Tensor:
        return self.counts > 0

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.weights

    def on_task_end(self, data: TaskData) -> None:
        if len(self.ridges) > 1:  # the validation statistics first: `learn` chooses lambda with them
            h = self.embed(data.x_val)
            self.val_gram += h.T @ h
            self.val_sums += class_sums(h, self.labels.targets(data.y_val), self.labels.n_out)[1]
        super().on_task_end(data)

    def learn(self, h: torch.Tensor, out: torch.Tensor) -> None:
        counts, sums = class_sums(h, out, self.labels.n_out)
        self.counts += counts
        self.sums += sums
        self.gram += h.T @ h
        solutions = ridge_solutions(self.gram, self.sums, self.ridges)
        best = 0
        if len(self.ridges) > 1:
            best = int(squared_error(solutions, self.val_gram, self.val_sums).argmin())
        self.weights.copy_(solutions[best])
        self.ridge.fill_(self.ridges[best])
