"""How a run's results read: metrics.json's text, metrics.csv's text, the accuracy heatmap, the
printed table, and the provenance of the code that made them.

Only formatting: the run folder (`continual.run.folder`) decides where these go and writes them.
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


def _pct(v) -> str:
    return "   n/a" if v is None else f"{100 * v:6.2f}"


def format_summary(metrics: dict) -> str:
    R = metrics["accuracy_matrix"]
    T = len(R[0]) if R else 0
    lines = [f"accuracy matrix (%), row i = after training task i, column j = task j   [{metrics['method']}, {metrics['scenario']}-IL]"]
    lines.append("          " + "".join(f"{'T' + str(j + 1):>8}" for j in range(T)))
    for i, row in enumerate(R):
        lines.append(f"after T{i + 1:<3}" + "".join(f"{100 * v:8.2f}" for v in row))
    lines.append(
        f"ACC {_pct(metrics['acc'])}   BWT {_pct(metrics['bwt'])}   FWT {_pct(metrics['fwt'])}   "
        f"avg forgetting {_pct(metrics['avg_forgetting'])}"
    )
    lines.append("forgetting per task: " + " ".join(_pct(f).strip() for f in metrics["forgetting"]))
    if metrics.get("task_inference"):
        lines.append(f"task inference {_pct(metrics['task_inference']['accuracy'])}")
    if metrics.get("padded_class"):
        p = metrics["padded_class"]
        lines.append(f"padded-class accuracy {_pct(p['accuracy'])}   padded win rate {_pct(p['win_rate'])}   would win unmasked {_pct(p['would_win_rate'])}")
    if metrics.get("mask_stability"):
        m = metrics["mask_stability"]
        lines.append(
            f"mask stability (probe masks of earlier tasks, threshold {m['threshold']}): unchanged {_pct(m['unchanged_fraction'])}   "
            f"mean Jaccard {_pct(m['mean_jaccard'])}   rerouted {_pct(m['rerouted_fraction'])}   mask density {_pct(m['mask_density'])}"
        )
    return "\n".join(lines)
