"""A batch iterator over in-memory tensors.

A torch `DataLoader` over a `TensorDataset` indexes and collates sample by sample; here a
batch is one gather of a whole index slice, on whatever device the tensors live on.

Training batches are *global*: `batch_size` is the number of samples one optimizer step sees,
however many processes share it. Step k takes slice k of one seeded permutation (identical on
every rank) and rank r keeps every world-th sample of it, so the union over ranks is exactly the
single-process batch; each batch carries `global_size` so a method can average its loss over the
global batch (`ContinualModule.batch_mean`) and DDP's gradient average equals the
single-process gradient. Every rank takes the same number of steps; nothing is padded or repeated.

Evaluation shards are strided and unpadded, so summed counts see every sample exactly once.

The loader is resumable: `state_dict` records the epoch and the batches already served, and
Lightning stores it in its checkpoints and hands it back on resume (it does not prefetch from a
loader that has a length, so "served" is "trained on").
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
        probe: int = 0,
    ):
        """`task`: per-sample task ids, for a loader over several tasks at once (joint training).
        `probe`: evaluation batches flag their samples with index < probe (`batch["probe"]`), the
        fixed probe set whose masks the mask-stability metric follows."""
        self.x, self.y, self.task_id = x, y, task_id
        self.task, self.probe = task, probe
        self.batch_size, self.train, self.seed = batch_size, train, seed
        self.epoch = 0  # the epoch the next iteration serves
        self._skip = 0  # batches of that epoch already served before a resume
        self._served = (0, 0)  # (epoch, batches served) of the iteration in progress

    def _slices(self, epoch: int) -> list[torch.Tensor]:
        """This rank's index slice for every batch of `epoch`, on the tensors' device: the
        permutation crosses the bus once per epoch, not once per batch (on CUDA each copy from
        pageable memory would wait for the GPU to finish the previous step)."""
        n, device = len(self.y), self.y.device
        rank, world = dist_info()
        if not self.train:
            return list(torch.arange(rank, n, world, device=device).split(self.batch_size))
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.task_id * 1009 + epoch)
        order = torch.randperm(n, generator=gen).to(device)
        return [step[rank::world] for step in order.split(self.batch_size)]

    def __len__(self) -> int:
        rank, world = dist_info()
        n = len(self.y)
        return math.ceil(n / self.batch_size) if self.train else math.ceil(len(range(rank, n, world)) / self.batch_size)

    def __iter__(self):
        epoch, skip = self.epoch, self._skip
        self.epoch, self._skip = epoch + 1, 0
        n = len(self.y)
        device = self.y.device
        task_ids = self.task.to(device) if self.task is not None else None
        # one task's batches slice one tensor of its id: no kernel per step
        same_task = torch.full((self.batch_size,), self.task_id, device=device) if task_ids is None else None
        for k, i in enumerate(self._slices(epoch)):
            if k < skip:
                continue
            self._served = (epoch, k + 1)
            global_size = min(self.batch_size, n - k * self.batch_size) if self.train else len(i)
            task = task_ids[i] if task_ids is not None else same_task[: len(i)]
            batch = {"x": self.x[i], "y": self.y[i], "task": task, "index": i, "global_size": global_size}
            if not self.train:
                batch["probe"] = i < self.probe
            yield batch

    def state_dict(self) -> dict:
        epoch, served = self._served
        return {"epoch": epoch, "served": served}

    def load_state_dict(self, state: dict) -> None:
        epoch, served = state["epoch"], state["served"]
        finished = served >= len(self)
        self.epoch, self._skip = (epoch + 1, 0) if finished else (epoch, served)
