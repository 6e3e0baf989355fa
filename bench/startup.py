"""Start-up cost seen from a shell: the imports, `continual --help` and a whole `continual fit` process."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from bench.timing import summary

CLI = [sys.executable, "-m", "continual.cli.main"]


def _time(args: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def startup(config: str, overrides: list[str], repeats: int, threads: int, device: str = "cpu") -> dict:
    """Whole processes: what `continual fit` adds beyond the imports it cannot avoid (and, on a
    GPU, the CUDA start every GPU process pays), and its time against a process running the raw
    loop on the same config (both pay the imports and, on a GPU, the kernels' first loading)."""
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": os.pathsep.join(sys.path)}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    fit = [*CLI, "fit", "--config", config, *overrides, "logger.kind=none", "trainer.enable_progress_bar=false", "overwrite=true"]
    raw = [sys.executable, "-c", f"from bench.workloads import config, reference; reference(config({config!r}, {overrides!r}), {device!r})"]
    floor = "import torch, lightning" + ("; torch.zeros(1, device='cuda')" if device == "cuda" else "")
    out = {
        "import_s": summary([_time([sys.executable, "-c", "import torch, lightning"], env) for _ in range(repeats)]),
        "help_s": summary([_time([*CLI, "--help"], env) for _ in range(repeats)]),
        "raw_s": summary([_time(raw, env) for _ in range(repeats)]),
        "fit_s": summary([_time([*fit, f"output_dir={tempfile.mkdtemp(prefix='bench_')}"], env) for _ in range(repeats)]),
        "fit_command": " ".join(["continual", *fit[len(CLI):]]),
    }
    if device == "cuda":
        out["import_cuda_s"] = summary([_time([sys.executable, "-c", floor], env) for _ in range(repeats)])
    out["fit_adds_s"] = out["fit_s"]["median"] - out["import_cuda_s" if device == "cuda" else "import_s"]["median"]
    out["fit_over_raw"] = out["fit_s"]["median"] / out["raw_s"]["median"]
    return out
