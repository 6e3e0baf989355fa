"""`python -m bench.profile --root <data root> [finetune|router]`: where one warm run's time goes.

Runs the benchmark's workload once to warm up, then once under cProfile, and prints the
functions with the most cumulative and the most own time. On a GPU, Python time that is not
waiting for kernels is the platform's overhead.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import warnings

import torch

from bench.__main__ import CONFIGS, describe
from bench.workloads import config, platform


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="data", help="data.root holding MNIST/raw")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("workloads", nargs="*", help=f"any of {', '.join(CONFIGS)} (default: all)")
    args = ap.parse_args(argv)
    unknown = set(args.workloads) - set(CONFIGS)
    if unknown:
        ap.error(f"unknown workload(s) {sorted(unknown)}; choose from {list(CONFIGS)}")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    print(describe("cuda" if torch.cuda.is_available() else "cpu"))
    for name in args.workloads or CONFIGS:
        path, extra = CONFIGS[name]
        overrides = [*extra, f"data.root={args.root}"]
        platform(config(path, overrides))  # warm: imports, CUDA context, kernels
        prof = cProfile.Profile()
        prof.runcall(platform, config(path, overrides))
        for key in ("cumulative", "tottime"):
            print(f"== {name}, by {key} ==")
            pstats.Stats(prof).sort_stats(key).print_stats(args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
