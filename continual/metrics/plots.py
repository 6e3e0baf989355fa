"""The plots a person looks at after the heatmap: each task's accuracy over the stream, and how
far probe samples' masks moved (`continual.metrics.report` draws the heatmap and saves PNGs)."""

from __future__ import annotations


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def accuracy_curves(matrix: list[list[float]], title: str):
    """One line per task: its accuracy after each task of the stream, from when it is learned."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    steps = range(1, len(matrix) + 1)
    for j in range(len(matrix[0]) if matrix else 0):
        learned = [(i, row[j]) for i, row in zip(steps, matrix) if i > j]
        if learned:
            ax.plot(*zip(*learned), marker="o", label=f"T{j + 1}")
    ax.set_xticks(list(steps))
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("after training task")
    ax.set_ylabel("test accuracy")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def stability_histograms(hamming: list[int], jaccard: list[float], title: str):
    """Hamming distance and Jaccard overlap to the mask each probe sample had when its task was learned."""
    plt = _pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.2))
    a.hist(hamming, bins=30)
    a.set_xlabel("Hamming distance (mask units)")
    a.set_ylabel("probe samples")
    b.hist(jaccard, bins=30, range=(0, 1))
    b.set_xlabel("Jaccard overlap")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
