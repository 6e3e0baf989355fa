"""Dark Experience Replay (Buzzega et al., NeurIPS 2020): replay the network's own past logits.

The reservoir buffer is filled *during* training, as in their code: after each step's losses,
every sample of the current batch is offered with the logits the network gave it in that
step's forward pass (before the step's update). From the buffer's first sample on, each step adds
`alpha` times the mean squared error between the network's logits on a buffer batch (`batch_size`
distinct samples, their `minibatch_size`) and the stored ones.

The stored logits are the full output vector, and in class- and domain-IL the error is taken
over all of it, as in their code: in class-IL the stored logits of classes not learned yet hold
those outputs where they were on that sample, which keeps later classes from taking it over. In
task-IL only a sample's own task's outputs are ever read (trained, predicted), so the error is
the mean over those: matching the others would constrain outputs that carry nothing for it.

Under DDP every rank inserts the global batch (`gather_batch`) and draws the same buffer batch
from one seeded generator, so every rank keeps the one-process buffer and gradient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from omegaconf import DictConfig
from torch import nn

from continual.baselines.finetune import FineTune
from continual.config.fields import at_least, positive
from continual.helpers.buffer import ReservoirBuffer, buffer_capacity, gather_batch, sample_floats
from continual.methods import register


@register("der")
class DER(FineTune):
    @dataclass
    class Config:
        alpha: float = at_least(0, 0.5)  # weight of the logit-matching MSE on a buffer batch
        buffer_size: int = positive(1000, integer=True)  # reservoir over every training sample seen so far
        buffer_floats: Optional[float] = positive(None, finite=True, note="or null for buffer_size")  # budget for the whole stored_floats (network + x, n_out logits, task id per sample; derpp: + label); set: decides the size
        batch_size: Optional[int] = positive(None, integer=True, note="or null for data.batch_size")  # buffer samples per step (their minibatch_size); None: data.batch_size

    # what a sample keeps besides its input and logits: DER++ adds its label
    stores_label = False

    def __init__(self, net, hp: DictConfig, batch_size: int, seed: int = 0, **kwargs):
        super().__init__(net, **kwargs)
        self.hp = hp
        self.replay_batch = hp.batch_size or batch_size
        per_sample = sample_floats(net, self.labels.n_out, 1, *([1] if self.stores_label else []))
        self.buffer = ReservoirBuffer(0, seed)
        self.buffer.size = buffer_capacity(self, hp, per_sample)  # sized once the method's other state exists

    @classmethod
    def from_config(cls, net, cfg, **common):
        return cls(net, hp=cfg[cls.name], batch_size=cfg.data.batch_size, seed=cfg.seed, **common)

    def task_state(self) -> dict:
        return self.buffer.state_dict()

    def load_task_state(self, state: dict) -> None:
        self.buffer.load_state_dict(state)

    def logit_loss(self, past: dict) -> torch.Tensor:
        """Mean squared error between the logits of buffer samples and their stored ones (task-IL:
        over each sample's own task's outputs)."""
        error = (self.logits(past) - past["logits"]) ** 2
        if self.labels.scenario != "task":
            return error.mean()
        keep = self.labels.allowed(past["task"], self.current_task)
        return (error * keep).sum() / keep.sum()

    def replay_loss(self) -> torch.Tensor:
        # the buffer batch is the same on every rank: its plain mean keeps DDP's average exact
        return self.hp.alpha * self.logit_loss(self.buffer.sample(self.replay_batch, replace=False))

    def training_step(self, batch: dict, batch_idx: int):
        logits = self.logits(batch)
        # per_sample_loss's cross-entropy, on the logits the buffer stores too
        ce = nn.functional.cross_entropy(self.loss_logits(logits, batch), self.labels.targets(batch["y"]), reduction="none")
        loss = self.batch_mean(ce, batch)
        if len(self.buffer):
            loss = loss + self.replay_loss()
        # inserted before the step's checkpoint (the method API's rule), after this step's draws
        kept = {"x": batch["x"], "logits": logits.detach().float(), "task": batch["task"]}
        if self.stores_label:
            kept["y"] = batch["y"]
        self.buffer.add(**gather_batch(kept, batch.get("global_size", len(ce))))
        self.log_train_step({"train/loss": loss}, batch_size=len(ce))
        return loss
