"""PackNet (Mallya & Lazebnik 2018): iterative pruning gives each task its own weights.

Each task trains the weights no earlier task owns; at `1 - retrain_fraction` of its steps the
smallest-magnitude `prune` fraction of those is released (set to zero, left for later tasks),
the rest become the task's own and are retrained alone. Task j is evaluated with the weights
of tasks 0..j only, so its accuracy never changes afterwards. Biases are learned on the first
task and then fixed; the head is protected by the task-IL label masking. The weights used are
chosen by the task id, so PackNet is a task-incremental method (scenario=task).
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch.nn import functional as F

from continual.baselines.finetune import FineTune

FREE = -1


class PackNet(FineTune):
    config_key = "packnet"

    def __init__(self, net, hp: DictConfig, **kwargs):
        super().__init__(net, **kwargs)
        self.hp = hp
        self.owner = [torch.full_like(layer.weight, FREE, dtype=torch.long) for layer in net.hidden]
        self.pruned = False

    def _forward(self, x: torch.Tensor, task: int | None) -> torch.Tensor:
        """task None: every weight (training); else only the weights of tasks 0..task."""
        for layer, own in zip(self.net.hidden, self.owner):
            w = layer.weight if task is None else layer.weight * ((own >= 0) & (own <= task)).to(own.device)
            x = self.net.act(F.linear(x, w, layer.bias))
        return self.net.head(x)

    def logits(self, batch: dict) -> torch.Tensor:
        if self.training:
            return self._forward(batch["x"], None)
        out = None
        for t in batch["task"].unique().tolist():  # at most one pass per task in the batch
            rows = batch["task"] == t
            part = self._forward(batch["x"][rows], t)
            out = part.new_zeros(len(rows), part.shape[1]) if out is None else out
            out[rows] = part
        return out

    def on_fit_start(self) -> None:
        self.owner = [o.to(self.device) for o in self.owner]
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

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.pruned:  # Adam's momentum must not revive released weights
            with torch.no_grad():
                for layer, own in zip(self.net.hidden, self.owner):
                    layer.weight[own == FREE] = 0.0

    def on_train_end(self) -> None:
        if not self.pruned:
            self.prune()
