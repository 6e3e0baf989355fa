"""Lightning's loggers on one stream-wide step axis (see `continual.run_logger.StepAxis`).

Each is the Lightning logger itself (so `isinstance(trainer.logger, WandbLogger)` holds in your
callbacks), with the steps a Trainer logs moved by the steps of the tasks before it.
"""

from __future__ import annotations

from lightning.pytorch.loggers import CSVLogger, MLFlowLogger, TensorBoardLogger, WandbLogger


class _StreamSteps:
    def __init__(self, axis, *args, **kwargs):
        self.axis = axis
        super().__init__(*args, **kwargs)

    def log_metrics(self, metrics, step=None):
        """A Trainer's step, moved onto the stream's axis."""
        super().log_metrics(metrics, None if step is None else step + self.axis.offset)

    def log_stream_metrics(self, metrics: dict, step: int) -> None:
        """Metrics at a step already on the stream's axis (the task loop's per-task metrics)."""
        super().log_metrics(metrics, step)


class StreamWandbLogger(_StreamSteps, WandbLogger):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Lightning passes `anonymous=None` to wandb.init even when unset, and wandb >= 0.19 warns
        # that the setting "has no effect" on every run: pass it only when it was asked for.
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)


class StreamTensorBoardLogger(_StreamSteps, TensorBoardLogger):
    pass


class StreamCSVLogger(_StreamSteps, CSVLogger):
    pass


class StreamMLFlowLogger(_StreamSteps, MLFlowLogger):
    pass
