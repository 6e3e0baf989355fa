"""DER++ (Buzzega et al., NeurIPS 2020): DER plus the labels of a second buffer batch.

Each sample is stored with its label too, and each step adds `beta` times the cross-entropy of a
second buffer batch, drawn independently of the first, scored in its own task's label space as
`er` scores replayed samples. Everything else is `der`'s (continual/baselines/der.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from continual.baselines.der import DER
from continual.config.fields import at_least
from continual.methods import register


@register("derpp")
class DERPlusPlus(DER):
    @dataclass
    class Config(DER.Config):
        beta: float = at_least(0, 0.5)  # weight of the cross-entropy on a second buffer batch

    stores_label = True

    def replay_loss(self) -> torch.Tensor:
        logit_term = super().replay_loss()  # the first draw, as in their code
        past = self.buffer.sample(self.replay_batch, replace=False)
        return logit_term + self.hp.beta * self.per_sample_loss(past).mean()
