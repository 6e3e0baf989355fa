"""A reservoir-sampling replay buffer held as tensors (Vitter's algorithm R, vectorized), and
what every replay method shares about its buffer: its size from `buffer_size` or a memory
budget `buffer_floats` for the method's whole stored floats (`buffer_capacity`), and the global
batch a DDP rank inserts.

After `n` samples have been offered, each of them is in the buffer with probability
`size / n`, whatever the order or the batch sizes they came in.
"""

from __future__ import annotations

import math

import torch

from continual.data.loader import dist_info
from continual.errors import ConfigError
from continual.metrics.memory import stored_floats


def sample_floats(net, *per_sample: int) -> float:
    """What one stored sample costs in floats: the network's input (`net.n_in`, as an `MLP` has it)
    plus the `per_sample` values stored with it (a label, a task id, `n_out` logits). NaN for a
    backbone without `n_in`: `buffer_capacity` then asks for `buffer_size` if a budget is set."""
    return getattr(net, "n_in", math.nan) + sum(per_sample)


def buffer_capacity(module, hp, floats_per_sample: float) -> int:
    """Samples a replay method keeps: `hp.buffer_size`, or with `hp.buffer_floats` set, as many as
    fit in that budget for the method's whole `stored_floats`: what `module` holds before any
    sample arrives (its network, a teacher, class means, an empty buffer: call this at the end of
    `__init__`, once they all exist) is taken off first, the rest divided by `floats_per_sample`
    (every value one stored sample adds: its input, label, task id, logits...). So a compare row
    given another row's stored floats (`budget_from`) stores at most as much, less by under one
    sample."""
    if hp.buffer_floats is None:
        return hp.buffer_size
    key = f"{module.name}.buffer_floats"
    if math.isnan(floats_per_sample):
        raise ConfigError(f"{key} needs the backbone's input size (`n_in`, as an MLP has it); set {key.replace('floats', 'size')} instead")
    fixed = stored_floats(module)
    size = math.floor((hp.buffer_floats - fixed) / floats_per_sample)
    if size < 1:
        besides = f" besides the {fixed:g} its method holds without samples (network, teacher, means)" if fixed else ""
        raise ConfigError(f"{key}={hp.buffer_floats:g} holds no sample: one costs {floats_per_sample:g} floats{besides}; "
                          f"set {key} to at least {fixed + floats_per_sample:g}")
    return size


def gather_batch(batch: dict[str, torch.Tensor], global_size: int) -> dict[str, torch.Tensor]:
    """The global training batch, in the single process's order, from each DDP rank's shard (rank
    r holds samples r, r + world, ... of it: `continual.data.loader`): inserting it on every rank
    keeps one buffer on all of them, the buffer one process would have."""
    rank, world = dist_info()
    if world == 1:
        return batch
    rows = math.ceil(global_size / world)
    out = {}
    for k, v in batch.items():
        padded = torch.cat([v, v.new_zeros((rows - len(v), *v.shape[1:]))])
        shards = [torch.empty_like(padded) for _ in range(world)]
        torch.distributed.all_gather(shards, padded.contiguous())
        # [rows, world, ...] row-major is sample j * world + r: the loader's order; padding falls last
        out[k] = torch.stack(shards, 1).flatten(0, 1)[:global_size]
    return out


class ReservoirBuffer:
    def __init__(self, size: int, seed: int = 0):
        self.size, self.seen = size, 0
        self.gen = torch.Generator().manual_seed(seed)
        self.data: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return min(self.seen, self.size)

    def add(self, **batch: torch.Tensor) -> None:
        """Offer a batch of samples (equal-length tensors, e.g. x=, y=, task=)."""
        n = len(next(iter(batch.values())))
        if not self.data:
            self.data = {k: v.new_zeros((self.size, *v.shape[1:])) for k, v in batch.items()}
        position = torch.arange(self.seen, self.seen + n)
        # sample i (0-based over all offered) takes slot i while the buffer fills, then a
        # uniform slot in [0, i], kept only if that slot exists
        draw = (torch.rand(n, generator=self.gen) * (position + 1)).long()
        slot = torch.where(position < self.size, position, draw)
        keep = slot < self.size
        slot, order = slot[keep], torch.arange(n)[keep]
        # when several samples of one batch hit one slot, the last one wins (as if sequential)
        last = torch.full((self.size,), -1, dtype=torch.long).scatter_reduce(0, slot, order, "amax")
        winners = last[last >= 0]
        slots = (last >= 0).nonzero().squeeze(1)
        for k, v in batch.items():
            self.data[k][slots.to(v.device)] = v[winners.to(v.device)]
        self.seen += n

    def state_dict(self) -> dict:
        return {"seen": self.seen, "generator": self.gen.get_state(), "data": self.data}

    def load_state_dict(self, state: dict) -> None:
        self.seen, self.data = state["seen"], dict(state["data"])
        self.gen.set_state(state["generator"].cpu())

    def sample(self, n: int, replace: bool = True) -> dict[str, torch.Tensor]:
        """`n` held samples drawn uniformly; `replace=False`: distinct ones, at most all held."""
        idx = torch.randint(len(self), (n,), generator=self.gen) if replace else torch.randperm(len(self), generator=self.gen)[:n]
        return {k: v[idx.to(v.device)] for k, v in self.data.items()}
