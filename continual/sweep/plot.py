"""The sweep figure, `sweep.png` beside results.csv: a heatmap of the metric when two keys vary
(h x N_v: which corner wins, and whether one key matters at all), otherwise one panel per varying
key with the metric against its value. Only finished trials are drawn.

`heatmap_data` and `panel_data` prepare the numbers drawn, from the same records as results.csv,
so a test checks them rather than pixels."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from continual.sweep.spec import format_value


def _finished(history: list[dict]) -> list[dict]:
    return [h for h in history if h["metric"] is not None]


def varying(spec: dict, history: list[dict]) -> list[str]:
    """The sweep's keys that take more than one value over the finished trials."""
    done = _finished(history)
    return [k for k in spec["parameters"] if len({format_value(h["params"].get(k)) for h in done}) > 1]


def _order(values: list) -> list:
    """Distinct values, by size when they are all numbers, else in order of first appearance."""
    distinct = list(dict.fromkeys(format_value(v) for v in values))
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    return sorted(distinct, key=float) if numbers else distinct


def heatmap_data(spec: dict, history: list[dict], x: str, y: str) -> tuple[list[str], list[str], list[list[float]]]:
    """(x values, y values, grid[y][x]): the mean metric of the finished trials at each pair (NaN: none)."""
    done = _finished(history)
    xs, ys = _order([h["params"].get(x) for h in done]), _order([h["params"].get(y) for h in done])
    cells: dict[tuple[str, str], list[float]] = {}
    for h in done:
        cells.setdefault((format_value(h["params"].get(x)), format_value(h["params"].get(y))), []).append(h["metric"])
    grid = [[statistics.fmean(cells[(a, b)]) if (a, b) in cells else math.nan for a in xs] for b in ys]
    return xs, ys, grid


def panel_data(spec: dict, history: list[dict], key: str) -> tuple[list[str], list[float], list[float]]:
    """(value labels, each trial's position on the axis, its metric): a categorical axis of the key's values."""
    done = _finished(history)
    labels = _order([h["params"].get(key) for h in done])
    at = {v: i for i, v in enumerate(labels)}
    return labels, [float(at[format_value(h["params"].get(key))]) for h in done], [h["metric"] for h in done]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure(spec: dict, history: list[dict]):
    plt = _pyplot()
    metric, keys = spec["metric"]["name"], varying(spec, history) or list(spec["parameters"])[:1]
    if len(keys) == 2:
        xs, ys, grid = heatmap_data(spec, history, *keys)
        fig, ax = plt.subplots(figsize=(1.8 + 0.9 * len(xs), 1.4 + 0.6 * len(ys)))
        image = ax.imshow(grid, cmap="viridis", aspect="auto", origin="lower")
        for i, row in enumerate(grid):
            for j, v in enumerate(row):
                if not math.isnan(v):
                    ax.text(j, i, f"{v:.4f}", ha="center", va="center", fontsize=8, color="k" if image.norm(v) > 0.6 else "w")
        ax.set_xticks(range(len(xs)), xs)
        ax.set_yticks(range(len(ys)), ys)
        ax.set_xlabel(keys[0])
        ax.set_ylabel(keys[1])
        fig.colorbar(image, ax=ax, label=metric)
        ax.set_title(f"sweep {spec['name']}: mean {metric}", fontsize=9)
    else:
        fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.2), squeeze=False)
        for ax, key in zip(axes[0], keys):
            labels, at, values = panel_data(spec, history, key)
            ax.plot(at, values, "o", alpha=0.7)
            ax.set_xticks(range(len(labels)), labels, rotation=30 if len(labels) > 4 else 0)
            ax.set_xlabel(key)
            ax.set_ylabel(metric)
        fig.suptitle(f"sweep {spec['name']}", fontsize=9)
    fig.tight_layout()
    return fig


def write(sweep_dir: Path, spec: dict, history: list[dict]) -> Path | None:
    """sweep.png in `sweep_dir` (None while no trial has finished)."""
    import io

    from continual.rundir.files import atomic_write

    if not _finished(history):
        return None
    fig, plt = figure(spec, history), _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write(sweep_dir / "sweep.png", buf.getvalue())
    return sweep_dir / "sweep.png"


def log_wandb(path: Path, spec: dict, project: str, mode: str | None) -> None:
    """The figure in a W&B run of its own in the sweep folder (offline unless the user chose a mode)."""
    import os

    import wandb

    run = wandb.init(project=project, name=f"sweep-{spec['name']}", dir=str(path.parent), job_type="sweep_summary",
                     mode=mode or os.environ.get("WANDB_MODE", "offline"))
    run.log({"sweep_plot": wandb.Image(str(path))})
    run.finish()
