"""`ClassStatistics`: the base of the methods that keep class statistics, not samples or weights
(`ncm`, `prototypes`, `slda`, `fecam`, `ranpac`).

Nothing is trained by gradient: such a method has no trainable parameter, so the task loop skips
`fit`, and it learns in `on_task_end` from the task's whole training data (every DDP rank gets
all of it, so every rank computes the same statistics). Statistics are kept per output of the
scenario's target space (`LabelSpace.targets`): per class in task- and class-IL, per within-task
class pooled over the tasks in domain-IL. They are persistent buffers, so every checkpoint holds
them. `features=hidden` computes them on the frozen backbone's last hidden layer (the backbone is
not the method's memory); `features=input` on the raw inputs, without keeping the network.
Statistics are float64: the shrunk covariance of `slda` is ill-conditioned in float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn
from torch.nn import functional as F

from continual.config.schema import choice
from continual.data.task_data import TaskData
from continual.models.backbones import freeze
from continual.models.continual_module import ContinualModule
from continual.models.mlp import MLP


def sq_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[len(a), len(b)] squared Euclidean distances, without the [len(a), len(b), d] difference tensor."""
    return ((a * a).sum(1, keepdim=True) - 2 * a @ b.T + (b * b).sum(1)).clamp(min=0)


def class_sums(z: torch.Tensor, out: torch.Tensor, n_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per output: the number of samples and the sum of their features (a one-hot product, which
    unlike `index_add_` is deterministic on GPUs)."""
    onehot = F.one_hot(out, n_out).to(z.dtype)
    return onehot.sum(0), onehot.T @ z


class ClassStatistics(ContinualModule):
    all_outputs_refused = "it trains no loss (it keeps class statistics)"

    @dataclass
    class Config:
        features: str = choice("input", ("input", "hidden"))  # raw inputs, or the frozen backbone's last hidden layer

    def __init__(self, net: MLP, hp: DictConfig, **kwargs):
        super().__init__(**kwargs)
        self.hp = hp
        self.net = freeze(net) if hp.features == "hidden" else None
        self.dim = [net.n_in, *net.widths][-1] if self.net is not None else net.n_in

    def backbone(self) -> nn.Module | None:
        return self.net

    def frozen_modules(self) -> dict[str, nn.Module]:
        return {"backbone": self.net} if self.net is not None else {}

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return (self.net.features(x) if self.net is not None else x).double()

    def logits(self, batch: dict) -> torch.Tensor:
        return self.scores(self.embed(batch["x"])).masked_fill(~self.seen(), float("-inf"))

    def on_task_end(self, data: TaskData) -> None:
        self.learn(self.embed(data.x), self.labels.targets(data.y))

    # -- what a statistics method provides -----------------------------------------------------
    def seen(self) -> torch.Tensor:
        """[n_out] bool: the outputs that have statistics (the others score -inf)."""
        raise NotImplementedError

    def scores(self, z: torch.Tensor) -> torch.Tensor:
        """[B, n_out] scores of features `z`."""
        raise NotImplementedError

    def learn(self, z: torch.Tensor, out: torch.Tensor) -> None:
        """Add a task's features `z` [N, dim] with their outputs `out` [N] to the statistics."""
        raise NotImplementedError
