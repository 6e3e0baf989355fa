"""Plain-text tables of the benchmark's results (the JSON holds every run)."""

from __future__ import annotations


def _spread(s: dict) -> str:
    return f"{s['median']:.2f} [{s['min']:.2f}-{s['max']:.2f}]"


def workload_table(rows: dict) -> str:
    """One row per workload; `ratio` is its median time over its reference's (`x raw`, ...)."""
    lines = [
        f"{'workload':<13} {'wall s median [min-max]':>24} {'samples/s':>10} {'s/task':>7} {'peak MB':>8} {'ratio':>18} {'acc':>6}",
    ]
    for name, r in rows.items():
        wall = r["wall_s"]["median"]
        acc = f"{100 * r['final_acc']:.1f}" if r["final_acc"] is not None else "-"
        ref = r["reference"]
        ratio = f"{wall / rows[ref]['wall_s']['median']:.2f} x {ref}" if ref in rows else "-"
        lines.append(
            f"{name:<13} {_spread(r['wall_s']):>24} {r['train_samples'] / wall:>10.0f} {wall / r['n_tasks']:>7.2f} "
            f"{r['peak_mem_mb']:>8.0f} {ratio:>18} {acc:>6}"
        )
    for name, who in (("lightning", "a bare Lightning Trainer"), ("finetune", "continual fine-tuning")):
        split = overhead(rows, name)
        if split is not None:
            lines.append(f"{who} over the raw loop: {split['per_step_ms']:.2f} ms per training step, "
                         f"{split['per_run_s']:.2f} s per run (growth from 1 to 5 epochs per task, medians)")
    return "\n".join(lines)


def overhead(rows: dict, name: str) -> dict | None:
    """What workload `name` (and `<name>_5ep`) adds over the raw loop, split into a cost per
    training step and a fixed cost per run: the extra epochs add only steps and validation
    passes, so a cost per epoch (a validation loop's setup) is spread over the steps, which with
    few steps per epoch (Split-Digits: 2-3) inflates the per-step figure."""
    names = ("raw", name, "raw_5ep", f"{name}_5ep")
    if not set(names) <= set(rows):
        return None
    raw, one, raw5, five = (rows[k]["wall_s"]["median"] for k in names)
    steps = rows[name]["train_steps"]
    per_step = ((five - raw5) - (one - raw)) / (rows[f"{name}_5ep"]["train_steps"] - steps)
    return {"per_step_ms": 1e3 * per_step, "per_run_s": one - raw - per_step * steps}


def token_table(t: dict) -> str:
    kinds = list(t["seconds"])
    lines = [f"{'tokens':>7} " + " ".join(f"{k + ' ms':>24}" for k in kinds)]
    for i, n in enumerate(t["tokens"]):
        cells = (t["seconds"][k][i] for k in kinds)
        lines.append(f"{n:>7} " + " ".join(f"{1e3 * c['median']:>10.2f} [{1e3 * c['min']:.2f}-{1e3 * c['max']:.2f}]".rjust(24) for c in cells))
    fit = t["exponent_fit_tokens"]
    lines.append(f"growth exponent (log-log slope, {fit[0]}-{fit[-1]} tokens): " + ", ".join(f"{k} {e:.2f}" for k, e in t["exponent"].items()))
    return "\n".join(lines)


def startup_table(s: dict) -> str:
    lines = [f"python -c 'import torch, lightning': {_spread(s['import_s'])} s"]
    if "import_cuda_s" in s:
        lines.append(f"  ... and start CUDA (one tensor on the GPU): {_spread(s['import_cuda_s'])} s")
    lines += [
        f"continual --help: {_spread(s['help_s'])} s",
        f"whole process, the raw loop on the same config: {_spread(s['raw_s'])} s",
        f"whole process `{s['fit_command']}`: {_spread(s['fit_s'])} s",
        f"  adds beyond the imports{' and CUDA start' if 'import_cuda_s' in s else ''}: {s['fit_adds_s']:.2f} s;"
        f" {s['fit_over_raw']:.2f} x the raw loop's process (medians)",
    ]
    return "\n".join(lines)
