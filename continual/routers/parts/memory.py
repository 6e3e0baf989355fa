"""A task's memory: `slots` rows, each a key, a gating mask and a value head.

The attention scores of a sample against every slot key say which task it belongs to and,
within that task, how much each slot's mask and values count for it. One `TaskMemory` per
task, so that learning task t can only ever write task t's memory.

Scores are the scaled dot product with a key-norm bias, `(q.k - |k|^2 / 2) / sqrt(d)`, which
equals `-|q - k|^2 / (2 sqrt(d))` up to a per-sample constant: softmax over slots is then a
nearest-key posterior. A plain dot product would let a new task's keys win every sample by
growing their norm, without ever seeing an old task's data.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from continual.routers.parts.gating import connection_masks


def slot_scores(q: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """[B, d] queries x [S, d] keys -> [B, S] attention logits."""
    return (q @ keys.T - 0.5 * (keys * keys).sum(1)) / math.sqrt(q.shape[1])


class TaskMemory(nn.Module):
    """`bits=True` (hard connection masks): the task keeps its per-slot masks as bits, `bits{i}`,
    written when the task ends from the scores the router trains for the current task alone;
    until then they hold the masks of the initial gates. Floats per slot would be 474k per 2x400
    MLP, bits 15k."""

    def __init__(self, slots: int, key_dim: int, gate_shapes: list[tuple[int, ...]], feat_dim: int, n_v: int, gate_init: float,
                 gaussian: bool = False, bits: bool = False):
        super().__init__()
        self.keys = nn.Parameter(torch.zeros(slots, key_dim))
        if gaussian:  # per-slot diagonal variances of the task's queries, fit when the task ends
            self.register_buffer("log_var", torch.zeros(slots, key_dim))
        self.gates = nn.ParameterList(() if bits else (nn.Parameter(torch.full((slots, *s), gate_init)) for s in gate_shapes))
        self.n_bits = len(gate_shapes) if bits else 0
        initial = bool(connection_masks(torch.tensor(gate_init), hard=True))
        for i, s in enumerate(gate_shapes[: self.n_bits]):
            self.register_buffer(f"bits{i}", torch.full((slots, *s), initial))
        if bits:
            self.register_buffer("finished", torch.tensor(False))  # bits written: the task is learned
        self.values = nn.Parameter(torch.randn(slots, n_v, feat_dim) / math.sqrt(feat_dim))
        self.value_bias = nn.Parameter(torch.zeros(slots, n_v))
        self.register_buffer("initialized", torch.tensor(False))

    def mask_bits(self) -> list[torch.Tensor]:
        return [getattr(self, f"bits{i}") for i in range(self.n_bits)]

    @torch.no_grad()
    def store_bits(self, scores: list[torch.Tensor]) -> None:
        """The finished task's hard masks, as the forward pass binarizes them, kept as bits."""
        for bits, g in zip(self.mask_bits(), scores):
            bits.copy_(connection_masks(g, hard=True))
        self.finished.fill_(True)

    @torch.no_grad()
    def fit_keys(self, q: torch.Tensor, generator: torch.Generator, warm: bool = False, iters: int = 10) -> None:
        """k-means (Lloyd) on the task's queries, from random samples or from the current keys.

        Cold: a new task's keys start where its samples are. Warm: after the token attention was
        trained (task 1), keys are moved onto the final queries; starting from the current keys
        keeps each slot's samples, and so the masks they learned, mostly unchanged.
        """
        S = len(self.keys)
        if warm:
            centers = self.keys.detach().clone().to(q.device)
        else:
            centers = q[torch.randperm(len(q), generator=generator)[:S].to(q.device)].clone()
            if len(centers) < S:  # fewer samples than slots: repeat them
                centers = centers.repeat(math.ceil(S / len(centers)), 1)[:S]
        for _ in range(iters):
            assign = torch.cdist(q, centers).argmin(1)
            counts = torch.bincount(assign, minlength=S)
            sums = torch.zeros_like(centers).index_add_(0, assign, q)
            filled = counts > 0
            centers[filled] = sums[filled] / counts[filled].unsqueeze(1).to(q.dtype)
        self.keys.copy_(centers)
        self.initialized.fill_(True)

    @torch.no_grad()
    def fit_variances(self, q: torch.Tensor, prior: float = 10.0, floor: float = 1e-4) -> None:
        """Each slot's per-dimension variance of the queries nearest to its key, shrunk towards
        the task's overall variance as if `prior` samples had it (a slot with few samples keeps
        about the task's spread instead of collapsing)."""
        assign = torch.cdist(q, self.keys).argmin(1)
        sq = (q - self.keys[assign]) ** 2
        counts = torch.bincount(assign, minlength=len(self.keys)).to(q.dtype).unsqueeze(1)
        sums = torch.zeros_like(self.keys).index_add_(0, assign, sq)
        overall = sq.mean(0, keepdim=True)
        self.log_var.copy_(((sums + prior * overall) / (counts + prior)).clamp(min=floor).log())


def gaussian_scores(q: torch.Tensor, keys: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """[B, d] queries x [S, d] keys with diagonal variances -> [B, S] Gaussian log densities (up
    to a constant): -1/2 sum_d ((q_d - k_d)^2 / var_d + log var_d), as three matmuls."""
    iv = (-log_var).exp()
    quad = (q * q) @ iv.T - 2 * q @ (keys * iv).T + (keys * keys * iv).sum(1)
    return -0.5 * (quad + log_var.sum(1))
