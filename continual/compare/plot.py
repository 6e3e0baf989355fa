"""The compare figures: `compare.png` (ACC, forgetting and stored floats per method row, one bar per
scenario, the spread over seeds as error bars) and `compare_memory.png` (ACC against stored floats:
what each row buys with its memory, the question of a matched-memory comparison).

The numbers each figure draws come from `bars` and `memory_points`, read from the same rows as
compare.csv, so a test checks the plotted data rather than pixels."""

from __future__ import annotations

import io
import math

from continual.compare.spec import Grid

# (csv column key, axis label, scale): the panels of compare.png
PANELS = (("acc", "ACC (%)", 100.0), ("avg_forgetting", "forgetting (%)", 100.0), ("stored_floats", "stored floats", 1.0))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bars(grid: Grid, rows: list[dict], key: str, scale: float = 1.0) -> dict[str, tuple[list[float], list[float]]]:
    """{scenario: (means, spreads)} of column `key` in the grid's row order, times `scale`; NaN for
    a missing mean (a failed or unselected cell), 0 for a missing spread (one seed: no error bar)."""
    by = {(r["method"], r["scenario"]): r for r in rows}
    out = {}
    for sc in grid.scenarios:
        got = [by.get((m, sc), {}) for m in grid.methods]
        means = [math.nan if r.get(f"{key}_mean") is None else scale * r[f"{key}_mean"] for r in got]
        spreads = [0.0 if r.get(f"{key}_std") is None else scale * r[f"{key}_std"] for r in got]
        out[sc] = (means, spreads)
    return out


def plot(grid: Grid, rows: list[dict]):
    plt = _pyplot()
    names, n_sc = list(grid.methods), max(len(grid.scenarios), 1)
    fig, axes = plt.subplots(1, len(PANELS), figsize=(3 * len(PANELS) + 0.6 * len(names) * n_sc, 3.8))
    width = 0.8 / n_sc
    for ax, (key, label, scale) in zip(axes, PANELS):
        for k, (sc, (mean, std)) in enumerate(bars(grid, rows, key, scale).items()):
            ax.bar([i + k * width for i in range(len(names))], mean, width, yerr=std, label=f"{sc}-IL", capsize=2)
        ax.set_xticks([i + width * (n_sc - 1) / 2 for i in range(len(names))], names, rotation=30, ha="right")
        ax.set_ylabel(label)
        if key == "stored_floats":
            ax.set_yscale("symlog", linthresh=1.0)  # rows differ by orders of magnitude; some store nothing
        else:
            ax.set_ylim(0, 100)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def memory_points(grid: Grid, rows: list[dict]) -> list[dict]:
    """One point per (row, scenario) with a result: stored floats (x) and ACC in % (y), each with
    its spread over seeds (0 with one seed)."""
    points = []
    for r in rows:
        if r.get("acc_mean") is None or r.get("stored_floats_mean") is None:
            continue
        points.append({"method": r["method"], "scenario": r["scenario"],
                       "floats": r["stored_floats_mean"], "floats_std": r.get("stored_floats_std") or 0.0,
                       "acc": 100 * r["acc_mean"], "acc_std": 100 * (r.get("acc_std") or 0.0)})
    return points


def memory_plot(grid: Grid, rows: list[dict]):
    """ACC against stored floats on a log axis (a row that stores nothing sits at 1, said on the axis)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    points = memory_points(grid, rows)
    for k, sc in enumerate(grid.scenarios):
        mine = [p for p in points if p["scenario"] == sc]
        if not mine:
            continue
        x = [max(p["floats"], 1.0) for p in mine]
        ax.errorbar(x, [p["acc"] for p in mine], xerr=[p["floats_std"] for p in mine], yerr=[p["acc_std"] for p in mine],
                    fmt="o", capsize=3, color=f"C{k}", label=f"{sc}-IL")
        for xi, p in zip(x, mine):
            ax.annotate(p["method"], (xi, p["acc"]), xytext=(4, 4), textcoords="offset points", fontsize=7)
    ax.set_xscale("log")
    zero = any(p["floats"] < 1.0 for p in points)
    ax.set_xlabel("stored floats (log scale)" + ("; 0 drawn at 1" if zero else ""))
    ax.set_ylabel("ACC (%)")
    ax.set_ylim(0, 100)
    ax.grid(True, which="major", alpha=0.3)
    if points:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def to_png(fig) -> bytes:
    """The figure as PNG bytes; the figure is closed (a long grid of plots would keep them all)."""
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def png(grid: Grid, rows: list[dict]) -> bytes:
    """compare.png's bytes."""
    return to_png(plot(grid, rows))


def memory_png(grid: Grid, rows: list[dict]) -> bytes:
    """compare_memory.png's bytes."""
    return to_png(memory_plot(grid, rows))
