"""Repeated timings with median and spread, and the peak memory a workload adds.

CPU memory is the process's resident set sampled every few milliseconds by a thread (torch's
allocations are invisible to tracemalloc); on CUDA it is torch's own peak-allocated counter.
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Callable

import torch

_PAGE = 4096


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


class PeakMemory:
    """Context manager: `.peak` is the most memory held above the level at entry, in bytes."""

    def __init__(self, device: str = "cpu", every_s: float = 0.005):
        self.device, self.every_s, self.peak = device, every_s, 0

    def __enter__(self) -> "PeakMemory":
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
            return self
        self._base, self._top, self._stop = _rss(), _rss(), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.every_s):
            self._top = max(self._top, _rss())

    def __exit__(self, *exc) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self._base
            return
        self._stop.set()
        self._thread.join()
        self.peak = max(self._top, _rss()) - self._base


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def repeat(fn: Callable[[], object], repeats: int, device: str = "cpu") -> dict:
    """Time `fn` `repeats` times; returns the wall-time summary, peak memory and fn's last result."""
    walls, peaks, result = [], [], None
    for _ in range(repeats):
        with PeakMemory(device) as mem:
            start = time.perf_counter()
            result = fn()
            if device == "cuda":
                torch.cuda.synchronize()
            walls.append(time.perf_counter() - start)
        peaks.append(mem.peak)
    return {"wall_s": summary(walls), "peak_mem_mb": max(peaks) / 2**20, "result": result}
