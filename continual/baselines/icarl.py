"""iCaRL (Rebuffi et al., CVPR 2017): herded exemplars, distillation, nearest mean of exemplars.

A memory of K exemplars in total (`buffer_size`, or as many as a `buffer_floats` budget for the
whole stored floats leaves after the two networks and class means: an input and its label each)
keeps m = K // (classes seen) per class. After each task (the paper's Algorithm 2) the old
classes' sets are cut to their first m (Algorithm 5) and each new class gets m exemplars chosen by
herding (Algorithm 4) on the L2-normalised features of the network's last hidden layer: the k-th
exemplar is the sample that brings the average of the chosen ones closest to the class's mean
feature. A set is kept in its herding order, so its first m rows are the herding choice for m. The
class means of the exemplars' normalised features (re-normalised, as the paper does with every
average) are recomputed with the new network, and the network is copied as the old network of the
next task.

Training (Algorithm 3): binary cross-entropy on sigmoid outputs over the classes seen so far;
the new classes' targets are the labels, the old classes' the old network's sigmoid outputs (on
every sample, exemplars included). The paper trains on the task's data plus the exemplars; the
task loop serves the task's data alone, so each step adds a batch of exemplars drawn with a
seeded generator (identical on every DDP rank), by default in the share exemplars have in that
union: s = data.batch_size x exemplars / the task's training samples a step on average, floor(s)
or floor(s) + 1 drawn from the same generator (200 exemplars against 12,000 samples at batch 10:
one every sixth step, as in the union). The loss is the mean over both. Classification: the
nearest class mean of exemplars (Algorithm 1), among the classes with exemplars that the
scenario allows (class-IL: every class seen; task-IL: the sample's task's).

Not from the paper: the flipped images it adds to the class means (MNIST-like inputs have no
natural flip), and Algorithm 4's argmin over every sample, chosen ones included (here a sample
is chosen once: a set holds distinct samples, as public implementations do). The herding target
is the plain mean of the normalised features, as Algorithm 4 writes it. Domain-IL is not offered: its tasks share their
outputs, so there are no new classes to herd for.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional

import torch
from omegaconf import DictConfig
from torch.nn import functional as F

from continual.baselines.finetune import FineTune
from continual.config.fields import positive
from continual.data.task_data import TaskData
from continual.helpers.buffer import buffer_capacity, sample_floats
from continual.helpers.statistics import class_sums, sq_dist
from continual.methods import register


def herding_order(features: torch.Tensor, m: int) -> torch.Tensor:
    """The first `m` indices (fewer if there are fewer rows) chosen by Algorithm 4 on normalised
    `features` [N, d]: each the row whose addition brings the average of the chosen rows closest
    to the mean of all rows; a row is chosen once."""
    mu = features.mean(0)
    running = torch.zeros_like(mu)
    sq = (features * features).sum(1)
    order = []
    for k in range(1, min(m, len(features)) + 1):
        # k |mu - (running + f)/k|^2 less what is the same for every f (a sum of products: a
        # matrix-vector product on the CPU rounds by memory alignment, and may flip a near tie)
        cost = sq / k - 2 * (features * (mu - running / k)).sum(1)
        i = int(cost.argmin())
        order.append(i)
        sq[i] = float("inf")  # chosen once
        running = running + features[i]
    return torch.tensor(order, dtype=torch.long, device=features.device)


def class_means(features: torch.Tensor, out: torch.Tensor, n_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per output: the re-normalised mean of its rows of normalised `features`, and whether it
    has rows ([n_out, d] and [n_out] bool)."""
    counts, sums = class_sums(features, out, n_out)
    return F.normalize(sums / counts.clamp(min=1)[:, None], dim=1), counts > 0


