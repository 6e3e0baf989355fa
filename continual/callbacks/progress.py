"""A tqdm bar per task ("Task 2/5 epoch 0") on stderr; validation and test passes stay quiet.

The bars go to stderr so that stdout carries only results (`continual fit ... > out.txt` keeps
the accuracy matrix and summary, not kilobytes of `\\r` redraws).
"""

from __future__ import annotations

import sys
from contextlib import redirect_stdout

import lightning as L
from lightning.pytorch.callbacks import TQDMProgressBar


class TaskProgressBar(TQDMProgressBar):
    def __init__(self, n_tasks: int, **kwargs):
        super().__init__(leave=True, **kwargs)
        self.n_tasks = n_tasks

    def on_train_epoch_start(self, trainer: L.Trainer, *args) -> None:
        super().on_train_epoch_start(trainer, *args)
        task = trainer.lightning_module.current_task
        self.train_progress_bar.set_description(f"Task {task + 1}/{self.n_tasks} epoch {trainer.current_epoch}")

    # Lightning builds each bar with `file=sys.stdout`, read when the bar is made: made here with
    # stdout pointing at stderr, every bar writes to stderr.
    def init_sanity_tqdm(self):
        with redirect_stdout(sys.stderr):
            return super().init_sanity_tqdm()

    def init_train_tqdm(self):
        with redirect_stdout(sys.stderr):
            return super().init_train_tqdm()

    # Validation and test passes are a few large batches: their bars would only add noise.
    def init_validation_tqdm(self):
        with redirect_stdout(sys.stderr):
            bar = super().init_validation_tqdm()
        bar.disable = True
        return bar

    def init_test_tqdm(self):
        with redirect_stdout(sys.stderr):
            bar = super().init_test_tqdm()
        bar.disable = True
        return bar

    def init_predict_tqdm(self):
        with redirect_stdout(sys.stderr):
            return super().init_predict_tqdm()
