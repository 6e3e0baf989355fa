"""What a method may expose so that the mask, padded-class and task-inference metrics can read it.

Every method is optional: a callback whose method the module lacks skips itself and its entry in
metrics.json is null. Each is called on a test batch (a dict with `x`, `y`, `task`, `index`) and
must be a pure function of the batch: the callbacks call them outside the method's own test step.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch


class Padded(NamedTuple):
    """The `N_v` within-task logits of a batch, routed by each sample's true task."""

    logits: torch.Tensor  # [B, N_v] as the method predicts with them (padded slots should be -inf)
    unmasked: torch.Tensor  # [B, N_v] the same logits before padded slots were masked
    valid: torch.Tensor  # [B, N_v] bool, False on padded slots of the sample's task
    target: torch.Tensor  # [B] the target's index among the N_v slots


class MaskSource(Protocol):
    def masks(self, batch: dict) -> torch.Tensor:
        """[B, M] in [0, 1]: the gating mask each sample is evaluated with (task given or inferred,
        as the scenario says)."""


class PaddedSource(Protocol):
    def padded_logits(self, batch: dict) -> Padded: ...


class TaskSource(Protocol):
    def infer_task(self, batch: dict) -> torch.Tensor:
        """[B] the task the method infers for each sample, without being told."""


def supports(module, name: str) -> bool:
    return callable(getattr(module, name, None))