@register("icarl")
class ICaRL(FineTune):
    scenarios = ("class", "task")
    scenarios_why = "domain-IL's tasks share their outputs, so no task brings new classes to herd exemplars for"
    all_outputs_refused = "its binary cross-entropy runs over the classes seen, as in the paper and Mammoth's iCaRL"

    @dataclass
    class Config:
        buffer_size: int = positive(1000, integer=True)  # K: exemplars in total, K // classes seen per class
        buffer_floats: Optional[float] = positive(None, note="or null to size the memory by buffer_size")  # budget for the whole stored_floats (networks, means + an input and its label per exemplar); overrides buffer_size
        batch_size: Optional[int] = positive(None, integer=True, note="or null for the exemplars' share of the union")  # exemplars replayed per step; None: data.batch_size x exemplars / task's training samples on average

    def __init__(self, net, hp: DictConfig, batch_size: int, seed: int = 0, **kwargs):
        super().__init__(net, **kwargs)
        self.hp = hp
        self.data_batch = batch_size
        self.replay_share = 0.0  # exemplars per step on average, set per task in on_task_start
        self.gen = torch.Generator().manual_seed(seed)
        # exemplars: each class's rows together, in herding order
        self.exemplars = {"x": torch.zeros(0, net.n_in), "y": torch.zeros(0, dtype=torch.long)}
        self.teacher = copy.deepcopy(net).requires_grad_(False).eval()
        self.register_buffer("has_teacher", torch.tensor(False))
        dim = [net.n_in, *net.widths][-1]
        self.register_buffer("means", torch.zeros(self.labels.n_out, dim))
        self.register_buffer("has_mean", torch.zeros(self.labels.n_out, dtype=torch.bool))
        self.capacity = buffer_capacity(self, hp, sample_floats(net, 1))  # what the budget leaves after the state above

    @classmethod
    def from_config(cls, net, cfg, **common):
        return cls(net, hp=cfg.icarl, batch_size=cfg.data.batch_size, seed=cfg.seed, **common)

    def task_state(self) -> dict:
        return {"exemplars": self.exemplars, "generator": self.gen.get_state()}

    def load_task_state(self, state: dict) -> None:
        self.exemplars = dict(state["exemplars"])
        self.gen.set_state(state["generator"].cpu())

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised last-hidden-layer features of the network being trained."""
        return F.normalize(torch.cat([self.net.features(chunk) for chunk in x.split(4096)]), dim=1)

    def logits(self, batch: dict) -> torch.Tensor:
        """Nearest mean of exemplars: what the method predicts with (training uses `self.net`)."""
        # minus the squared distance to each class mean; -inf for classes without exemplars
        return -sq_dist(self.features(batch["x"]), self.means).masked_fill(~self.has_mean, float("inf"))

    def targets(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """[N, n_out]: the labels one-hot on the new task's classes, the old network's sigmoid
        outputs on the classes of earlier tasks."""
        onehot = F.one_hot(self.labels.targets(y), self.labels.n_out).float()
        t = self.current_task
        if not (self.has_teacher and t > 0):
            return onehot
        with torch.no_grad():
            old = torch.sigmoid(self.teacher(x).float())
        return torch.where(self.labels.upto[t - 1], old, onehot)

    def per_sample_bce(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """[N] binary cross-entropy summed over the classes seen so far."""
        seen = self.labels.upto[self.current_task]
        bce = F.binary_cross_entropy_with_logits(self.net(x).float(), self.targets(x, y), reduction="none")
        return bce[:, seen].sum(1)

    def training_step(self, batch: dict, batch_idx: int):
        loss = self.batch_mean(self.per_sample_bce(batch["x"], batch["y"]), batch)
        r = self.replay_count()
        if r:
            # the same draws on every rank: DDP's gradient average keeps the replayed term whole
            idx = torch.randint(len(self.exemplars["y"]), (r,), generator=self.gen).to(self.device)
            replayed = self.per_sample_bce(self.exemplars["x"][idx], self.exemplars["y"][idx]).mean()
            g = batch["global_size"]
            loss = (g * loss + r * replayed) / (g + r)  # the mean over the union of both batches
        self.log_train_step({"train/loss": loss}, batch_size=len(batch["y"]))
        return loss

    def replay_count(self) -> int:
        """This step's number of exemplars: the share's whole part, plus one with the probability
        of its fractional part (a draw of the seeded generator, so resumed and DDP runs agree)."""
        whole = int(self.replay_share)
        if self.replay_share == whole:
            return whole
        return whole + int(torch.rand((), generator=self.gen) < self.replay_share - whole)

    def on_task_start(self, data: TaskData) -> None:
        stored = len(self.exemplars["y"])
        self.replay_share = 0.0 if not stored else float(self.hp.batch_size or self.data_batch * stored / len(data))

    def on_task_end(self, data: TaskData) -> None:
        t = self.current_task
        per_class = self.capacity // int(self.labels.upto[t].sum())
        x, y = self.exemplars["x"].to(data.x.device), self.exemplars["y"].to(data.y.device)
        keep = [(x[y == c][:per_class], y[y == c][:per_class]) for c in y.unique().tolist()]
        for c in data.y.unique().tolist():
            xc = data.x[data.y == c]
            order = herding_order(self.features(xc), per_class)
            keep.append((xc[order], data.y.new_full((len(order),), c)))
        self.exemplars = {"x": torch.cat([k[0] for k in keep]), "y": torch.cat([k[1] for k in keep])}
        means, has = class_means(self.features(self.exemplars["x"]), self.labels.targets(self.exemplars["y"]), self.labels.n_out)
        self.means.copy_(means)
        self.has_mean.copy_(has)
        self.teacher.load_state_dict(self.net.state_dict())
        self.has_teacher.fill_(True)
