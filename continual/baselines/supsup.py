"""SupSup, Supermasks in Superposition (Wortsman et al. 2020, arXiv:2006.14769).

The network stays as it was drawn; each task learns only a binary supermask over its
connections (the weights of every layer, the output layer's too), so no task can disturb
another. As in their code (RAIVNLab/supsup): the weights are a signed constant,
`sign(w) * sqrt(2 / fan_in)`, with no biases (`init=signed_constant`, kept as the signs with the
constants applied to the logits, see `signed_constant_`; `init=backbone` keeps the `backbone.*`
network as built, biases included, unmasked); the scores are drawn like PyTorch's
default Linear weights and trained with the straight-through gradient; a task's mask is each
layer's top `sparsity` fraction of |scores| (`mask=topk`, edge-popup, their GG runs) or the
connections with a score >= 0 (`mask=threshold`, what their MNIST runs and notebook use).

Which mask a sample gets: the given task's in task-IL; otherwise the task is inferred in one
shot, per sample: the network is run with the superposition `sum_i alpha_i M_i` of the masks of
the tasks learned so far at `alpha_i = 1/k`, and the task is the argmax of `-dH/dalpha_i`, H the
entropy of the sample's output over the whole head (their `se_oneshot_entropy_minimization`,
with per-sample instead of per-batch alphas so a batch's composition cannot change a sample's
task). The inferred task is reported in task-IL too.

As in their MNIST runs, every task uses the same outputs: output j of a mask is the j-th class
of its task (mapped to the global class by `WithinTaskOutputs`), each mask is trained with
cross-entropy over the whole head, and the outputs past a task's classes are their
"superfluous neurons" (`outputs` sets the head's width, their `--output-size`). The learned
masks are the same in every scenario; only the test differs.

Memory: row t of a [T, connections] bool buffer is task t's mask, its random initial one until
the task is learned (so an unlearned task is tested as the untrained supermask it starts from);
the one float copy is the scores of the task being learned, a float64 parameter redrawn at each
task's start. `stored_floats` therefore counts T x connections / 32 + connections.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from omegaconf import DictConfig
from torch import nn
from torch.nn import functional as F

from continual.config.fields import choice, in_range
from continual.data.task_data import TaskData
from continual.errors import ConfigError
from continual.helpers.within_task import WithinTaskOutputs
from continual.methods import register
from continual.metrics.protocol import Probe
from continual.models.backbones import freeze
from continual.models.continual_module import ContinualModule
from continual.models.mlp import MLP
from continual.models.straight_through import straight_through


def top_k(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """The `keep` largest entries set to 1, the rest to 0 (exactly `keep`, ties broken by index)."""
    mask = torch.zeros_like(scores)
    mask.view(-1)[scores.detach().flatten().topk(keep).indices] = 1.0
    return mask


def masked_forward(net: MLP, x: torch.Tensor, masks: list[torch.Tensor], scale: float) -> torch.Tensor:
    """Logits of the MLP with each layer's weight times its mask ([out, in] per layer), in float64,
    multiplied by `scale`."""
    layers = [*net.hidden, net.head]
    x = x.double()
    for i, (layer, mask) in enumerate(zip(layers, masks)):
        x = F.linear(x, layer.weight.double() * mask, layer.bias.double())
        x = net.act(x) if i < len(layers) - 1 else x
    return x * scale


def entropy_gradients(net: MLP, x: torch.Tensor, masks: list[torch.Tensor], scale: float) -> torch.Tensor:
    """[B, k] dH_b / dalpha_{b,i} at alpha = 1/k: the gradient of each sample's output entropy
    with respect to its own weights of the k superposed masks (`masks`: [k, out, in] per layer;
    logits as `masked_forward`'s).

    A layer's output with per-sample alphas is `sum_i alpha_bi (x_b @ (W * M_i)^T)`; samples are
    independent, so one backward pass of the summed entropy gives every sample's gradient. Grad is
    enabled locally (test passes run under inference mode)."""
    with torch.inference_mode(False), torch.enable_grad():
        h = x.to(torch.float64, copy=True)  # made outside inference mode, so autograd may save it
        k = masks[0].shape[0]
        alpha = torch.full((len(h), k), 1.0 / k, dtype=h.dtype, device=h.device, requires_grad=True)
        layers = [*net.hidden, net.head]
        for i, (layer, mask) in enumerate(zip(layers, masks)):
            per_mask = torch.einsum("bm,kjm->bkj", h, layer.weight.double() * mask)
            h = torch.einsum("bk,bkj->bj", alpha, per_mask) + layer.bias.double()
            h = net.act(h) if i < len(layers) - 1 else h
        h = h * scale
        entropy = -(h.softmax(1) * h.log_softmax(1)).sum(1)
        (grad,) = torch.autograd.grad(entropy.sum(), alpha)
    return grad


def signed_constant_(net: MLP) -> float:
    """SupSup's frozen weights, `sign(w) * sqrt(2 / fan_in)` with no biases, stored as the signs;
    returns the product of the layers' constants, which scales the logits instead.

    The same network: ReLU is positively homogeneous, so each layer's constant can move to the
    output. With +-1 weights and inputs of a few significant bits (pixels), the hidden sums are
    exact in float64, so a hidden unit that is exactly 0 stays 0 whatever order a batch's sums are
    taken in (with the constants inside they would land on either side of 0, switching its ReLU
    gradient, and a batch split over DDP processes would then learn another mask)."""
    scale = 1.0
    with torch.no_grad():
        for layer in [*net.hidden, net.head]:
            layer.weight.copy_(layer.weight.sign())
            layer.bias.zero_()
            scale *= math.sqrt(2.0 / layer.weight.shape[1])
    return scale


@register("supsup")
class SupSup(ContinualModule):
    eval_outputs = ("task_given", "task", "probe")
    all_outputs_refused = "its outputs are one task's within-task classes, not one per class"

    @dataclass
    class Config:
        # topk: each layer's top `sparsity` fraction of |scores| (edge-popup, their MultitaskMaskConv);
        # threshold: the connections whose score is >= 0 (their FastMultitaskMaskConv, used in their MNIST runs)
        mask: str = choice("topk", ("topk", "threshold"))
        sparsity: float = in_range(0, 1, 0.5, lo_open=True, note="the fraction of connections a mask keeps")  # topk: the fraction of each layer's connections a mask keeps (their `--sparsity`)
        # signed_constant: SupSup's frozen weights (their MNIST choice); backbone: the backbone.* network as built
        init: str = choice("signed_constant", ("signed_constant", "backbone"))
        # width of the output layer (their `--output-size`; outputs past a task's classes are their
        # superfluous neurons); None: the backbone's head
        outputs: Optional[int] = None

    @classmethod
    def check(cls, hp: DictConfig, cfg: DictConfig) -> None:
        if hp.init == "signed_constant" and cfg.backbone.activation != "relu":
            raise ConfigError(
                f"supsup.init=signed_constant needs backbone.activation=relu (it moves the layers' constants to the "
                f"output), not {cfg.backbone.activation}; use supsup.init=backbone"
            )

    def __init__(self, net: MLP, hp: DictConfig, **kwargs):
        super().__init__(**kwargs)
        self.hp = hp
        self.within_task = WithinTaskOutputs(kwargs["task_classes"], kwargs["n_classes"], kwargs["scenario"])
        if hp.outputs is not None:
            if hp.outputs < self.within_task.n_v:
                raise ConfigError(f"supsup.outputs={hp.outputs} is fewer than the {self.within_task.n_v} classes of the largest task")
            net.head = nn.Linear(net.widths[-1], hp.outputs)
        self.scale = signed_constant_(net) if hp.init == "signed_constant" else 1.0  # logits are multiplied by it
        self.net = freeze(net)
        self.shapes = [tuple(layer.weight.shape) for layer in [*net.hidden, net.head]]
        self.sizes = [a * b for a, b in self.shapes]
        self.keep = [max(1, round(hp.sparsity * n)) for n in self.sizes]
        self.seed = int(torch.randint(2**31, ()))  # each task's initial scores are drawn from seed + task
        # the task being learned, all layers flattened; float64 like the forward pass, so that the
        # rounding of a batch's gradient sum (which differs with how DDP splits it) stays far below
        # the gaps between scores that decide the mask
        self.scores = nn.Parameter(self.initial_scores(0))
        masks = torch.stack([self.binarize(self.initial_scores(t)) for t in range(self.n_tasks)]).bool()
        self.register_buffer("masks", masks)  # [T, connections]: row t is task t's mask

    # -- masks -----------------------------------------------------------------------------
    def initial_scores(self, t: int) -> torch.Tensor:
        """Task t's starting scores, flat: uniform(+-1/sqrt(fan_in)) per layer (their
        `kaiming_uniform_(a=sqrt(5))`), from a generator of its own so any task's can be redrawn."""
        gen = torch.Generator().manual_seed(self.seed + t)
        draws = [torch.rand(n, generator=gen, dtype=torch.float64) for n in self.sizes]
        return torch.cat([(u * 2 - 1) / math.sqrt(shape[1]) for u, shape in zip(draws, self.shapes)])

    def binarize(self, scores: torch.Tensor) -> torch.Tensor:
        """Flat scores -> flat binary mask, with the straight-through gradient (through |scores|
        for topk, as edge-popup)."""
        if self.hp.mask == "threshold":
            return straight_through(scores, (scores >= 0).to(scores.dtype))
        return torch.cat([straight_through(s.abs(), top_k(s.abs(), k)) for s, k in zip(scores.split(self.sizes), self.keep)])

    def flat_mask(self, t: int) -> torch.Tensor:
        """Task t's mask (float64): from the scores while t is being learned, else its bits."""
        return self.binarize(self.scores) if t == self.current_task else self.masks[t].double()

    def layer_masks(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Per-layer views of flat masks ([..., connections] -> [..., out, in] per layer)."""
        return [m.unflatten(-1, shape) for m, shape in zip(flat.split(self.sizes, -1), self.shapes)]

    def on_task_start(self, data: TaskData) -> None:
        with torch.no_grad():
            self.scores.copy_(self.initial_scores(self.current_task))

    def on_task_end(self, data: TaskData) -> None:
        with torch.no_grad():
            self.masks[self.current_task] = self.binarize(self.scores).bool()

    def task_state(self) -> dict:
        return {"seed": self.seed}

    def load_task_state(self, state: dict) -> None:
        self.seed = state["seed"]

    def backbone(self) -> nn.Module:
        return self.net

    def frozen_modules(self) -> dict[str, nn.Module]:
        return {"backbone": self.net}

    # -- forward passes ------------------------------------------------------------------------
    def task_logits(self, x: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """Each sample through the network under its task's mask (one pass per task present)."""
        out = x.new_empty(len(x), self.net.head.out_features, dtype=torch.float64)
        for t, rows in self.task_groups(task):
            out[rows] = masked_forward(self.net, x[rows], self.layer_masks(self.flat_mask(t)), self.scale).to(out.dtype)
        return out

    def infer_task(self, x: torch.Tensor) -> torch.Tensor:
        """[B] the one-shot inferred task among the tasks learned so far (0..current)."""
        k = self.current_task + 1
        if k == 1:
            return torch.zeros(len(x), dtype=torch.long, device=x.device)
        masks = self.layer_masks(torch.stack([self.flat_mask(t).detach() for t in range(k)]))
        chunk = max(1, 2**24 // (k * max(self.net.widths + [self.net.head.out_features])))  # bounds [chunk, k, width]
        return torch.cat([(-entropy_gradients(self.net, part, masks, self.scale)).argmax(1) for part in x.split(chunk)])

    def _predict(self, x: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """The best of each sample's task's classes (output j is its task's j-th class)."""
        return self.within_task.label(self.within_task.mask_padding(self.task_logits(x, task), task), task)

    def predict(self, batch: dict) -> torch.Tensor:
        task = batch["task"] if self.labels.scenario == "task" else self.infer_task(batch["x"])
        return self._predict(batch["x"], task)

    def evaluate(self, batch: dict) -> dict:
        """The prediction with the given task (task-IL) or the inferred one; the inferred task is
        reported either way."""
        inferred = self.infer_task(batch["x"])
        task = batch["task"] if self.labels.scenario == "task" else inferred
        probe = batch["probe"].nonzero().squeeze(1)
        out = {
            "pred": self._predict(batch["x"], task),
            "target": self.labels.targets(batch["y"]),
            "task": inferred,
            "probe": Probe(self.masks[task[probe]].float(), task[probe]),
        }
        if self.labels.scenario == "class":  # under each sample's true task's mask
            out["task_given"] = self._predict(batch["x"], batch["task"])
        return out

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """Cross-entropy over the whole head, the target being the class's output in its task."""
        logits = masked_forward(self.net, batch["x"], self.layer_masks(self.binarize(self.scores)), self.scale)
        loss = self.batch_mean(F.cross_entropy(logits, self.within_task.targets(batch["y"]), reduction="none"), batch)
        self.log_train_step({"train/loss": loss}, batch_size=len(logits), sync_dist=True)
        return loss
