"""`python -m bench --root <data root>`: the issue-7 benchmark. Prints tables, writes JSON.

Threads default to 1: on a machine shared with other jobs, torch's intra-op threads contend for
the cores and timings swing by 10x; pass `--threads 0` for torch's default.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from datetime import datetime
from pathlib import Path

import torch

from bench import features, report, startup, sweep, tokens, workloads
from bench.lightning_loop import run_lightning
from bench.timing import repeat

# found via config_dirs(); the router workload is the one the README's figures were measured on
# (the 32-slot default with the soft gates of 2026-11-25), kept fixed so figures stay comparable
CONFIGS = {
    "finetune": ("split_mnist.yaml", []),
    "router": ("split_mnist.yaml", ["method=router", "scenario=class", "optim.lr=0.01", "router.mask=soft",
                                    "router.gate_init=3.0", "router.mask_sparsity=0.0"]),
}
QUICK = ["data.stream=split_digits"]  # the embedded data set: seconds, for the smoke test


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="data", help="data.root holding MNIST/raw")
    ap.add_argument("--repeats", type=int, default=5, help="runs of each workload (median and spread)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    ap.add_argument("--tokens", default="8,32,128,512,1024,2048,4096", help="token counts for the scaling table")
    ap.add_argument("--out", default="bench/results", help="folder for the JSON results")
    ap.add_argument("--quick", action="store_true", help="tiny workload (Split-Digits, 1 repeat): checks the pieces run")
    ap.add_argument("--skip", nargs="*", default=[], choices=["workloads", "tokens", "startup", "features", "sweep"])
    ap.add_argument("--set", nargs="*", default=[], metavar="key=value",
                    help="config overrides for every workload, e.g. backbone.hidden=[16]: a model that costs nothing leaves the platform's overhead")
    return ap.parse_args(argv)


# workload -> (config, what its time is compared with): the targets of issue 14 are these ratios
REFERENCE = {"raw": None, "lightning": "raw", "finetune": "raw", "raw_5ep": None, "lightning_5ep": "raw_5ep",
             "finetune_5ep": "raw_5ep", "router": "finetune", "router_step": "router"}


def run_workloads(overrides: list[str], repeats: int, device: str) -> dict:
    cfgs = {name: workloads.config(path, [*extra, *overrides]) for name, (path, extra) in CONFIGS.items()}
    path, extra = CONFIGS["finetune"]
    five = workloads.config(path, [*extra, *overrides, "trainer.max_epochs=5"])
    jobs = {
        "raw": (lambda: workloads.reference(cfgs["finetune"], device), cfgs["finetune"]),
        "lightning": (lambda: workloads.reference(cfgs["finetune"], device, run_lightning), cfgs["finetune"]),
        "finetune": (lambda: workloads.platform(cfgs["finetune"]), cfgs["finetune"]),
        "raw_5ep": (lambda: workloads.reference(five, device), five),
        "lightning_5ep": (lambda: workloads.reference(five, device, run_lightning), five),
        "finetune_5ep": (lambda: workloads.platform(five), five),
        "router": (lambda: workloads.platform(cfgs["router"]), cfgs["router"]),
        "router_step": (lambda: workloads.router_step(cfgs["router"], device), cfgs["router"]),
    }
    out = {}
    for name, (job, cfg) in jobs.items():
        r = repeat(job, repeats, device)
        accs = r.pop("result")
        out[name] = {**r, **workloads.work(cfg), "reference": REFERENCE[name],
                     "final_acc": sum(accs[-1]) / len(accs[-1]) if accs else None}
    return out


def describe(device: str) -> str:
    """The device line every table is read with: absolute times mean something only on a GPU."""
    if device == "cuda":
        return f"device: {torch.cuda.get_device_name()} (torch {torch.__version__}, CUDA {torch.version.cuda})"
    return f"device: cpu, {torch.get_num_threads()} torch thread(s) ({platform.processor() or platform.machine()}, torch {torch.__version__})"


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # as `continual` itself does (cli/main.py)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    overrides = [f"data.root={args.root}", *(QUICK if args.quick else []), *args.set]
    repeats = 1 if args.quick else args.repeats
    ns = [8, 16, 32] if args.quick else [int(n) for n in args.tokens.split(",")]
    results: dict = {
        "when": datetime.now().isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpu_threads": torch.get_num_threads(),
                    "device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "torch": torch.__version__},
        "overrides": overrides,
        "repeats": repeats,
    }
    print(describe(device))
    if "workloads" not in args.skip:
        results["workloads"] = run_workloads(overrides, repeats, device)
        results["overhead"] = {name: report.overhead(results["workloads"], name) for name in ("lightning", "finetune")}
        print(report.workload_table(results["workloads"]))
    if "features" not in args.skip:
        results["features"] = features.feature_rows(CONFIGS["finetune"][0], overrides, repeats, device)
        print(features.table(results["features"]))
    if "tokens" not in args.skip:
        results["tokens"] = tokens.scaling(ns, repeats, device)
        print(report.token_table(results["tokens"]))
    if "startup" not in args.skip:
        path, extra = CONFIGS["finetune"]
        results["startup"] = startup.startup(path, [*extra, *overrides], repeats, args.threads, device)
        print(report.startup_table(results["startup"]))
    if "sweep" not in args.skip and not args.quick:  # subprocesses: minutes (tests/test_bench.py runs it small)
        results["sweep"] = sweep.sweep_row(*((4, 1) if args.quick else (16, 5)))
        print(sweep.sweep_table(results["sweep"]))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bench_{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=1))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
