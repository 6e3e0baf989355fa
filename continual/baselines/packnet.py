"""PackNet (Mallya & Lazebnik 2018): iterative pruning gives each task its own weights.

Each task trains the weights no earlier task owns; at `1 - retrain_fraction` of its steps the
smallest-magnitude `prune` fraction of those is released (set to zero, left for later tasks),
the rest become the task's own and are retrained alone. Task j is evaluated with the weights
of tasks 0..j only, so its accuracy never changes afterwards. Biases are learned on the first
task and then fixed; the head is protected by the task-IL label masking. The weights used are
chosen by the task id, so PackNet is a task-incremental method (scenario=task). The owners are
buffers and whether the task in progress is pruned yet is task state, so a task resumed after
its pruning step does not prune again.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch.nn import functional as F

from continual.baselines.finetune import FineTune
from continual.config.fields import in_range
from continual.data.task_data import TaskData
from continual.methods import register

FREE = -1


@register("packnet")
class PackNet(FineTune):
    scenarios = ("task",)
    scenarios_why = "it picks each task's weights by the task id given at test"

    @dataclass
    class Config:
        prune: float = in_range(0, 1, 0.75, hi_open=True)  # fraction of a task's free weights released for later tasks
        retrain_fraction: float = in_range(0, 1, 0.25, hi_open=True)  # last fraction of a task's steps: retrain the kept weights after pruning

    def __init__(self, net, hp: DictConfig, **kwargs):
        super().__init__(net, **kwargs)
        self.hp = hp
        for i, layer in enumerate(net.hidden):  # buffers: they move with the module (Lightning moves it to the CPU after every fit)
            self.register_buffer(f"owner{i}", torch.full_like(layer.weight, FREE, dtype=torch.long))
        self.pruned = False

    @property
    def owner(self) -> list[torch.Tensor]:
        """Per hidden layer, the task that owns each weight (FREE: none yet)."""
        return [getattr(self, f"owner{i}") for i in range(len(self.net.hidden))]

    def _forward(self, x: torch.Tensor, task: int | None) -> torch.Tensor:
        """task None: every weight (training); else only the weights of tasks 0..task."""
        for layer, own in zip(self.net.hidden, self.owner):
            w = layer.weight if task is None else layer.weight * ((own >= 0) & (own <= task))
            x = self.net.act(F.linear(x, w, layer.bias))
        return self.net.head(x)

    def logits(self, batch: dict) -> torch.Tensor:
        if self.training:
            return self._forward(batch["x"], None)
        out = None
        for t, rows in self.task_groups(batch["task"]):  # one pass per task in the batch
            part = self._forward(batch["x"][rows], t)
            out = part.new_zeros(len(batch["x"]), part.shape[1]) if out is None else out
            out[rows] = part
        return out

    def task_state(self) -> dict:
        return {"pruned": self.pruned}

    def load_task_state(self, state: dict) -> None:
        self.pruned = state["pruned"]

    def on_task_start(self, data: TaskData) -> None:
        self.pruned = False

    def prune(self) -> None:
        """The task keeps the largest (1 - prune) of the free weights; the rest are zeroed, free."""
        t = self.current_task
        with torch.no_grad():
            for layer, own in zip(self.net.hidden, self.owner):
                free = own == FREE
                mags = layer.weight.abs()[free]
                keep = mags.numel() - int(self.hp.prune * mags.numel())
                if keep > 0:
                    threshold = mags.topk(keep).values.min()
                    own[free & (layer.weight.abs() >= threshold)] = t
                layer.weight[own == FREE] = 0.0
        self.pruned = True

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        total = self.trainer.estimated_stepping_batches
        if not self.pruned and self.global_step >= int((1 - self.hp.retrain_fraction) * total):
            self.prune()

    def on_before_optimizer_step(self, optimizer) -> None:
        t = self.current_task
        for layer, own in zip(self.net.hidden, self.owner):
            layer.weight.grad *= (own == t) if self.pruned else (own == FREE)
            if t > 0:
                layer.bias.grad.zero_()

    def after_optimizer_step(self) -> None:
        if self.pruned:  # Adam's momentum must not revive released weights
            with torch.no_grad():
                for layer, own in zip(self.net.hidden, self.owner):
                    layer.weight[own == FREE] = 0.0

    def on_task_end(self, data: TaskData) -> None:
        if not self.pruned:
            self.prune()
