"""`python -m bench.scaling --root <data root> --tasks 50`: the router over a long stream.

Permuted-MNIST with `--tasks` tasks, class-IL, the router of router_split_mnist.yaml (a shipped config),
one epoch per task. Per task: the seconds `fit` took, the seconds of the test pass after it
(every task's test set, learned or not, so it grows with the stream by design), and the peak
device memory while learning it. What must not grow beyond the routing over memories is the
fit time of one task. Prints a table as it goes and rewrites the JSON next to the benchmark's
after every task, so a run stopped by a time limit keeps its rows in both.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import lightning as L
import torch

from bench.__main__ import describe
from bench.workloads import config
from continual.experiment import run
from continual.rundir import atomic_write


class TaskClock(L.Callback):
    """Wall time of each task's fit and of each test pass, and peak device memory per task;
    `save(rows)` is called after every task's row is complete."""

    def __init__(self, device: str, save: Callable[[list[dict]], None]):
        self.device, self.save, self.rows, self._t0 = device, save, [], 0.0
        self.out = sys.stdout  # the run's own summary is silenced; these rows are not

    def _now(self) -> float:
        if self.device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_train_start(self, trainer, pl_module) -> None:
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        self._t0 = self._now()

    def on_train_end(self, trainer, pl_module) -> None:
        peak = torch.cuda.max_memory_allocated() / 2**20 if self.device == "cuda" else None
        self.rows.append({"task": pl_module.current_task + 1, "fit_s": self._now() - self._t0, "peak_mb": peak})

    def on_test_start(self, trainer, pl_module) -> None:
        self._t0 = self._now()

    def on_test_end(self, trainer, pl_module) -> None:
        if self.rows and "test_s" not in self.rows[-1]:
            r = self.rows[-1]
            r["test_s"] = self._now() - self._t0
            peak = f"{r['peak_mb']:9.0f}" if r["peak_mb"] is not None else "        -"
            print(f"{r['task']:>5} {r['fit_s']:>8.2f} {r['test_s']:>8.2f} {peak}", file=self.out, flush=True)
            self.save(self.rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="data", help="data.root holding MNIST/raw")
    ap.add_argument("--tasks", type=int, default=50)
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="more config overrides")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # as `continual` itself does (cli/main.py)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = config("router_split_mnist.yaml", [f"data.root={args.root}", "data.stream=permuted_mnist",
                                             f"data.n_tasks={args.tasks}", *args.overrides])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"scaling_{time.strftime('%Y%m%d-%H%M%S')}.json"
    header = {"device": describe(device), "tasks": args.tasks, "overrides": args.overrides}

    def save(rows: list[dict], **final) -> None:
        atomic_write(path, json.dumps({**header, **final, "rows": rows}, indent=1))  # whole, if killed while writing

    print(header["device"])
    print(f"{'task':>5} {'fit s':>8} {'test s':>8} {'peak MB':>9}", flush=True)
    clock = TaskClock(device, save)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        metrics = run(cfg, callbacks=[clock])
    wall = time.perf_counter() - start
    fits = [r["fit_s"] for r in clock.rows]
    k = max(1, len(fits) // 5)
    growth = (sum(fits[-k:]) / k) / (sum(fits[1 : 1 + k]) / k) if len(fits) > k else None  # task 1 pays warm-up
    ratio = f"; fit time of the last {k} tasks / of tasks 2-{k + 1}: {growth:.2f}" if growth is not None else ""
    print(f"wall {wall:.1f} s; ACC {100 * metrics['acc']:.2f}{ratio}")
    save(clock.rows, wall_s=wall, acc=metrics["acc"], fit_growth=growth)
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
