"""Averaged GEM (Chaudhry et al., ICLR 2019, "Efficient Lifelong Learning with A-GEM").

Each step's gradient g (of the current batch's loss) is kept from increasing the loss on past
tasks: with g_ref the gradient of the loss on `ref_batch_size` distinct samples drawn from the
episodic memory, a g with g . g_ref < 0 is replaced by its projection
g - (g . g_ref / g_ref . g_ref) g_ref; otherwise it is left as it is.

The memory is `er`'s: the reservoir buffer to which each task's training set is offered at the
task's end (`agem.memory=reservoir`: the whole buffer is in use from the first task on, and `agem`
differs from `er` only in how the memory is used). `agem.memory=per_task` keeps their code's
memory instead (Mammoth's agem.py): `buffer_size // n_tasks` samples of each finished task, drawn
at its end, so the memory fills only by the last task. Memory samples are scored in their own
task's label space, as `er` scores them.

g_ref is computed in `training_step` (`torch.autograd.grad`, leaving `.grad` alone) and the
projection applied in `on_before_optimizer_step`, where `.grad` holds g: the gradient of the whole
global batch under DDP (after its all-reduce) and unscaled under mixed precision. Every rank draws
the same memory batch from one seeded generator, so g_ref, and the projected g, are the same on
every rank and equal to one process's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from omegaconf import DictConfig

from continual.baselines.finetune import FineTune
from continual.config.fields import choice, positive
from continual.data.task_data import TaskData
from continual.errors import ConfigError
from continual.helpers.buffer import ReservoirBuffer, buffer_capacity, sample_floats
from continual.methods import register


def project(g: torch.Tensor, g_ref: torch.Tensor) -> torch.Tensor:
    """A-GEM's rule on flat gradients: g if g . g_ref >= 0, else g without its component
    against g_ref. Branch-free, so a GPU step never waits to read the sign. The dot products are
    sums of products, not `g @ g_ref`: MKL's CPU dot rounds by the vectors' memory alignment, and
    a resumed run must equal the uninterrupted one bit for bit."""
    dot = (g * g_ref).sum().clamp(max=0)  # 0 leaves g as it is (also for a zero g_ref)
    return g - dot / (g_ref * g_ref).sum().clamp(min=torch.finfo(g.dtype).tiny) * g_ref


@register("agem")
class AGEM(FineTune):
    @dataclass
    class Config:
        buffer_size: int = positive(1000, integer=True)  # episodic memory, in samples (filled as agem.memory says)
        buffer_floats: Optional[float] = positive(None, finite=True, note="or null for buffer_size")  # budget for the whole stored_floats (network + x, label, task id per sample); set: decides the size
        ref_batch_size: Optional[int] = positive(None, integer=True, note="or null for data.batch_size")  # memory samples of g_ref per step; None: data.batch_size
        memory: str = choice("reservoir", ("reservoir", "per_task"))  # reservoir over all past samples, or buffer_size // n_tasks slots per finished task (their code)

    def __init__(self, net, hp: DictConfig, batch_size: int, seed: int = 0, **kwargs):
        super().__init__(net, **kwargs)
        self.hp = hp
        self.ref_batch = hp.ref_batch_size or batch_size
        # a sample keeps its input, label and task id
        self.buffer = ReservoirBuffer(0, seed)
        self.buffer.size = buffer_capacity(self, hp, sample_floats(net, 1, 1))  # sized once the method's other state exists
        if hp.memory == "per_task" and self.buffer.size < self.n_tasks:
            fix = ("raise agem.buffer_floats" if hp.buffer_floats is not None else f"set agem.buffer_size to at least {self.n_tasks}")
            raise ConfigError(f"agem.memory=per_task gives each of the {self.n_tasks} tasks {self.buffer.size} // {self.n_tasks} = 0 "
                              f"samples; {fix}, or agem.memory=reservoir")
        self.ref_grad: list[torch.Tensor] | None = None  # this step's g_ref, per parameter

    @classmethod
    def from_config(cls, net, cfg, **common):
        return cls(net, hp=cfg.agem, batch_size=cfg.data.batch_size, seed=cfg.seed, **common)

    def task_state(self) -> dict:
        return self.buffer.state_dict()

    def load_task_state(self, state: dict) -> None:
        self.buffer.load_state_dict(state)

    def trained(self) -> list[torch.nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def training_step(self, batch: dict, batch_idx: int):
        if len(self.buffer):
            past = self.buffer.sample(self.ref_batch, replace=False)
            self.ref_grad = torch.autograd.grad(self.per_sample_loss(past).mean(), self.trained())
        return super().training_step(batch, batch_idx)

    def on_before_optimizer_step(self, optimizer) -> None:
        if self.ref_grad is None:
            return
        params = self.trained()
        g = torch.cat([p.grad.reshape(-1) for p in params])
        g_ref = torch.cat([r.reshape(-1) for r in self.ref_grad])
        projected = project(g, g_ref.to(g.dtype))
        for p, new in zip(params, projected.split([p.numel() for p in params])):
            p.grad.copy_(new.view_as(p))
        self.ref_grad = None

    def on_task_end(self, data: TaskData) -> None:
        if self.hp.memory == "per_task":  # the reservoir then never overflows: the draws fill it in turn
            pick = torch.randperm(len(data), generator=self.buffer.gen)[: self.buffer.size // self.n_tasks].to(data.y.device)
            self.buffer.add(x=data.x[pick], y=data.y[pick], task=data.task[pick])  # TaskData keeps its tensors on one device
        else:
            self.buffer.add(x=data.x, y=data.y, task=data.task)
