"""A batch iterator over in-memory tensors.

A torch `DataLoader` over a `TensorDataset` indexes and collates sample by sample; here a
batch is one gather of a whole index slice, on whatever device the tensors live on.

Under DDP the loader shards itself by rank. Training shards are padded (by wrapping) to equal
length so every rank takes the same number of steps. Evaluation shards are *not* padded, so
summed counts see every test sample exactly once (a `DistributedSampler` would repeat some).
"""

from __future__ import annotations

import math

import torch


def dist_info() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class TensorLoader:
    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        task_id: int,
        batch_size: int,
        train: bool,
        seed: int = 0,
        task: torch.Tensor | None = None,
    ):
        """`task`: per-sample task ids, for a loader over several tasks at once (joint training)."""
        self.x, self.y, self.task_id = x, y, task_id
        self.task = task
        self.batch_size, self.train, self.seed = batch_size, train, seed
        self.epoch = 0

    def _indices(self) -> torch.Tensor:
        n = len(self.y)
        if self.train:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.task_id * 1009 + self.epoch)
            idx = torch.randperm(n, generator=gen)
            self.epoch += 1
        else:
            idx = torch.arange(n)
        rank, world = dist_info()
        if world > 1:
            if self.train:
                idx = idx.repeat(math.ceil(world / max(n, 1)) + 1)[: math.ceil(n / world) * world]
            idx = idx[rank::world]
        return idx

    def __len__(self) -> int:
        rank, world = dist_info()
        n = len(self.y)
        per_rank = math.ceil(n / world) if self.train else len(range(rank, n, world))
        return math.ceil(per_rank / self.batch_size)

    def __iter__(self):
        idx = self._indices().to(self.y.device)
        task = torch.full((len(idx),), self.task_id, dtype=torch.long, device=self.y.device)
        for start in range(0, len(idx), self.batch_size):
            i = idx[start : start + self.batch_size]
            t = self.task.to(i.device)[i] if self.task is not None else task[: len(i)]
            yield {"x": self.x[i], "y": self.y[i], "task": t, "index": i}
