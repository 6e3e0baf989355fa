"""The metric callbacks of a run, built from `cfg.metrics`, and what they leave behind.

The accuracy matrix (`Forgetting`) and the method's cost (`Memory`) are always measured. The other callbacks are attached only
if enabled and the method's `evaluate` returns what they read (`continual.metrics.protocol`);
otherwise their metrics.json entry is null. The task loop passes `callbacks` to every task's
Trainer, calls `begin(t)` before each test pass, and stores `state_dict()` in its resume state.
"""

from __future__ import annotations

import csv
import io

from continual.metrics import plots, report
from continual.metrics.forgetting import Forgetting
from continual.metrics.memory import Memory
from continual.metrics.padded import PaddedClass
from continual.metrics.stability import COLUMNS, MaskStability
from continual.metrics.task_inference import TaskInference

STABILITY_CSV = "mask_stability.csv"


class MetricSuite:
    def __init__(self, cfg, stream, module):
        T = len(stream)
        self.forgetting, self.memory = Forgetting(stream.task_classes, stream.n_classes), Memory()
        optional = {
            MaskStability.key: cfg.metrics.mask_stability and MaskStability(T, cfg.metrics.probe_per_task),
            PaddedClass.key: cfg.metrics.padded_class and PaddedClass(T, module.within_task.n_v if hasattr(module, "within_task") else None),
            TaskInference.key: cfg.metrics.task_inference and TaskInference(T),
        }
        self.optional = {k: cb if cb and cb.active(module) else None for k, cb in optional.items()}
        self.callbacks = [self.forgetting, self.memory, *(cb for cb in self.optional.values() if cb)]

    def begin(self, after: int) -> None:
        for cb in self.callbacks:
            cb.begin(after)

    def state_dict(self) -> dict:
        return {cb.key: cb.state_dict() for cb in self.callbacks}

    def load_state_dict(self, state: dict) -> None:
        for cb in self.callbacks:
            cb.load_state_dict(state[cb.key])

    @property
    def tasks_done(self) -> int:
        return self.forgetting.tasks_done

    def results(self) -> dict:
        optional = {k: cb.results() if cb else None for k, cb in self.optional.items()}
        density = optional[MaskStability.key]["mask_density"] if optional[MaskStability.key] else None
        return {**self.forgetting.results(), **self.memory.results(), "mask_density": density, **optional}

    def scalars(self) -> dict:
        return {k: v for cb in self.callbacks for k, v in cb.scalars().items()}

    @property
    def stability(self) -> MaskStability | None:
        return self.optional[MaskStability.key]

    # -- files and W&B at the end of a run ---------------------------------------------------
    def files(self, metrics: dict) -> dict:
        """File name -> content (CSV text, or a matplotlib figure for a .png) beyond the heatmap."""
        title = report.run_title(metrics)
        out = {"accuracy_curves.png": plots.accuracy_curves(metrics["accuracy_matrix"], title)}
        if self.stability:
            buf = io.StringIO()
            csv.writer(buf).writerows([COLUMNS, *self.stability.rows])
            out[STABILITY_CSV] = buf.getvalue()
            final = self.stability.final_rows()
            out["mask_stability.png"] = plots.stability_histograms(
                [r[3] for r in final], [r[4] for r in final], f"mask stability after the last task: {title}"
            )
        return out

    @staticmethod
    def final_scalars(metrics: dict) -> dict:
        """The optional metrics' numbers of the finished stream, as `final/<metric>/<key>`."""
        flat = {}
        for key in ("mask_stability", "padded_class", "task_inference"):
            entry = metrics[key] or {}
            flat.update({f"final/{key}/{k}": v for k, v in entry.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        return flat

    def log(self, logger, metrics: dict) -> None:
        """Tables and histograms of the finished stream (W&B only: `RunLogger.finish` calls this)."""
        import wandb

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
