"""The sweep row: N Split-Digits router trials through `continual sweep`, with 1 worker and with 2.

Two numbers: how much of the one-worker time two workers take (issue 25's target: at most 0.6 on
a 2-core machine; before each run, two CPU-bound processes measure how many cores are free, which
bounds that ratio on a shared machine), and the platform's cost per trial beyond its training:
the sweep's wall time per trial less the trial's own `wall_time_s` (metrics.json: training and
test passes), i.e. the keep-alive workers' start and imports (once per sweep), forking the
trial's process, building the stream and model, and the files of the run and sweep. Beside them,
the parts of each run that workers cannot split: its start (until the first trial's folder) and
its end (after the last trial's metrics).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.startup import CLI

# the router on the embedded digits, as the bench's router workload runs it on MNIST
TRIAL = ["data.stream=split_digits", "method=router", "scenario=class", "optim.lr=0.01", "router.mask=soft",
         "router.gate_init=3.0", "router.mask_sparsity=0.0", "logger.kind=none", "trainer.enable_progress_bar=false"]


def sweep_file(folder: Path, trials: int, epochs: int) -> Path:
    """A grid sweep of `trials` seeds: trials of equal work, so the two runs time the same thing."""
    path = folder / "bench_sweep.yaml"
    command = ["continual", "fit", "--config", "split_digits.yaml", *TRIAL, f"trainer.max_epochs={epochs}", "${args_no_hyphens}"]
    path.write_text(json.dumps({"method": "grid", "metric": {"name": "final/acc", "goal": "maximize"},
                                "parameters": {"seed": {"values": list(range(trials))}}, "command": command}))
    return path


def _sweep(path: Path, out: Path, workers: int) -> tuple[float, float, float, list[float]]:
    """The sweep's wall time; the parts of it that no number of workers shortens: its start
    (until the first trial's config.yaml is written) and its end (after the last trial's final
    metrics.json: that trial's plots and exit, the sweep's results and figure); each trial's own
    `wall_time_s`."""
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": os.pathsep.join(sys.path)}
    start = time.time()
    subprocess.run([*CLI, "sweep", str(path), "--dir", str(out), "--workers", str(workers)], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.time()
    runs = sorted(out.glob("run-*/"))
    first = min((run / "config.yaml").stat().st_mtime for run in runs)
    last = max((run / "metrics.json").stat().st_mtime for run in runs)
    train = [json.loads((run / "metrics.json").read_text())["wall_time_s"] for run in runs]
    return end - start, first - start, end - last, train


SPIN = "import time\nt = time.perf_counter()\nx = 0\nfor i in range(10_000_000):\n    x += i\nprint(time.perf_counter() - t)"


def _spin(n: int) -> list[float]:
    procs = [subprocess.Popen([sys.executable, "-c", SPIN], stdout=subprocess.PIPE) for _ in range(n)]
    return [float(p.communicate()[0]) for p in procs]


def capacity() -> float:
    """The cores' worth of throughput two CPU-bound processes get now: 2.0 on an idle 2-core
    machine, less while other jobs share it. Two workers cannot beat a ratio of 1 / capacity."""
    return 2 * _spin(1)[0] / max(_spin(2))


def sweep_row(trials: int = 16, epochs: int = 5) -> dict:
    """Wall times of the same sweep with 1 and 2 workers, their ratio, and the per-trial overhead."""
    folder = Path(tempfile.mkdtemp(prefix="bench_sweep_"))
    path = sweep_file(folder, trials, epochs)
    out: dict = {"trials": trials, "epochs": epochs, "command": f"continual sweep {path.name} --workers N",
                 "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "load_before": os.getloadavg()[0]}
    for workers in (1, 2):
        load, cores = os.getloadavg()[0], capacity()
        wall, start, end, train = _sweep(path, folder / f"w{workers}", workers)
        # a worker is busy `workers * wall / trials` per trial: what its training leaves is the platform's
        out[f"workers{workers}"] = {"wall_s": wall, "per_trial_s": wall / trials, "trial_train_s": statistics.median(train),
                                    "overhead_per_trial_s": workers * wall / trials - statistics.fmean(train), "start_s": start, "end_s": end, "load_before": load,
                                    "capacity_before": cores}
    out["ratio"] = out["workers2"]["wall_s"] / out["workers1"]["wall_s"]
    out["overhead_per_trial_s"] = out["workers1"]["overhead_per_trial_s"]
    out["load_after"] = os.getloadavg()[0]
    return out


def sweep_table(s: dict) -> str:
    one, two = s["workers1"], s["workers2"]
    return "\n".join([
        f"sweep: {s['trials']} Split-Digits router trials ({s['epochs']} epochs), `{s['command']}`",
        "| workers | wall (s) | start, end (s) | per trial (s) | a trial's training (s, median) | platform per trial (s) | load before | cores free before |",
        "|---|---|---|---|---|---|---|---|",
        *(f"| {n} | {w['wall_s']:.1f} | {w['start_s']:.1f}, {w['end_s']:.1f} | {w['per_trial_s']:.2f} | {w['trial_train_s']:.2f} | "
          f"{w['overhead_per_trial_s']:.2f} | {w['load_before']:.1f} | {w['capacity_before']:.2f} |" for n, w in ((1, one), (2, two))),
        f"2 workers / 1 worker: {s['ratio']:.2f} (target <= 0.6; at best 1 / {two['capacity_before']:.2f} = "
        f"{1 / two['capacity_before']:.2f} with the cores free); platform cost per trial beyond its training: "
        f"{s['overhead_per_trial_s']:.2f} s (1 worker); OMP_NUM_THREADS={s['omp_num_threads']}; load average "
        f"{s['load_before']:.1f} before, {s['load_after']:.1f} after",
    ])
