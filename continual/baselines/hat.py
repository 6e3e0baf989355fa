"""Hard attention to the task (Serra et al. 2018): a learned, almost binary gate per task on
every hidden unit.

Gate `a_t = sigmoid(s * e_t)` with the slope s annealed from 1/smax to smax over each task's
steps (smax at test). Gradients of weights that past tasks' gates use are scaled by
`1 - min(a_<t[out], a_<t[in])`, so those weights stay put; a regularizer `c * sum a_t (1 - a_<t)
/ sum (1 - a_<t)` keeps the new gates sparse. The gate is chosen by the task id, so HAT is a
task-incremental method (scenario=task). The gates past tasks use (`used`) are state.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn

from continual.baselines.finetune import FineTune
from continual.config.fields import at_least, positive
from continual.data.task_data import TaskData
from continual.methods import register

EMBED_CLAMP = 6.0  # |e| bound, as in the paper's code
SLOPE_CLAMP = 50.0  # bound on s * e inside the gradient compensation's cosh


@register("hat")
class HAT(FineTune):
    scenarios = ("task",)
    scenarios_why = "it picks each task's gates by the task id given at test"

    @dataclass
    class Config:
        smax: float = positive(400.0)  # final slope of the gate sigmoid
        c: float = at_least(0, 0.75)  # mask-sparsity regularizer weight
        clip: float = positive(10000.0)  # gradient-norm clip (HAT's default)

    def __init__(self, net, hp: DictConfig, **kwargs):
        super().__init__(net, **kwargs)
        self.hp = hp
        self.embed = nn.ParameterList(nn.Parameter(torch.randn(self.n_tasks, w)) for w in net.widths)
        self.used: list[torch.Tensor] | None = None  # per layer: max of past tasks' gates
        self.s = hp.smax

    def task_state(self) -> dict:
        return {"used": self.used}

    def load_task_state(self, state: dict) -> None:
        self.used = state["used"]

    def gates(self, task: torch.Tensor, s: float) -> list[torch.Tensor]:
        return [torch.sigmoid(s * e[task]) for e in self.embed]

    def logits(self, batch: dict) -> torch.Tensor:
        x = batch["x"]
        for layer, gate in zip(self.net.hidden, self.gates(batch["task"], self.s if self.training else self.hp.smax)):
            x = self.net.act(layer(x)) * gate
        return self.net.head(x)

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        smax, total = self.hp.smax, max(self.trainer.estimated_stepping_batches, 2)
        self.s = 1 / smax + (smax - 1 / smax) * min(self.global_step / (total - 1), 1.0)

    def training_step(self, batch: dict, batch_idx: int):
        loss = super().training_step(batch, batch_idx)
        gates = self.gates(torch.tensor([self.current_task], device=self.device), self.s)
        free = [1 - u for u in self.used] if self.used is not None else [torch.ones_like(g) for g in gates]
        reg = sum((g * f).sum() for g, f in zip(gates, free)) / sum(f.sum() for f in free).clamp(min=1)
        return loss + self.hp.c * reg

    def on_before_optimizer_step(self, optimizer) -> None:
        if self.used is not None:
            for l, layer in enumerate(self.net.hidden):
                out = self.used[l][0]
                inp = self.used[l - 1][0] if l > 0 else torch.ones(layer.in_features, device=out.device)
                layer.weight.grad *= 1 - torch.minimum(out[:, None], inp[None, :])
                layer.bias.grad *= 1 - out
        for e in self.embed:  # undo the slope's effect on the embeddings' gradient
            num = torch.cosh((self.s * e.detach()).clamp(-SLOPE_CLAMP, SLOPE_CLAMP)) + 1
            e.grad *= self.hp.smax / self.s * num / (torch.cosh(e.detach()) + 1)
        torch.nn.utils.clip_grad_norm_(self.parameters(), self.hp.clip)

    def after_optimizer_step(self) -> None:
        with torch.no_grad():
            for e in self.embed:
                e.clamp_(-EMBED_CLAMP, EMBED_CLAMP)

    def on_task_end(self, data: TaskData) -> None:
        with torch.no_grad():
            gates = self.gates(torch.tensor([self.current_task], device=self.device), self.hp.smax)
        self.used = gates if self.used is None else [torch.maximum(u, g) for u, g in zip(self.used, gates)]
