"""The straight-through estimator, shared by every method that trains binary masks."""

from __future__ import annotations

import torch


def straight_through(soft: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
    """`hard` in the forward pass, exactly; in the backward pass the gradient reaches `soft`
    unchanged, so binary masks train through their real-valued scores (Bengio et al. 2013).
    `soft - soft.detach()` is an exact zero: `hard + soft - soft.detach()` would round (1 + 0.3 - 0.3 != 1 in float32)."""
    return hard + (soft - soft.detach())
