"""`RouterModule`: a frozen MLP whose connections are chosen per sample by attention.

Per sample: the signature X (`Signature`) -> token attention (`TokenAttention`) -> a query q
-> scores against every task memory's slot keys (`TaskMemory`). The scores give the task
(the task of the best-scoring slot) and, within a task, the slot weights alpha that mix
the slots' gating masks and value heads. The gated frozen MLP's last hidden layer goes
through the mixed value heads to `N_v` padded within-task logits; padded slots are -inf.

What learning task t may change: task t's memory, and the token attention only while t = 0
(after that it is frozen, so no old task's queries can move). Everything of earlier tasks is
frozen and listed in `frozen_modules()`, which the FrozenBackboneGuard hashes every task.

Loss: cross-entropy on the padded logits, plus `task_loss_weight` x (cross-entropy of the
task scores against the known task id + the negative log-likelihood of the query under its
own task's keys, which keeps keys on their task's data even when only one task exists), plus
`mask_sparsity` x the mean mask density, so that a task keeps only the part of the network it
needs (without it, gates have no reason to close).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from omegaconf import DictConfig
from torch import nn

from continual.config.fields import at_least, choice, positive
from continual.data.task_data import TaskData
from continual.helpers.within_task import WithinTaskOutputs
from continual.methods import register
from continual.metrics.protocol import Padded, Probe
from continual.models.backbones import freeze
from continual.models.continual_module import ContinualModule
from continual.models.mlp import MLP
from continual.routers.parts import gating
from continual.routers.parts.attention import TokenAttention
from continual.routers.parts.memory import TaskMemory, gaussian_scores, slot_scores
from continual.routers.parts.signature import Signature


@register("router")
class RouterModule(ContinualModule):
    eval_outputs = ("task_given", "task", "probe", "padded")
    all_outputs_refused = "its outputs are one task's N_v within-task classes, not one per class"

    @dataclass
    class Config:
        tokens: str = choice("layer", ("layer", "unit", "patch"))  # how the signature X is cut into rows
        # dot is the default: on Split-MNIST class-IL it infers tasks best (docs/router.md)
        attention: str = choice("dot", ("learned", "dot", "perceiver", "local"))
        # what the mask switches; none: no gating, value heads on the ungated features (the ablation)
        gate: str = choice("units", ("units", "connections", "none"))
        # binary gates (straight-through) that start just above the threshold and are pushed to close
        # by `mask_sparsity`, so each task keeps part of the network (soft gates at sigmoid(3) never
        # closed: mask_density 1.0)
        mask: str = choice("hard", ("soft", "hard"))  # sigmoid gates, or binary with straight-through
        h: int = positive(64, integer=True)  # head size
        heads: int = positive(1, integer=True)  # attention heads
        n_v: Optional[int] = None  # padded within-task classes; None: the largest task's class count
        memories: int = positive(32, integer=True)  # memory slots per task (keys + gate + value rows)
        positional: bool = False  # learned token-position embeddings
        window: int = at_least(0, 1)  # local attention: a token sees tokens within +-window
        latents: int = positive(8, integer=True)  # perceiver: m latents
        patch_size: Optional[int] = positive(None, integer=True, note="or null for sqrt(inputs)")  # patch tokens: input features per patch (None: sqrt(n_in))
        unit_chunks: int = positive(16, integer=True)  # unit tokens: input groups per unit token
        task_loss_weight: float = at_least(0, 1.0)  # weight of the task-id cross-entropy on the attention scores
        # how a task is inferred at test: the nearest key; the most likely slot under per-slot
        # diagonal Gaussians of the task's queries (variances fit when the task ends); or, as
        # SupSup does, the task whose gated network and values predict with the lowest entropy
        task_inference: str = choice("nearest", ("nearest", "gaussian", "entropy"))
        gate_init: float = 0.2  # initial gate logit (just above 0, the hard threshold: the full network, close to closing)
        mask_sparsity: float = at_least(0, 0.2)  # weight of the mean mask density in the loss (0: gates need not close)

    def __init__(self, net: MLP, hp: DictConfig, **kwargs):
        super().__init__(**kwargs)
        task_classes = kwargs["task_classes"]
        self.hp = hp
        self.within_task = WithinTaskOutputs(task_classes, kwargs["n_classes"], kwargs["scenario"], hp.n_v, "router.n_v")
        self.task_sizes = [len(c) for c in task_classes]
        self.net = freeze(net)
        self.signature = Signature(self.net, hp.tokens, hp.patch_size, hp.unit_chunks)
        self.encoder = TokenAttention(
            hp.attention, self.signature.n_tokens, self.signature.dim, hp.h, hp.heads, hp.positional, hp.window, hp.latents,
        )
        self.query_norm = nn.LayerNorm(self.encoder.out_dim, elementwise_affine=False)
        shapes = {"units": [(sum(net.widths),)], "connections": [tuple(layer.weight.shape) for layer in net.hidden], "none": []}[hp.gate]
        self.eval_outputs = tuple(o for o in type(self).eval_outputs if hp.gate != "none" or o != "probe")
        # hard connection masks: one float copy of the gate logits, for the task being learned;
        # finished tasks keep their masks as bits (SupSup's accounting)
        bits = hp.gate == "connections" and hp.mask == "hard"
        self.memories = nn.ModuleList(
            TaskMemory(hp.memories, self.encoder.out_dim, shapes, net.widths[-1], self.within_task.n_v, hp.gate_init,
                       gaussian=hp.task_inference == "gaussian", bits=bits)
            for _ in task_classes
        )
        self.gate_scores = nn.ParameterList(
            nn.Parameter(torch.full((hp.memories, *shape), hp.gate_init)) for shape in (shapes if bits else ())
        )
        self.set_task(0)

    # -- which parameters task t may change ------------------------------------------------
    def set_task(self, t: int) -> None:
        super().set_task(t)
        for k, memory in enumerate(self.memories):
            memory.requires_grad_(k == t)
        self.encoder.requires_grad_(t == 0)

    def backbone(self) -> nn.Module:
        return self.net

    def frozen_modules(self) -> dict[str, nn.Module]:
        frozen = {"backbone": self.net}
        if self.current_task > 0:
            frozen["encoder"] = self.encoder
        frozen.update({f"memory[{k}]": self.memories[k] for k in range(self.current_task)})
        return frozen

    def _task_queries(self, data: TaskData) -> torch.Tensor:
        """Queries of up to 4096 training samples of the current task (a fixed, seeded draw)."""
        gen = torch.Generator().manual_seed(int(torch.initial_seed()) % 2**31 + self.current_task)
        with torch.no_grad():
            return self.query(data.x[torch.randperm(len(data.x), generator=gen)[:4096].to(data.x.device)])

    def on_task_start(self, data: TaskData) -> None:
        """Start task t's keys at k-means centres of its queries (once: a resumed task's
        checkpoint then restores the keys it had)."""
        memory = self.memories[self.current_task]
        if not bool(memory.initialized):
            gen = torch.Generator().manual_seed(int(torch.initial_seed()) % 2**31)
            memory.fit_keys(self._task_queries(data), gen)
        with torch.no_grad():  # a new task's gate logits start afresh (a mid-task checkpoint restores them after this)
            for g in self.gate_scores:
                g.fill_(self.hp.gate_init)

    def on_task_end(self, data: TaskData) -> None:
        """If the token attention trained in this task (task 1), its queries moved under the
        keys: refit the keys to the final queries before everything of the task is frozen. With
        Gaussian task inference, fit the slots' variances to those queries."""
        if len(self.gate_scores):
            self.memories[self.current_task].store_bits(list(self.gate_scores))
        refit = self.current_task == 0 and any(True for _ in self.encoder.parameters())
        if not (refit or self.hp.task_inference == "gaussian"):
            return
        q = self._task_queries(data)  # the encoder is final now: one query pass serves both
        if refit:
            self.memories[0].fit_keys(q, torch.Generator(), warm=True)
        if self.hp.task_inference == "gaussian":
            self.memories[self.current_task].fit_variances(q)

    # -- the forward pass --------------------------------------------------------------------
    def query(self, x: torch.Tensor) -> torch.Tensor:
        """[B, d] queries, in chunks so that a token-attention map never exceeds ~2^26 entries
        (unit tokens: a 8192-sample test batch would otherwise need a [8192, 800, 800] map)."""
        n = self.signature.n_tokens
        chunk = max(1, 2**26 // (n * n * self.hp.heads))
        return torch.cat([self.query_norm(self.encoder(self.signature(part))) for part in x.split(chunk)])

    def scores(self, q: torch.Tensor) -> torch.Tensor:
        """[B, T, S] slot attention logits for every task."""
        keys = torch.stack([m.keys for m in self.memories])  # [T, S, d]
        return slot_scores(q, keys.flatten(0, 1)).view(len(q), *keys.shape[:2])

    def task_scores(self, scores: torch.Tensor) -> torch.Tensor:
        """[B, T] each task's best slot score: the task is the task of the nearest key. (A
        log-sum-exp would favour tasks with many moderately near keys over one close key.)
        Tasks with no memory yet are -inf."""
        ready = torch.stack([m.initialized for m in self.memories])
        return scores.amax(2).masked_fill(~ready, float("-inf"))

    def inferred_task_scores(self, x: torch.Tensor, q: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """[B, T] the scores a test-time task choice uses: `task_scores` (in training always: the
        losses are defined on them); with `task_inference=gaussian` each task's most likely slot;
        with `entropy` minus the entropy of each task's within-task prediction, divided by the log
        of its class count (so tasks with more classes are not penalized), one forward per task."""
        if self.training or self.hp.task_inference == "nearest":
            return self.task_scores(scores)
        ready = torch.stack([m.initialized for m in self.memories])
        if self.hp.task_inference == "gaussian":
            dens = torch.stack([gaussian_scores(q, m.keys, m.log_var).amax(1) for m in self.memories], 1)
            return dens.masked_fill(~ready, float("-inf"))
        neg_entropy = q.new_full((len(q), len(self.memories)), float("-inf"))
        for t in ready.nonzero().flatten().tolist():
            logits, _, _ = self._task_forward(self.memories[t], x, scores[:, t].softmax(1))
            logp = logits[:, : self.task_sizes[t]].float().log_softmax(1)  # a task's classes come first
            neg_entropy[:, t] = (logp.exp() * logp).sum(1) / math.log(max(self.task_sizes[t], 2))
        return neg_entropy

    def route(self, x: torch.Tensor, task: torch.Tensor | None = None, q: torch.Tensor | None = None,
              infer: bool = True) -> dict:
        """Per-sample task (`task`, or inferred if None), padded logits and the quantities behind
        them; `q`: the queries of `x` if already computed. `infer=False` with a given `task` skips
        the inferred task scores (`task_scores` None): with entropy inference they cost a forward per task."""
        q = self.query(x) if q is None else q
        scores = self.scores(q)
        tscores = self.inferred_task_scores(x, q, scores) if infer or task is None else None
        if task is None:
            task = tscores.argmax(1)
        alpha = scores[torch.arange(len(q), device=q.device), task].softmax(1)  # [B, S]
        n_v = self.within_task.n_v
        logits, unmasked = x.new_empty(len(x), n_v), x.new_empty(len(x), n_v)
        mask = x.new_empty(len(x), sum(self.net.widths)) if self.hp.gate == "units" else None
        density = x.new_empty(len(x))
        # one task per batch in training; a few at class-IL test time. Under autocast a task's
        # outputs may be half precision: written into the batch's tensors in their dtype.
        for t, rows in self.task_groups(task):
            out, m, d = self._task_forward(self.memories[t], x[rows], alpha[rows])
            density[rows] = d.to(density.dtype)
            unmasked[rows] = out.to(unmasked.dtype)
            logits[rows] = self.within_task.mask_padding(out, t).to(logits.dtype)
            if mask is not None:
                mask[rows] = m.to(mask.dtype)
        return {"q": q, "task": task, "task_scores": tscores, "alpha": alpha, "logits": logits, "unmasked": unmasked,
                "mask": mask, "density": density}

    def _task_forward(self, memory: TaskMemory, x: torch.Tensor, alpha: torch.Tensor):
        """Gate the frozen MLP with one task's slots mixed by `alpha`; its values give the logits.
        Also returns the unit mask (units gating) and each sample's mask density."""
        hard = self.hp.mask == "hard"
        if self.hp.gate == "none":
            mask, feats, density = None, self.net.features(x), x.new_ones(len(x))
        elif self.hp.gate == "units":
            mask = gating.unit_masks(memory.gates[0], alpha, hard)
            feats = gating.forward_units(self.net, x, mask)
            density = mask.mean(1)
        else:
            mask = None
            per_slot = self._connection_masks(memory)
            feats = gating.forward_connections(self.net, x, per_slot, alpha)
            cells = sum(m[0].numel() for m in per_slot)
            # a sum of products: a CPU matrix-vector product rounds by memory alignment
            density = (alpha * (sum(m.flatten(1).sum(1) for m in per_slot) / cells)).sum(1)
        # every slot's value head on the features, mixed by alpha: two matrix products (a
        # three-operand einsum spent more time choosing its contraction order than computing it)
        slot_logits = torch.addmm(memory.value_bias.flatten(), feats, memory.values.flatten(0, 1).T)  # [B, S * N_v]
        logits = torch.bmm(alpha.unsqueeze(1), slot_logits.view(len(feats), *memory.value_bias.shape)).squeeze(1)
        return logits, mask, density

    def _connection_masks(self, memory: TaskMemory) -> list[torch.Tensor]:
        """Per-slot connection masks, one per hidden layer: from the memory's own gates, or with
        bits from the scores while its task is learned (in training it always is: no sync) and
        from its bits otherwise (the same values once the task ended)."""
        if not memory.n_bits:
            return [gating.connection_masks(g, self.hp.mask == "hard") for g in memory.gates]
        if memory is self.memories[self.current_task] and (self.training or not bool(memory.finished)):
            return [gating.connection_masks(g, True) for g in self.gate_scores]
        return [b.to(self.gate_scores[0].dtype) for b in memory.mask_bits()]

    # -- ContinualModule interface -----------------------------------------------------------
    def given_task(self, batch: dict) -> torch.Tensor | None:
        """The task id the scenario gives at test time (task-IL), else None: inferred."""
        return batch["task"] if self.labels.scenario == "task" else None

    def predict(self, batch: dict) -> torch.Tensor:
        out = self.route(batch["x"], self.given_task(batch))
        return self.within_task.label(out["logits"], out["task"])

    def _probe_masks(self, out: dict, rows: torch.Tensor) -> torch.Tensor:
        """[P, M] the mask each probe row is evaluated with: its unit mask, or for connection
        gating the alpha-weighted mixture of its task's per-slot connection masks, flattened."""
        if out["mask"] is not None:
            return out["mask"][rows]
        task, alpha = out["task"][rows], out["alpha"][rows]
        mask = alpha.new_empty(len(alpha), sum(layer.weight.numel() for layer in self.net.hidden))
        for t in task.unique().tolist():
            sel = task == t
            per_slot = [m.flatten(1) for m in self._connection_masks(self.memories[t])]
            mask[sel] = torch.cat([alpha[sel] @ m for m in per_slot], 1).to(mask.dtype)
        return mask

    def evaluate(self, batch: dict) -> dict:
        """One query computation serves the prediction (task given or inferred, as the scenario
        says), the inferred task, the probe masks and the padded logits routed by the true task."""
        x, true = batch["x"], batch["task"]
        q = self.query(x)
        out = self.route(x, self.given_task(batch), q)
        by_true = out if self.labels.scenario == "task" else self.route(x, true, q, infer=False)
        result = {
            "pred": self.within_task.label(out["logits"], out["task"]),
            "target": self.labels.targets(batch["y"]),
            "task": out["task_scores"].argmax(1),
            "padded": Padded(by_true["logits"], by_true["unmasked"], self.within_task.valid(true), self.within_task.targets(batch["y"])),
        }
        if self.labels.scenario == "class":  # routed by the true task: the task-given prediction
            result["task_given"] = self.within_task.label(by_true["logits"], true)
        if "probe" in self.eval_outputs:
            probe = batch["probe"].nonzero().squeeze(1)
            result["probe"] = Probe(self._probe_masks(out, probe), out["task"][probe])
        return result

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        out = self.route(batch["x"], batch["task"])
        ce = nn.functional.cross_entropy
        cls_loss = self.batch_mean(ce(out["logits"], self.within_task.targets(batch["y"]), reduction="none"), batch)
        tscores = out["task_scores"][:, : self.current_task + 1]
        task_ce = self.batch_mean(ce(tscores, batch["task"], reduction="none"), batch)
        # keys follow their task's queries (q detached, so queries cannot collapse onto keys)
        q, keys = out["q"].detach(), self.memories[self.current_task].keys
        key_nll = self.batch_mean(-(-torch.cdist(q, keys).square() / (2 * q.shape[1] ** 0.5)).logsumexp(1), batch)
        density = self.batch_mean(out["density"], batch)  # fraction of the network in use
        loss = cls_loss + self.hp.task_loss_weight * (task_ce + key_nll) + self.hp.mask_sparsity * density
        self.log_train_step(
            {"train/loss": loss, "train/cls_loss": cls_loss, "train/task_ce": task_ce, "train/key_nll": key_nll,
             "train/mask_density": density},
            batch_size=len(q), sync_dist=True,
        )
        return loss
