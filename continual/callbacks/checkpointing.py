"""`TaskCheckpoint`: the mid-task `last.ckpt` that `continual.resume` resumes from.

A `ModelCheckpoint` that keeps only `last.ckpt` (every few minutes of training, and once more
when Lightning stops training on SIGTERM), tagged with the task, the config fingerprint and the RNG
states, so a resumed task continues with exactly the remaining batches and random numbers.
It is written with `atomic_write` in the run directory itself: Lightning's own save stages
the file in /tmp, and across file systems its move is a copy that a kill or a full disk tears.
"""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from continual import resume
from continual.run.files import atomic_write


class TaskCheckpoint(ModelCheckpoint):
    CHECKPOINT_NAME_LAST = resume.LAST

    def __init__(self, run_dir: Path, task: int, fingerprint: dict, every_n_steps: int, every_s: float):
        """Every `every_n_steps` steps if > 0, else every `every_s` seconds of training (0: never
        mid-task). Time, not steps, by default: on a GPU a step takes a millisecond and a
        checkpoint far longer, on a CPU the reverse."""
        by_time = every_n_steps == 0 and every_s > 0
        super().__init__(
            dirpath=resume.checkpoint_dir(run_dir),
            save_last=True,
            save_top_k=0,
            every_n_train_steps=every_n_steps,
            train_time_interval=timedelta(seconds=every_s) if by_time else None,
            enable_version_counter=False,
        )
        self.task, self.fingerprint = task, fingerprint

    @property
    def state_key(self) -> str:
        # Lightning names every hook call of a callback by its state key (a profiler label); a
        # ModelCheckpoint's is a repr of its arguments, built anew at each call, several per step
        return "TaskCheckpoint"

    @property
    def last_path(self) -> str:
        return str(Path(self.dirpath) / f"{self.CHECKPOINT_NAME_LAST}{self.FILE_EXTENSION}")

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        self._write(trainer, filepath)
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath

    @staticmethod
    def _write(trainer: L.Trainer, filepath: str) -> None:
        """`trainer.save_checkpoint`, with the file written in place atomically (rank 0)."""
        checkpoint = trainer._checkpoint_connector.dump_checkpoint(weights_only=False)
        if trainer.is_global_zero:
            buf = io.BytesIO()
            torch.save(checkpoint, buf)
            atomic_write(Path(filepath), buf.getvalue())
        trainer.strategy.barrier("TaskCheckpoint")

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint["continual"] = {"task": self.task, "config": self.fingerprint, "rng": resume.rng_state()}

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        resume.set_rng_state(checkpoint["continual"]["rng"])

    @staticmethod
    def _at_epoch_end(trainer: L.Trainer) -> bool:
        # A checkpoint taken after an epoch's last batch (or during its validation) does not
        # resume to the same weights in Lightning 2.6: keep the previous one and replay instead.
        return trainer.fit_loop.epoch_loop.batch_progress.is_last_batch

    def on_train_batch_end(self, trainer: L.Trainer, *args, **kwargs) -> None:
        if not self._at_epoch_end(trainer):
            super().on_train_batch_end(trainer, *args, **kwargs)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        # Lightning raises this at a batch boundary, so the state saved here is consistent.
        if isinstance(exception, SIGTERMException) and not self._at_epoch_end(trainer):
            self._write(trainer, self.last_path)
