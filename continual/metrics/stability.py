"""Mask stability per sample: does a sample keep the mask it had when its task was learned?

The probe set of task j is its first K test samples by index (deterministic, identical on any
number of processes; the loader flags them as `batch["probe"]`). After every task boundary
t >= j each probe sample's mask (the method's `probe` output) is binarized at `THRESHOLD` and
compared with its mask right after task j was learned: Hamming distance, Jaccard overlap,
unchanged or not, and whether it is now routed to another task than then (`rerouted`: a sample
whose task inference changed gets another task's mask, which the mask comparison alone would
blame on the masks).

Under DDP each rank writes the probe samples it holds into a [K, M] tensor at their index and
the tensors are summed over ranks: every sample sits on exactly one rank, so the gathered masks
are the single-process masks.
"""

from __future__ import annotations

import csv
import io

import torch

from continual.config.fields import positive
from continual.metrics import plots
from continual.metrics.base import Column, Metric, Switch, pct
from continual.metrics.registry import register

THRESHOLD = 0.5
CSV = "mask_stability.csv"
COLUMNS = ("after_task", "task", "sample", "hamming", "jaccard", "unchanged", "rerouted")


def compare(learned: torch.Tensor, now: torch.Tensor) -> tuple[list[int], list[float]]:
    """Per-row Hamming distance and Jaccard overlap of two [K, M] bool masks (two empty masks: 1)."""
    hamming = (learned ^ now).sum(1)
    union = (learned | now).sum(1)
    jaccard = torch.where(union > 0, (learned & now).sum(1) / union.clamp(min=1), torch.ones_like(union, dtype=torch.float))
    return hamming.tolist(), jaccard.tolist()


def summarize_rows(rows: list[list]) -> dict:
    n = len(rows)
    if not n:
        return {"samples": 0, "unchanged_fraction": None, "rerouted_fraction": None, "mean_hamming": None, "mean_jaccard": None}
    return {
        "samples": n,
        "unchanged_fraction": sum(r[5] for r in rows) / n,
        "rerouted_fraction": sum(r[6] for r in rows) / n,
        "mean_hamming": sum(r[3] for r in rows) / n,
        "mean_jaccard": sum(r[4] for r in rows) / n,
    }


