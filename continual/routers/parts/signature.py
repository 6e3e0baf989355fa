"""The task signature X: a sample's weighted connections `w_ij * x_i` in the frozen MLP.

Rows ("tokens") are cut three ways (`router.tokens`):

* `layer`: one row per layer: that layer's weighted inputs summed per unit (its pre-activation,
  `sum_i w_ij x_i + b_j`), zero-padded to the widest layer: "rows the size of the network".
* `unit`: one row per hidden unit: its weighted inputs summed over `unit_chunks` contiguous
  groups of inputs (`sum_{i in g} w_ij x_i`), so a row shows where a unit's drive comes from.
* `patch`: one row per input patch (seed 002): the patch's weighted connections into the first
  layer, `sum_{i in patch} w_1j x_i` for every first-layer unit j.

The signature is a function of the frozen network and the sample only, computed without
gradients: the same sample always gets the same X.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from continual.errors import ConfigError
from continual.models.mlp import MLP


def _grouped(x: torch.Tensor, weight: torch.Tensor, groups: int) -> torch.Tensor:
    """[B, J, G]: `sum_{i in group g} weight[j, i] * x[b, i]` over `groups` contiguous input groups."""
    n_in = x.shape[1]
    size = math.ceil(n_in / groups)
    pad = size * groups - n_in
    if pad:
        x = nn.functional.pad(x, (0, pad))
        weight = nn.functional.pad(weight, (0, pad))
    return torch.einsum("bgk,jgk->bjg", x.view(len(x), groups, size), weight.view(len(weight), groups, size))


class Signature(nn.Module):
    def __init__(self, net: MLP, tokens: str, patch_size: int | None, unit_chunks: int):
        super().__init__()
        self.net, self.kind = net, tokens  # `net` is frozen by the owner; this module has no weights
        if tokens == "layer":
            self.n_tokens = len(net.hidden) + 1
            self.dim = max([*net.widths, net.n_out])
        elif tokens == "unit":
            self.n_tokens, self.dim = sum(net.widths), unit_chunks
        elif tokens == "patch":
            self.patch = patch_size or max(1, math.isqrt(net.n_in))
            if self.patch > net.n_in:
                raise ConfigError(f"router.patch_size={self.patch} exceeds the input size {net.n_in}; pick a smaller patch")
            self.n_tokens, self.dim = math.ceil(net.n_in / self.patch), net.widths[0]
        else:
            raise ConfigError(f"router.tokens='{tokens}' is not valid; choose one of: layer, unit, patch")

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, n_tokens, dim]."""
        net = self.net
        if self.kind == "patch":
            return _grouped(x, net.hidden[0].weight, self.n_tokens).transpose(1, 2)
        rows, h = [], x
        for layer in net.hidden:
            if self.kind == "unit":
                rows.append(_grouped(h, layer.weight, self.dim))
            z = layer(h)
            if self.kind == "layer":
                rows.append(z)
            h = net.act(z)
        if self.kind == "unit":
            return torch.cat(rows, dim=1)
        rows.append(net.head(h))
        return torch.stack([nn.functional.pad(r, (0, self.dim - r.shape[1])) for r in rows], dim=1)
