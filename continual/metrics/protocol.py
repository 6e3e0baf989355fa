"""The optional outputs of `ContinualModule.evaluate` that the metric callbacks read.

`evaluate(batch)` always returns `pred` and `target`. A method that names a key below in its
`eval_outputs` returns it too, and the callback that reads it is attached; otherwise that
callback's metrics.json entry is null. Callbacks only read these outputs: the batch is
evaluated once, by the method, in its test step.

* `task`: [B] long, the task the method infers for each sample, without being told.
* `probe`: `Probe`, the gating masks of the batch's probe rows (`batch["probe"]`).
* `padded`: `Padded`, the `N_v` within-task logits routed by each sample's true task.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class Padded(NamedTuple):
    """The `N_v` within-task logits of a batch, routed by each sample's true task."""

    logits: torch.Tensor  # [B, N_v] as the method predicts with them (padded slots should be -inf)
    unmasked: torch.Tensor  # [B, N_v] the same logits before padded slots were masked
    valid: torch.Tensor  # [B, N_v] bool, False on padded slots of the sample's task
    target: torch.Tensor  # [B] the target's index among the N_v slots


class Probe(NamedTuple):
    """The masks of a batch's probe rows (`batch["probe"]`, in batch order)."""

    mask: torch.Tensor  # [P, M] in [0, 1]: the gating mask each probe sample is evaluated with
    task: torch.Tensor  # [P] the task whose memory gave that mask (given or inferred, as the scenario says)
