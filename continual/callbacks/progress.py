"""A tqdm bar per task ("Task 2/5 epoch 0"); validation and test passes stay quiet."""

from __future__ import annotations

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

    # Validation and test passes are a few large batches: their bars would only add noise.
    def init_validation_tqdm(self):
        bar = super().init_validation_tqdm()
        bar.disable = True
        return bar

    def init_test_tqdm(self):
        bar = super().init_test_tqdm()
        bar.disable = True
        return bar
