"""Synaptic intelligence (Zenke et al. 2017).

Along the training trajectory each weight accumulates its contribution to the loss decrease,
`W += -g * delta_theta` per step; at the task's end `omega += W / (Delta^2 + xi)` with Delta
the weight's total change over the task, and later tasks add `c * sum omega (theta - theta*)^2`.
The running sums of the task in progress are state too, so a task resumed mid-way continues them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from continual.baselines.finetune import FineTune
from continual.config.fields import at_least, positive
from continual.data.task_data import TaskData
from continual.methods import register


@register("si")
class SI(FineTune):
    @dataclass
    class Config:
        c: float = at_least(0, 0.1)  # surrogate-loss weight
        xi: float = positive(0.1)  # damping of omega = W / (delta^2 + xi)

    def __init__(self, net, hp: DictConfig, **kwargs):
        super().__init__(net, **kwargs)
        self.hp = hp
        self.omega: dict | None = None  # importance, summed over past tasks
        self.anchor: dict = {}  # weights at the end of the last task
        self.start: dict = {}  # the task in progress: weights at its start,
        self.prev: dict = {}  # after the last step,
        self.W: dict = {}  # and the path integral so far

    def task_state(self) -> dict:
        return {"omega": self.omega, "anchor": self.anchor, "start": self.start, "prev": self.prev, "W": self.W}

    def load_task_state(self, state: dict) -> None:
        self.omega, self.anchor, self.start, self.prev, self.W = (state[k] for k in ("omega", "anchor", "start", "prev", "W"))

    def _snapshot(self) -> dict:
        return {n: p.detach().clone() for n, p in self.net.named_parameters()}

    def training_step(self, batch: dict, batch_idx: int):
        loss = super().training_step(batch, batch_idx)
        if self.omega is not None:
            surrogate = sum((self.omega[n] * (p - self.anchor[n]).pow(2)).sum() for n, p in self.net.named_parameters())
            loss = loss + self.hp.c * surrogate
        return loss

    def on_task_start(self, data: TaskData) -> None:
        self.start, self.prev = self._snapshot(), self._snapshot()
        self.W = {n: torch.zeros_like(p) for n, p in self.start.items()}
        self._grad: dict = {}

    def on_before_optimizer_step(self, optimizer) -> None:
        self._grad = {n: p.grad.detach().clone() for n, p in self.net.named_parameters() if p.grad is not None}

    def after_optimizer_step(self) -> None:
        for n, p in self.net.named_parameters():
            if n in self._grad:
                self.W[n] -= self._grad[n] * (p.detach() - self.prev[n])
            self.prev[n] = p.detach().clone()

    def on_task_end(self, data: TaskData) -> None:
        end = self._snapshot()
        new = {n: self.W[n] / ((end[n] - self.start[n]).pow(2) + self.hp.xi) for n in end}
        self.omega = new if self.omega is None else {n: self.omega[n] + new[n] for n in new}
        self.anchor = end
