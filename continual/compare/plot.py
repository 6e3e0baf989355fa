"""The compare plot: ACC (mean, std as error bars) per method row, one bar per scenario."""

from __future__ import annotations

import io
import math

from continual.compare.spec import Grid


def plot(grid: Grid, rows: list[dict]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = {(r["method"], r["scenario"]): r for r in rows}
    names, n_sc = list(grid.methods), len(grid.scenarios)
    fig, ax = plt.subplots(figsize=(1.5 + 0.9 * len(names) * max(n_sc, 1) / 2, 3.5))
    width = 0.8 / n_sc
    for k, sc in enumerate(grid.scenarios):
        mean = [100 * (by.get((m, sc), {}).get("acc_mean") or math.nan) for m in names]
        std = [100 * (by.get((m, sc), {}).get("acc_std") or 0.0) for m in names]
        ax.bar([i + k * width for i in range(len(names))], mean, width, yerr=std, label=f"{sc}-IL", capsize=2)
    ax.set_xticks([i + width * (n_sc - 1) / 2 for i in range(len(names))], names, rotation=30, ha="right")
    ax.set_ylabel("ACC (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def png(grid: Grid, rows: list[dict]) -> bytes:
    """The plot as PNG bytes (the figure is closed: a long grid of plots would keep them all)."""
    import matplotlib.pyplot as plt

    fig = plot(grid, rows)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
