"""GDumb (Prabhu et al., ECCV 2020): a greedy class-balanced memory, and a network trained from
scratch on the memory alone.

The sampler (the paper's Algorithm 1) sees each training sample once, in the task's order: while
the memory holds fewer than K samples (`buffer_size`, or as many as a `buffer_floats` budget for
the whole stored floats leaves after the network: an input, its label and its task id each) every
sample goes in; once it is full, a sample goes in only if its class holds fewer than K / (classes
seen), in place of a sample drawn at random (a seeded generator) from the class that holds the
most. After each task (the paper: at test time), the network is reset to the weights the run
started from (the seed's) and trained on the memory alone by a plain loop: SGD with momentum, one
warm-up epoch at lr/10, then cosine annealing with warm restarts (periods 1, 2, 4, ... epochs,
down to `min_lr`), gradient norm clipped, as the authors' code does; the loss is the scenario's,
so outputs are masked to the classes seen (class-IL) or the sample's task's classes (task-IL), in
training and at test.

Nothing is trained from the stream by gradient: the network's parameters require no gradient
outside that loop, so the task loop skips `fit` (trainable/task reads 0, as for the statistics
methods) and the loop's result is the module's parameters. The state is the memory and its
generator; the initial weights are not stored (the seed rebuilds them).

Not from the paper: cutmix (its MNIST runs use none) and the random crops of its data loader;
its test-time choice of the best epoch on the test set (here the last epoch counts); half
precision. Domain-IL is not offered: its classes recur in every task, so a class-balanced greedy
memory would keep the first task's samples only.
"""

from __future__ import annotations

import bisect
import copy
from dataclasses import dataclass
from typing import Optional

import torch
from omegaconf import DictConfig

from continual.baselines.finetune import FineTune
from continual.config.fields import at_least, in_range, positive
from continual.data.task_data import TaskData
from continual.errors import ConfigError
from continual.helpers.buffer import buffer_capacity, sample_floats
from continual.methods import register


class BalancedBuffer:
    """GDumb's greedy class-balanced sampler over tensors `x`, `y` (class) and `task`."""

    def __init__(self, size: int, seed: int = 0):
        self.size = size
        self.gen = torch.Generator().manual_seed(seed)
        self.data: dict[str, torch.Tensor] = {}
        self.classes: list[int] = []  # every class offered so far, in order of arrival

    def __len__(self) -> int:
        return len(self.data["y"]) if self.data else 0

    def add(self, x: torch.Tensor, y: torch.Tensor, task: torch.Tensor) -> None:
        """Offer samples one at a time, in order."""
        # a resumed run's memory comes from a checkpoint on the CPU; the samples on the training device
        old = {k: v.to(x.device) for k, v in self.data.items()} or {"x": x[:0], "y": y[:0], "task": task[:0]}
        labels = [*old["y"].tolist(), *y.tolist()]  # of the pool: stored samples, then offered ones
        rows = list(range(len(old["y"])))  # the memory: indices into the pool
        slots: dict[int, list[int]] = {}  # class -> its positions in `rows`, ascending (so the
        # result does not depend on how the samples were split into calls)
        for position, row in enumerate(rows):
            slots.setdefault(labels[row], []).append(position)
        seen = set(self.classes)
        for row in range(len(rows), len(labels)):
            c = labels[row]
            if c not in seen:
                seen.add(c)
                self.classes.append(c)
            if len(rows) < self.size:
                slots.setdefault(c, []).append(len(rows))
                rows.append(row)
            elif len(slots.get(c, ())) < self.size / len(self.classes):
                largest = max(slots, key=lambda k: (len(slots[k]), -k))  # ties: the smallest class id
                position = slots[largest].pop(int(torch.randint(len(slots[largest]), (1,), generator=self.gen)))
                rows[position] = row
                bisect.insort(slots.setdefault(c, []), position)
        index = torch.tensor(rows, dtype=torch.long, device=y.device)
        self.data = {k: torch.cat([old[k], v])[index] for k, v in (("x", x), ("y", y), ("task", task))}

    def state_dict(self) -> dict:
        return {"data": self.data, "classes": list(self.classes), "generator": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.data, self.classes = dict(state["data"]), list(state["classes"])
        self.gen.set_state(state["generator"].cpu())


@register("gdumb")
class GDumb(FineTune):
    scenarios = ("class", "task")
    scenarios_why = "domain-IL's classes recur in every task, so its class-balanced greedy memory would keep the first task's samples only"

    @dataclass
    class Config:
        buffer_size: int = positive(1000, integer=True)  # K: samples in the memory, balanced over the classes seen
        buffer_floats: Optional[float] = positive(None, note="or null to size the memory by buffer_size")  # budget for the whole stored_floats (network + input, label and task id per sample); overrides buffer_size
        epochs: int = positive(128, integer=True)  # passes over the memory per retraining (the authors' MNIST runs: 128)
        lr: float = positive(0.05, finite=True)  # SGD's peak learning rate (their maxlr)
        min_lr: float = at_least(0, 0.0005)  # the cosine schedule's floor (their minlr)
        batch_size: int = positive(16, integer=True)  # retraining batch (theirs: 16)
        momentum: float = in_range(0, 1, 0.9, hi_open=True)  # SGD momentum (theirs: 0.9)
        weight_decay: float = at_least(0, 1e-6)  # SGD weight decay (theirs: 1e-6)
        clip: float = positive(10.0)  # gradient norm clipped to this (theirs: 10)

    @classmethod
    def check(cls, hp: DictConfig, cfg: DictConfig) -> None:
        if hp.min_lr > hp.lr:
            raise ConfigError(f"gdumb.min_lr={hp.min_lr:g} is above gdumb.lr={hp.lr:g}: the schedule falls from lr to min_lr; "
                              f"give min_lr <= lr")

    def __init__(self, net, hp: DictConfig, seed: int = 0, **kwargs):
        super().__init__(net.requires_grad_(False), **kwargs)
        self.hp = hp
        self.buffer = BalancedBuffer(0, seed)
        self.buffer.size = buffer_capacity(self, hp, sample_floats(net, 2))  # sized once the method's other state exists
        self.initial = copy.deepcopy(net.state_dict())  # the seed's weights: every retraining starts here

    @classmethod
    def from_config(cls, net, cfg, **common):
        return cls(net, hp=cfg.gdumb, seed=cfg.seed, **common)

    def task_state(self) -> dict:
        return self.buffer.state_dict()

    def load_task_state(self, state: dict) -> None:
        self.buffer.load_state_dict(state)

    def on_task_end(self, data: TaskData) -> None:
        self.buffer.add(data.x, data.y, data.task)
        self.retrain()

    def retrain(self) -> None:
        """Train the network from its initial weights on the memory alone (the authors' schedule)."""
        hp, memory = self.hp, self.buffer.data
        self.net.load_state_dict(self.initial)
        params = list(self.net.parameters())
        opt = torch.optim.SGD(params, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=1, T_mult=2, eta_min=hp.min_lr)
        self.net.requires_grad_(True)
        with torch.enable_grad():
            for epoch in range(hp.epochs):
                if epoch < 2:  # a warm-up epoch at lr/10, then the peak
                    for group in opt.param_groups:
                        group["lr"] = hp.lr * (0.1 if epoch == 0 else 1.0)
                else:
                    schedule.step()
                order = torch.randperm(len(memory["y"]), generator=self.buffer.gen).to(memory["y"].device)
                for idx in order.split(hp.batch_size):
                    loss = self.per_sample_loss({k: v[idx] for k, v in memory.items()}).mean()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(params, hp.clip)
                    opt.step()
        self.net.requires_grad_(False)
