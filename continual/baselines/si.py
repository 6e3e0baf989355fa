"""Synaptic intelligence (Zenke et al. 2017).

Along the training trajectory each weight accumulates its contribution to the loss decrease,
`W += -g * delta_theta` per step; at the task's end `omega += W / (Delta^2 + xi)` with Delta
the weight's total change over the task, and later tasks add `c * sum omega (theta - theta*)^2`.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from continual.baselines.finetune import FineTune


class SI(FineTune):
    config_key = "si"

    def __init__(self, net, hp: DictConfig, **kwargs):
        super().__init__(net, **kwargs)
        self.hp = hp
        self.omega: dict | None = None
        self.anchor: dict = {}

    def _snapshot(self) -> dict:
        return {n: p.detach().clone() for n, p in self.net.named_parameters()}

    def training_step(self, batch: dict, batch_idx: int):
        loss = super().training_step(batch, batch_idx)
        if self.omega is not None:
            surrogate = sum((self.omega[n] * (p - self.anchor[n]).pow(2)).sum() for n, p in self.net.named_parameters())
            loss = loss + self.hp.c * surrogate
        return loss

    def on_train_start(self) -> None:
        self.start, self.prev = self._snapshot(), self._snapshot()
        self.W = {n: torch.zeros_like(p) for n, p in self.start.items()}
        self.grad: dict = {}

    def on_before_optimizer_step(self, optimizer) -> None:
        self.grad = {n: p.grad.detach().clone() for n, p in self.net.named_parameters() if p.grad is not None}

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        for n, p in self.net.named_parameters():
            if n in self.grad:
                self.W[n] -= self.grad[n] * (p.detach() - self.prev[n])
            self.prev[n] = p.detach().clone()

    def on_train_end(self) -> None:
        end = self._snapshot()
        new = {n: self.W[n] / ((end[n] - self.start[n]).pow(2) + self.hp.xi) for n in end}
        self.omega = new if self.omega is None else {n: self.omega[n] + new[n] for n in new}
        self.anchor = end
