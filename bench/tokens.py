"""Router cost against token count: full self-attention (`learned`) grows as n^2, the
Perceiver's m latents as m*n. Times `TokenAttention` forward+backward on synthetic tokens and
fits the log-log slope (the growth exponent) over the larger counts, where fixed per-call
costs no longer hide the growth.
"""

from __future__ import annotations

import math
import time

import torch

from bench.timing import summary
from continual.routers.parts.attention import TokenAttention

KINDS = ("learned", "perceiver")


def time_attention(kind: str, n: int, batch: int, dim: int, h: int, latents: int, repeats: int, device: str) -> dict:
    attn = TokenAttention(kind, n, dim, h, heads=1, positional=False, window=0, latents=latents).to(device)
    x = torch.randn(batch, n, dim, device=device)
    walls = []
    for _ in range(repeats + 1):  # the first call warms up allocators and kernels
        start = time.perf_counter()
        attn(x).sum().backward()
        if device == "cuda":
            torch.cuda.synchronize()
        walls.append(time.perf_counter() - start)
    return summary(walls[1:])


def slope(ns: list[int], seconds: list[float]) -> float:
    """Least-squares slope of log(seconds) on log(n)."""
    lx, ly = [math.log(n) for n in ns], [math.log(s) for s in seconds]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def scaling(ns: list[int], repeats: int, device: str, batch: int = 2, dim: int = 64, h: int = 16, latents: int = 16) -> dict:
    rows = {k: [time_attention(k, n, batch, dim, h, latents, repeats, device) for n in ns] for k in KINDS}
    fit_from = max(0, min(len(ns) // 2, len(ns) - 2))  # the upper half of the counts, two at least
    return {
        "tokens": ns,
        "shape": {"batch": batch, "dim": dim, "h": h, "heads": 1, "latents": latents},
        "seconds": rows,
        "exponent": {k: slope(ns[fit_from:], [r["median"] for r in rows[k][fit_from:]]) for k in KINDS},
        "exponent_fit_tokens": ns[fit_from:],
    }
