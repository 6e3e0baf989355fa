"""Run the frozen MLP with per-sample gates. The frozen weights are only read, never written.

* `units`: a mask over every hidden unit multiplies that unit's activation.
* `connections`: a mask over every weight `w_ij` of the hidden layers; a sample uses
  `sum_s alpha_s * (W * M_s)`, its slots' masked weight matrices mixed by attention weight.

`hard` masks are binary in the forward pass with a straight-through gradient (the sigmoid's):
`h` gated cells give `2^h` activation patterns. Soft masks are the sigmoids themselves.
"""

from __future__ import annotations

import torch

from continual.models.mlp import MLP
from continual.models.straight_through import straight_through


def binarize(p: torch.Tensor) -> torch.Tensor:
    """1[p > 0.5] forward, identity gradient backward (straight-through estimator)."""
    return straight_through(p, (p > 0.5).to(p.dtype))


def unit_masks(gates: torch.Tensor, alpha: torch.Tensor, hard: bool) -> torch.Tensor:
    """[S, U] gate logits, [B, S] slot weights -> [B, U] per-sample unit mask."""
    m = alpha @ torch.sigmoid(gates)
    return binarize(m) if hard else m


def connection_masks(gates: torch.Tensor, hard: bool) -> torch.Tensor:
    """[S, out, in] gate logits -> per-slot connection masks (binarized per slot when hard)."""
    m = torch.sigmoid(gates)
    return binarize(m) if hard else m


def forward_units(net: MLP, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    h = x
    for layer, m in zip(net.hidden, mask.split(net.widths, dim=1)):
        h = net.act(layer(h)) * m
    return h


def forward_connections(net: MLP, x: torch.Tensor, masks: list[torch.Tensor], alpha: torch.Tensor) -> torch.Tensor:
    h = x
    for layer, m in zip(net.hidden, masks):
        per_slot = torch.einsum("bi,soi->bso", h, layer.weight * m)  # [B, S, out]
        h = net.act(torch.einsum("bs,bso->bo", alpha, per_slot) + layer.bias)
    return h