@register
class MaskStability(Metric):
    key = "mask_stability"
    reads = "probe"
    switch = Switch(True, "per-sample mask stability over a fixed probe set (methods exposing masks)")
    options = (("probe_per_task", int, positive(64, integer=True, help="mask stability: the first K test samples of each task")),)
    state = ("learned", "learned_route", "density", "rows")
    columns = (Column("mask_density", "mask density", lambda m: m.get("mask_density"), "percent"),)

    @classmethod
    def build(cls, cfg, stream, module) -> "MaskStability":
        return cls(len(stream), cfg.metrics.probe_per_task)

    def __init__(self, n_tasks: int, probe_per_task: int):
        super().__init__()
        self.n_tasks, self.K = n_tasks, probe_per_task
        self.learned: dict[int, torch.Tensor] = {}  # task -> [K, M] bool mask right after it was learned
        self.learned_route: dict[int, torch.Tensor] = {}  # task -> [K] the task each probe was routed to then
        self.density: list[float] = []  # after task i: mean mask value over every probe of tasks 0..i
        self.rows: list[list] = []  # COLUMNS, one per probe sample and boundary

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._probe: dict[int, list] = {}  # task -> [mask bits, routed task, seen] of this rank

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.after < dataloader_idx or self.after < 0:
            return  # that task is not learned yet: it has no mask to keep
        probe = outputs["probe"]
        if not len(probe.mask):
            return
        if dataloader_idx not in self._probe:
            self._probe[dataloader_idx] = [probe.mask.new_zeros(self.K, probe.mask.shape[1], dtype=torch.long)] + [
                probe.mask.new_zeros(self.K, dtype=torch.long) for _ in range(2)
            ]
        bits, route, seen = self._probe[dataloader_idx]
        i = batch["index"][batch["probe"]]
        bits[i] = (probe.mask > THRESHOLD).long()
        route[i] = probe.task
        seen[i] = 1

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        if self.after < 0:
            return
        del self.rows[len([r for r in self.rows if r[0] < self.after]):]  # a repeated pass replaces its rows
        on, cells = 0, 0
        for j in range(self.after + 1):
            bits, route, seen = self._gather(trainer, j, pl_module.device)
            ids = seen.nonzero().squeeze(1)
            now, routed = bits[ids].bool(), route[ids]
            on, cells = on + int(now.sum()), cells + now.numel()
            if j == self.after:
                self.learned[j], self.learned_route[j] = now, routed
            hamming, jaccard = compare(self.learned[j], now)
            rerouted = (routed != self.learned_route[j]).tolist()
            for s, h, jac, moved in zip(ids.tolist(), hamming, jaccard, rerouted):
                self.rows.append([self.after, j, s, h, jac, int(h == 0), int(moved)])
        self.store(self.density, on / cells if cells else None)

    def _gather(self, trainer, j: int, device) -> tuple[torch.Tensor, ...]:
        """Task j's probe masks, routes and presence, summed over ranks (each sample on one)."""
        width = torch.tensor(self._probe[j][0].shape[1] if j in self._probe else 0, device=device)
        if trainer.world_size > 1:  # a rank that holds no probe sample of task j still takes part
            torch.distributed.all_reduce(width, op=torch.distributed.ReduceOp.MAX)
        z = lambda *shape: torch.zeros(*shape, dtype=torch.long, device=device)  # noqa: E731
        local = self._probe.get(j) or [z(self.K, int(width)), z(self.K), z(self.K)]
        return tuple(self.sum_ranks(trainer, t).cpu() for t in local)

    def _earlier(self, after: int) -> list[list]:
        """Rows at boundary `after` of tasks learned before it (the last task has nothing to keep yet)."""
        return [r for r in self.rows if r[0] == after and r[1] < after]

    def last_boundary(self) -> int:
        return max((r[0] for r in self.rows), default=-1)

    def final_rows(self) -> list[list]:
        """Rows after the last boundary measured, of the tasks learned before it."""
        return self._earlier(self.last_boundary())

    def results(self) -> dict:
        last = self.last_boundary()
        at_last = [r for r in self.rows if r[0] == last]
        return {
            "threshold": THRESHOLD,
            "probe_per_task": self.K,
            "mask_size": int(next(iter(self.learned.values())).shape[1]) if self.learned else None,
            # fraction of mask cells on (above the threshold) over the probes of every learned
            # task in the last pass: the part of the network a sample uses (near 1: masks do no work)
            "mask_density": self.density[-1] if self.density else None,
            "density_curve": self.density,
            "after_task": last,
            **summarize_rows(self._earlier(last)),
            "per_task": [summarize_rows([r for r in at_last if r[1] == j]) for j in range(last)],
            "unchanged_curve": [summarize_rows(self._earlier(t))["unchanged_fraction"] for t in range(last + 1)],
        }

    def scalars(self) -> dict:
        s = summarize_rows(self._earlier(self.after))
        out = {} if s["unchanged_fraction"] is None else {
            "stability/unchanged_fraction": s["unchanged_fraction"], "stability/rerouted_fraction": s["rerouted_fraction"],
            "stability/mean_jaccard": s["mean_jaccard"],
        }
        if self.density:
            out["stability/mask_density"] = self.density[-1]
        return out

    @classmethod
    def entries(cls, results) -> dict:
        # mask_density also at the top level: what a comparison reads of every run
        return {"mask_density": results["mask_density"] if results else None, cls.key: results}

    @classmethod
    def summary(cls, metrics: dict) -> list[str]:
        m = metrics.get(cls.key)
        if not m:
            return []
        return [
            f"mask stability (probe masks of earlier tasks, threshold {m['threshold']}): unchanged {pct(m['unchanged_fraction'])}   "
            f"mean Jaccard {pct(m['mean_jaccard'])}   rerouted {pct(m['rerouted_fraction'])}   mask density {pct(m['mask_density'])}"
        ]

    def files(self, metrics: dict, title: str) -> dict:
        buf = io.StringIO()
        csv.writer(buf).writerows([COLUMNS, *self.rows])
        final = self.final_rows()
        return {
            CSV: buf.getvalue(),
            "mask_stability.png": plots.stability_histograms(
                [r[3] for r in final], [r[4] for r in final], f"mask stability after the last task: {title}"),
        }

    def log_wandb(self, logger, metrics: dict) -> None:
        import wandb

        logger.log_table(key="mask_stability_per_sample", columns=list(COLUMNS), data=self.rows)
        final = self.final_rows()
        logger.experiment.log({
            "mask_stability/hamming": wandb.Histogram([r[3] for r in final]),
            "mask_stability/jaccard": wandb.Histogram([r[4] for r in final]),
        })
