"""Mask stability per sample: does a sample keep the mask it had when its task was learned?

The probe set of task j is its first K test samples by index (deterministic, identical on any
number of processes). After every task boundary t >= j each probe sample's mask is binarized at
`THRESHOLD` and compared with its mask right after task j was learned: Hamming distance, Jaccard
overlap, unchanged or not. Each probe batch is evaluated twice in the same pass to check that
the same sample gets the same mask (`repeat_identical`, on the unbinarized mask).

Under DDP each rank writes the probe samples it holds into a [K, M] tensor at their index and
the tensors are summed over ranks: every sample sits on exactly one rank, so the gathered masks
are the single-process masks.
"""

from __future__ import annotations

import torch

from continual.metrics.base import StreamCallback

THRESHOLD = 0.5
COLUMNS = ("after_task", "task", "sample", "hamming", "jaccard", "unchanged", "repeat_identical")


def compare(learned: torch.Tensor, now: torch.Tensor) -> tuple[list[int], list[float]]:
    """Per-row Hamming distance and Jaccard overlap of two [K, M] bool masks (two empty masks: 1)."""
    hamming = (learned ^ now).sum(1)
    union = (learned | now).sum(1)
    jaccard = torch.where(union > 0, (learned & now).sum(1) / union.clamp(min=1), torch.ones_like(union, dtype=torch.float))
    return hamming.tolist(), jaccard.tolist()


def summarize_rows(rows: list[list]) -> dict:
    n = len(rows)
    if not n:
        return {"samples": 0, "unchanged_fraction": None, "mean_hamming": None, "mean_jaccard": None}
    return {
        "samples": n,
        "unchanged_fraction": sum(r[5] for r in rows) / n,
        "mean_hamming": sum(r[3] for r in rows) / n,
        "mean_jaccard": sum(r[4] for r in rows) / n,
    }


class MaskStability(StreamCallback):
    key = "mask_stability"
    needs = ("masks",)

    def __init__(self, n_tasks: int, probe_per_task: int):
        super().__init__()
        self.n_tasks, self.K = n_tasks, probe_per_task
        self.learned: dict[int, torch.Tensor] = {}  # task -> [K, M] bool mask right after it was learned
        self.rows: list[list] = []  # COLUMNS, one per probe sample and boundary

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._probe: dict[int, list] = {}  # task -> [mask bits, repeat identical, seen] of this rank

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.after < dataloader_idx or self.after < 0:
            return  # that task is not learned yet: it has no mask to keep
        pick = batch["index"] < self.K
        if not pick.any():
            return
        sub = {k: batch[k][pick] for k in ("x", "y", "task", "index")}
        # the repeat gets a copy of x, so that nothing computed for the first call is reused
        first, second = pl_module.masks(sub), pl_module.masks({**sub, "x": sub["x"].clone()})
        if dataloader_idx not in self._probe:
            self._probe[dataloader_idx] = [first.new_zeros(self.K, first.shape[1], dtype=torch.long)] + [
                first.new_zeros(self.K, dtype=torch.long) for _ in range(2)
            ]
        bits, same, seen = self._probe[dataloader_idx]
        i = sub["index"]
        bits[i] = (first > THRESHOLD).long()
        same[i] = (first == second).all(1).long()
        seen[i] = 1

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        if self.after < 0:
            return
        del self.rows[len([r for r in self.rows if r[0] < self.after]):]  # a repeated pass replaces its rows
        for j in range(self.after + 1):
            bits, same, seen = self._gather(trainer, j, pl_module.device)
            ids = seen.nonzero().squeeze(1)
            now = bits[ids].bool()
            if j == self.after:
                self.learned[j] = now
            hamming, jaccard = compare(self.learned[j], now)
            for s, h, jac, rep in zip(ids.tolist(), hamming, jaccard, same[ids].tolist()):
                self.rows.append([self.after, j, s, h, jac, int(h == 0), rep])

    def _gather(self, trainer, j: int, device) -> tuple[torch.Tensor, ...]:
        """Task j's probe masks, repeat checks and presence, summed over ranks (each sample on one)."""
        width = torch.tensor(self._probe[j][0].shape[1] if j in self._probe else 0, device=device)
        if trainer.world_size > 1:  # a rank that holds no probe sample of task j still takes part
            torch.distributed.all_reduce(width, op=torch.distributed.ReduceOp.MAX)
        z = lambda *shape: torch.zeros(*shape, dtype=torch.long, device=device)  # noqa: E731
        local = self._probe.get(j) or [z(self.K, int(width)), z(self.K), z(self.K)]
        return tuple(self.sum_ranks(trainer, t).cpu() for t in local)

    def export(self) -> dict:
        return {"learned": self.learned, "rows": self.rows}

    def restore(self, state: dict) -> None:
        self.learned, self.rows = dict(state["learned"]), state["rows"]

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
            # fraction of mask entries above the threshold when learned: near 1, the binarized masks say little
            "mask_density": torch.cat(list(self.learned.values())).float().mean().item() if self.learned else None,
            "after_task": last,
            **summarize_rows(self._earlier(last)),
            "repeat_identical_fraction": sum(r[6] for r in self.rows) / len(self.rows) if self.rows else None,
            "per_task": [summarize_rows([r for r in at_last if r[1] == j]) for j in range(last)],
            "unchanged_curve": [summarize_rows(self._earlier(t))["unchanged_fraction"] for t in range(last + 1)],
        }

    def scalars(self) -> dict:
        s = summarize_rows(self._earlier(self.after))
        return {} if s["unchanged_fraction"] is None else {"stability/unchanged_fraction": s["unchanged_fraction"], "stability/mean_jaccard": s["mean_jaccard"]}
