"""A reservoir-sampling replay buffer held as tensors (Vitter's algorithm R, vectorized).

After `n` samples have been offered, each of them is in the buffer with probability
`size / n`, whatever the order or the batch sizes they came in.
"""

from __future__ import annotations

import torch

from continual.errors import ConfigError


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

    def sample(self, n: int) -> dict[str, torch.Tensor]:
        idx = torch.randint(len(self), (n,), generator=self.gen)
        return {k: v[idx.to(v.device)] for k, v in self.data.items()}


def buffer_capacity(hp, floats_per_sample: int) -> int:
    """The samples a replay method's buffer holds: `hp.buffer_size`, or, when `hp.buffer_floats`
    is set, as many as that many floats hold (so a buffer can be matched to another method's
    stored floats)."""
    if hp.buffer_floats is None:
        return hp.buffer_size
    samples = int(hp.buffer_floats // floats_per_sample)
    if samples < 1:
        raise ConfigError(
            f"buffer_floats={hp.buffer_floats:g} holds no sample ({floats_per_sample} floats each); "
            f"give at least {floats_per_sample}, or null to size the buffer by buffer_size"
        )
    return samples
