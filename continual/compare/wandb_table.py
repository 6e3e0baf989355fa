"""The compare summary in W&B: its table and plot, in a run of their own under the compare folder."""

from __future__ import annotations

import os

from continual.compare.spec import Grid


def log_wandb(grid: Grid, rows: list[dict], project: str, mode: str | None) -> None:
    """Offline unless the user chose a mode (logger.mode, else $WANDB_MODE), as every run."""
    import wandb

    run = wandb.init(project=project, name=f"compare-{grid.out.name}", dir=str(grid.out), mode=mode or os.environ.get("WANDB_MODE", "offline"), job_type="compare")
    run.log({"compare": wandb.Table(columns=list(rows[0]), data=[list(r.values()) for r in rows])})
    run.log({"compare_plot": wandb.Image(str(grid.out / "compare.png"))})
    run.log({"compare_memory_plot": wandb.Image(str(grid.out / "compare_memory.png"))})
    run.finish()
