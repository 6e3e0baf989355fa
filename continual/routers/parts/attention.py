"""Token attention over the signature X: turns [B, n, d] tokens into one query vector per sample.

Variants (`router.attention`), each from the notes:

* `learned`: multi-head self-attention, `softmax(Q K^T / sqrt(h)) V` with trainable
  `Q = X W_q + b_q`, `K = X W_k + b_k`, `V = X W_v + b_v` (seed 002, 004). O(n^2).
* `local`: the same, but a token only attends to tokens within `window` positions (seed 003).
* `perceiver`: `m` learned latents cross-attend to the tokens (seed 001): O(m n), not O(n^2).
* `dot`: parameter-free dot-product similarity, `softmax(X X^T / sqrt(d)) X` (seed 004).

Outputs are mean-pooled over tokens (latents for the perceiver) and heads are concatenated.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from continual.errors import ConfigError


class TokenAttention(nn.Module):
    def __init__(
        self,
        kind: str,
        n_tokens: int,
        dim: int,
        h: int,
        heads: int,
        positional: bool,
        window: int,
        latents: int,
    ):
        super().__init__()
        self.kind, self.h, self.heads, self.window = kind, h, heads, window
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)  # pre-activations vary in scale by layer
        self.pos = nn.Parameter(torch.zeros(n_tokens, dim)) if positional else None
        if kind == "dot":
            self.out_dim = dim
            return
        if kind not in ("learned", "local", "perceiver"):
            raise ConfigError(f"router.attention='{kind}' is not valid; choose one of: learned, dot, perceiver, local")
        self.k = nn.Linear(dim, heads * h)
        self.v = nn.Linear(dim, heads * h)
        if kind == "perceiver":
            self.latents = nn.Parameter(torch.randn(heads, latents, h) / math.sqrt(h))
        else:
            self.q = nn.Linear(dim, heads * h)
        if kind == "local":
            idx = torch.arange(n_tokens)
            self.register_buffer("far", (idx[:, None] - idx[None, :]).abs() > window, persistent=False)
        self.out_dim = heads * h

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        B, n, _ = t.shape
        return t.view(B, n, self.heads, self.h).transpose(1, 2)  # [B, heads, n, h]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, n, d] tokens -> [B, out_dim]."""
        x = self.norm(x)
        if self.pos is not None:
            x = x + self.pos
        if self.kind == "dot":
            scores = x @ x.transpose(1, 2) / math.sqrt(x.shape[-1])
            return (scores.softmax(-1) @ x).mean(1)
        k, v = self._split(self.k(x)), self._split(self.v(x))
        if self.kind == "perceiver":
            q = self.latents.unsqueeze(0).expand(len(x), -1, -1, -1)  # [B, heads, m, h]
        else:
            q = self._split(self.q(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.h)
        if self.kind == "local":
            scores = scores.masked_fill(self.far, float("-inf"))
        out = scores.softmax(-1) @ v  # [B, heads, n or m, h]
        return out.mean(2).flatten(1)
