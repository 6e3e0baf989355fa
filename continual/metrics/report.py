"""How a run's results read: metrics.json's text, metrics.csv's text, the accuracy heatmap, the
printed table, and the provenance of the code that made them.

Only formatting: the run folder (`continual.rundir.folder`) decides where these go and writes them.
"""

from __future__ import annotations

import csv
import io
import json
import platform
import re
import subprocess
from pathlib import Path

import continual
from continual.metrics.registry import summary_lines


def provenance() -> dict:
    import lightning
    import torch

    try:
        out = subprocess.run(
            ["git", "rev-parse", "--verify", "-q", "HEAD"],
            cwd=Path(continual.__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        commit = out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "continual": continual.__version__,
        "git_commit": commit,
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "python": platform.python_version(),
    }


def to_json(metrics: dict) -> str:
    """Indented JSON with innermost lists of numbers kept on one line (a matrix reads as rows)."""
    text = json.dumps(metrics, indent=2)
    scalars = r"\[\s+((?:[-\w.+]+,\s+)*[-\w.+]+)\s+\]"  # a list of numbers / null / booleans
    return re.sub(scalars, lambda m: "[" + " ".join(m.group(1).split()) + "]", text)


def metrics_csv(metrics: dict) -> str:
    """metrics.csv's text, long format: one row per (after_task, eval_task) with exact counts."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["after_task", "eval_task", "accuracy", "correct", "total"])
    counts = metrics["counts"]
    for i, row in enumerate(metrics["accuracy_matrix"]):
        for j, acc in enumerate(row):
            w.writerow([i, j, f"{acc:.6f}", counts["correct"][i][j], counts["total"][i][j]])
    return buf.getvalue()


def plot_accuracy_matrix(matrix: list[list[float]], title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    T = len(matrix[0]) if matrix else 0
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * T, 0.8 + 0.8 * max(len(matrix), 1)))
    im = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            ax.text(j, i, f"{100 * v:.1f}", ha="center", va="center", color="white" if v < 0.6 else "black", fontsize=8)
    ax.set_xticks(range(T), [f"T{j + 1}" for j in range(T)])
    ax.set_yticks(range(len(matrix)), [f"after T{i + 1}" for i in range(len(matrix))])
    ax.set_xlabel("evaluated task")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, label="accuracy")
    fig.tight_layout()
    return fig


def png_bytes(fig) -> bytes:
    """A figure as PNG bytes; the figure is closed (a long sweep would otherwise keep them all)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def run_title(metrics: dict) -> str:
    return f"{metrics['method']} / {metrics['stream']} / {metrics['scenario']}-IL"


def format_summary(metrics: dict) -> str:
    """The summary printed at the end of a run: each metric's lines (`continual.metrics.registry`)."""
    return "\n".join(summary_lines(metrics))
