"""The metric callbacks of a run, built from `cfg.metrics`, and what they leave behind.

The accuracy matrix (`Forgetting`) is always measured. The other callbacks are attached only
if enabled and the method exposes what they read (`continual.metrics.protocol`); otherwise
their metrics.json entry is null. The driver passes `callbacks` to every task's Trainer,
calls `begin(t)` before each test pass, and stores `export()` in its resume state.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from continual.metrics import plots, report
from continual.metrics.forgetting import Forgetting
from continual.metrics.padded import PaddedClass
from continual.metrics.stability import COLUMNS, MaskStability
from continual.metrics.task_inference import TaskInference

STABILITY_CSV = "mask_stability.csv"


class MetricSuite:
    def __init__(self, cfg, stream, module):
        T = len(stream)
        self.forgetting = Forgetting(stream.task_classes, stream.n_classes)
        optional = {
            MaskStability.key: cfg.metrics.mask_stability and MaskStability(T, cfg.metrics.probe_per_task),
            PaddedClass.key: cfg.metrics.padded_class and PaddedClass(T, getattr(module, "n_v", None)),
            TaskInference.key: cfg.metrics.task_inference and TaskInference(T),
        }
        self.optional = {k: cb if cb and cb.active(module) else None for k, cb in optional.items()}
        self.callbacks = [self.forgetting, *(cb for cb in self.optional.values() if cb)]

    def begin(self, after: int) -> None:
        for cb in self.callbacks:
            cb.begin(after)

    def export(self) -> dict:
        return {cb.key: cb.export() for cb in self.callbacks}

    def restore(self, state: dict) -> None:
        for cb in self.callbacks:
            cb.restore(state[cb.key])

    def results(self) -> dict:
        return {**self.forgetting.results(), **{k: cb.results() if cb else None for k, cb in self.optional.items()}}

    def scalars(self) -> dict:
        return {k: v for cb in self.callbacks for k, v in cb.scalars().items()}

    @property
    def stability(self) -> MaskStability | None:
        return self.optional[MaskStability.key]

    # -- files and W&B at the end of a run ---------------------------------------------------
    def write(self, run_dir: Path, metrics: dict) -> dict[str, Path]:
        """Per-sample CSV and the PNGs beyond the heatmap; returns the PNGs by W&B key."""
        title = report.run_title(metrics)
        pngs = {"accuracy_curves": report.save_png(plots.accuracy_curves(metrics["accuracy_matrix"], title), run_dir / "accuracy_curves.png")}
        if self.stability:
            buf = io.StringIO()
            csv.writer(buf).writerows([COLUMNS, *self.stability.rows])
            report.atomic_write(run_dir / STABILITY_CSV, buf.getvalue())
            final = self.stability.final_rows()
            fig = plots.stability_histograms([r[3] for r in final], [r[4] for r in final], f"mask stability after the last task: {title}")
            pngs["mask_stability_histograms"] = report.save_png(fig, run_dir / "mask_stability.png")
        return pngs

    def log(self, logger, metrics: dict, pngs: dict[str, Path]) -> None:
        import wandb

        flat = {}
        for key in ("mask_stability", "padded_class", "task_inference"):
            entry = metrics[key] or {}
            flat.update({f"final/{key}/{k}": v for k, v in entry.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        logger.log_metrics(flat)
        if self.stability:
            logger.log_table(key="mask_stability_per_sample", columns=list(COLUMNS), data=self.stability.rows)
            final = self.stability.final_rows()
            logger.experiment.log({
                "mask_stability/hamming": wandb.Histogram([r[3] for r in final]),
                "mask_stability/jaccard": wandb.Histogram([r[4] for r in final]),
            })
        if metrics["task_inference"]:
            C = metrics["task_inference"]["confusion_matrix"]
            logger.log_table(key="task_confusion", columns=["true_task"] + [f"inferred_T{j + 1}" for j in range(len(C))],
                             data=[[i + 1, *row] for i, row in enumerate(C)])
        logger.experiment.log({k: wandb.Image(str(p)) for k, p in pngs.items()})
