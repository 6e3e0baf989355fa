"""FeCAM (Goswami et al. 2023, "FeCAM: Exploiting the Heterogeneity of Class Distributions in
Exemplar-Free Continual Learning", NeurIPS): a mean and a covariance per class on fixed features,
classification by Mahalanobis distance.

Features first go through Tukey's ladder of powers, sign(x) |x|^beta (the paper's x^beta on the
non-negative features of a ReLU network; beta = 1: none), to make each class closer to a Gaussian.
Each output keeps its count, feature sum and scatter (the sum of the outer products of its
samples' deviations from its mean), merged task by task exactly as `slda` merges its pooled
scatter (Chan et al.), so the statistics after any task equal those of all its samples at once.
For scoring, class c's covariance Sigma_c = scatter_c / (n_c - 1) is shrunk as in the paper,

    Sigma_c + gamma1 V1 I + gamma2 V2 (1 - I),

V1 the mean variance (diagonal) and V2 the mean non-zero covariance off the diagonal, then
normalized to a correlation matrix; a sample's logit is minus its squared Mahalanobis distance
-(x - mu_c)^T pinv(Sigma_c) (x - mu_c), with x and mu_c scaled to unit length, as Avalanche's
`FeCAMClassifier` does (which applies the shrinkage twice; here it is applied once, as written
in the paper).

Why: the nearest class mean (`ncm`) assumes every class is an isotropic ball and `slda` one shared
shape; FeCAM gives every class its own shape, at d^2 floats per class. Nothing is trained and no
sample is stored; `stored_floats` counts the counts, sums and full d x d scatter of each output.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch.nn import functional as F

from continual.baselines.ncm import NCM
from continual.config.fields import at_least, in_range
from continual.helpers.statistics import ClassStatistics, class_sums
from continual.methods import register
from continual.models.mlp import MLP


def tukey(x: torch.Tensor, beta: float) -> torch.Tensor:
    """Tukey's ladder of powers, sign-preserving: sign(x) |x|^beta."""
    return x if beta == 1 else x.sign() * x.abs().pow(beta)


def shrink(cov: torch.Tensor, gamma1: float, gamma2: float) -> torch.Tensor:
    """[k, d, d] covariances shrunk towards their mean variance (diagonal) and their mean non-zero
    covariance (off the diagonal), each matrix by its own means (FeCAM's Eq. 7)."""
    eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
    v1 = cov.diagonal(dim1=-2, dim2=-1).mean(-1)
    off = cov * (1 - eye)
    v2 = off.sum((-2, -1)) / (off != 0).sum((-2, -1)).clamp(min=1)
    return cov + gamma1 * v1[:, None, None] * eye + gamma2 * v2[:, None, None] * (1 - eye)


def correlation(cov: torch.Tensor) -> torch.Tensor:
    """Covariances scaled to unit variances (a feature that never varies keeps zeros)."""
    sd = cov.diagonal(dim1=-2, dim2=-1).sqrt().clamp(min=1e-12)
    return cov / (sd[..., :, None] * sd[..., None, :])


@register("fecam")
class FeCAM(NCM):
    @dataclass
    class Config(ClassStatistics.Config):
        beta: float = in_range(0, 1, 0.5, lo_open=True)  # Tukey's power on the features (1: none)
        gamma1: float = at_least(0, 1.0, finite=True)  # shrinkage towards the mean variance, on the diagonal
        gamma2: float = at_least(0, 1.0, finite=True)  # shrinkage towards the mean covariance, off the diagonal

    def __init__(self, net: MLP, hp: DictConfig, **kwargs):
        super().__init__(net, hp, **kwargs)
        self.register_buffer("scatter", torch.zeros(self.labels.n_out, self.dim, self.dim, dtype=torch.float64))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return tukey(super().embed(x), self.hp.beta)

    def covariances(self, outputs: torch.Tensor) -> torch.Tensor:
        """[len(outputs), d, d] the shrunk, normalized covariances of these outputs."""
        raw = self.scatter[outputs] / (self.counts[outputs] - 1).clamp(min=1)[:, None, None]
        return correlation(shrink(raw, self.hp.gamma1, self.hp.gamma2))

    def scores(self, z: torch.Tensor) -> torch.Tensor:
        seen = self.seen().nonzero().squeeze(1)
        precision = torch.linalg.pinv(self.covariances(seen), hermitian=True)
        z, mu = F.normalize(z, dim=1), F.normalize(self.means(), dim=1)
        out = z.new_zeros(len(z), self.labels.n_out)  # outputs not seen yet: masked by `logits`
        for c, p in zip(seen.tolist(), precision):  # one class at a time: no [B, n_out, d] tensor
            diff = z - mu[c]
            out[:, c] = -((diff @ p) * diff).sum(1)
        return out

    def learn(self, z: torch.Tensor, out: torch.Tensor) -> None:
        n_new, sums = class_sums(z, out, self.labels.n_out)
        m = sums / n_new.clamp(min=1)[:, None]
        gap = m - self.means()
        weight = self.counts * n_new / (self.counts + n_new).clamp(min=1)
        centered = z - m[out]
        for o in out.unique().tolist():
            dev = centered[out == o]
            self.scatter[o] += dev.T @ dev + weight[o] * torch.outer(gap[o], gap[o])
        super().learn(z, out)
