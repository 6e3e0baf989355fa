"""Learning without forgetting (Li & Hoiem 2017), as in van de Ven & Tolias 2019.

A copy of the network taken at the end of each task labels the current task's inputs; the
new network is distilled towards those soft labels (temperature T, loss scaled by T^2): on each
past task's own outputs (task-IL), on the shared outputs (domain-IL), and in class-IL on every
output active now, the new task's included, with the old network's softmax over the past
outputs padded with zero probability for the new task's. That last choice is van de Ven &
Tolias's (`loss_fn_kd` pads the targets with zeros): the new network is told that the current
inputs are not of the new classes *as far as the old outputs are concerned*, which is what
lifts LwF above fine-tuning in class-IL (distilling among the old outputs alone does not:
measured 19.9% vs fine-tuning 19.9% on Split-MNIST, docs/reproduction.md).

`kd_over_classes="mean"` averages the cross-entropy over the outputs instead of summing it, as
the code behind their 2019 table did (`(-p * log q).mean()`): the term is then 1/n as strong with
n outputs, which decides their LwF numbers (docs/reproduction.md).

The teacher is a submodule from the start (`has_teacher` says whether it holds a past task's
network yet), so it is saved and restored with the weights like everything else.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional

import torch
from omegaconf import DictConfig
from torch.nn import functional as F

from continual.baselines.finetune import FineTune, past_weight
from continual.config.fields import choice, in_range, positive
from continual.data.task_data import TaskData
from continual.methods import register


def distill(new: torch.Tensor, old: torch.Tensor, temperature: float, over_classes: str = "sum") -> torch.Tensor:
    """Per-sample cross-entropy of the new softened scores against the old ones, times T^2."""
    target = F.softmax(old / temperature, dim=1)
    ce = -(target * F.log_softmax(new / temperature, dim=1))
    return (ce.sum(1) if over_classes == "sum" else ce.mean(1)) * temperature**2


@register("lwf")
class LwF(FineTune):
    @dataclass
    class Config:
        temperature: float = positive(2.0)  # distillation temperature of the old outputs
        alpha: Optional[float] = in_range(0, 1, None, note="or null for 1 - 1/tasks seen")  # weight of the distillation loss; None: 1 - 1/t (current loss 1/t), t = tasks seen
        kd_over_classes: str = choice("sum", ("sum", "mean"))  # "mean": divided by the outputs distilled over (van de Ven & Tolias 2019's code)

    def __init__(self, net, hp: DictConfig, **kwargs):
        super().__init__(net, **kwargs)
        self.hp = hp
        self.teacher = copy.deepcopy(net).requires_grad_(False).eval()
        self.register_buffer("has_teacher", torch.tensor(False))

    def past_outputs(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(student, teacher) boolean output masks, one pair per distillation term: the new
        network's softmax runs over the student outputs, the old one's over the teacher outputs
        (a subset; the rest get zero target probability)."""
        L, t = self.labels, self.current_task
        if L.scenario == "task":
            return [(L.own[k], L.own[k]) for k in range(t)]
        if L.scenario == "class":
            return [(L.upto[t], L.upto[t - 1])]
        every = torch.ones_like(L.own[0])
        return [(every, every)]

    def training_step(self, batch: dict, batch_idx: int):
        logits = self.logits(batch)
        ce = F.cross_entropy(self.loss_logits(logits, batch), self.labels.targets(batch["y"]), reduction="none")
        loss = self.batch_mean(ce, batch)
        if self.has_teacher and self.current_task > 0:
            with torch.no_grad():
                old = self.teacher(batch["x"])
            terms = torch.stack([
                distill(logits[:, s], old[:, s].masked_fill(~teacher[s], float("-inf")), self.hp.temperature, self.hp.kd_over_classes)
                for s, teacher in self.past_outputs()
            ])
            w = past_weight(self.hp.alpha, self.current_task)
            loss = (1 - w) * loss + w * self.batch_mean(terms.mean(0), batch)
        self.log_train_step({"train/loss": loss}, batch_size=len(batch["y"]))
        return loss

    def on_task_end(self, data: TaskData) -> None:
        self.teacher.load_state_dict(self.net.state_dict())
        self.has_teacher.fill_(True)
