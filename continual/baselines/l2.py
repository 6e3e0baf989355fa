"""L2 to the previous weights: the plain quadratic anchor that EWC refines.

After each task the weights theta* are kept; later tasks add `strength/2 * sum (theta - theta*)^2`,
EWC's penalty with every Fisher entry 1 (the "L2" baseline of Kirkpatrick et al. 2017). It
shows what EWC's importance weights add over holding every weight equally.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from continual.baselines.finetune import FineTune
from continual.config.fields import at_least
from continual.data.task_data import TaskData
from continual.methods import register


@register("l2")
class L2(FineTune):
    @dataclass
    class Config:
        strength: float = at_least(0, 1.0)  # penalty weight: loss + strength/2 * sum (theta - theta*)^2

    def __init__(self, net, hp: DictConfig, **kwargs):
        super().__init__(net, **kwargs)
        self.hp = hp
        self.anchor: dict = {}  # weights at the end of the last task; empty during the first

    def task_state(self) -> dict:
        return {"anchor": self.anchor}

    def load_task_state(self, state: dict) -> None:
        self.anchor = state["anchor"]

    def penalty(self):
        return 0.5 * sum(((p - self.anchor[n]) ** 2).sum() for n, p in self.net.named_parameters())

    def training_step(self, batch: dict, batch_idx: int):
        loss = super().training_step(batch, batch_idx)
        if self.anchor:
            loss = loss + self.hp.strength * self.penalty()
        return loss

    def on_task_end(self, data: TaskData) -> None:
        self.anchor = {n: p.detach().clone() for n, p in self.net.named_parameters()}
