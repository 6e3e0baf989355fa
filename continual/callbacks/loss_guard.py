"""`FiniteLossGuard`: stop a task whose training loss is NaN or inf, naming the task and step.

A non-finite loss poisons the weights and every result after it, yet the run would go on and
write them. The first non-finite step is kept in a device-side tensor (no host sync per step)
and read on the steps the logger writes anyway (`log_every_n_steps`) and when the task's
training ends.
"""

from __future__ import annotations

import lightning as L
import torch

from continual.errors import TrainingError


class FiniteLossGuard(L.Callback):
    def __init__(self, task: int):
        self.task = task
        self.first_bad: torch.Tensor | None = None  # the first step with a non-finite loss; -1: none

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.first_bad = torch.full((), -1, dtype=torch.long, device=pl_module.device)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        bad = ~torch.isfinite(loss.detach())
        step = trainer.global_step  # after this batch's optimizer step: steps are counted from 1
        self.first_bad = torch.where(bad & (self.first_bad < 0), step, self.first_bad)
        if trainer._logger_connector.should_update_logs:
            self.check(pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(pl_module)

    def check(self, pl_module: L.LightningModule) -> None:
        step = int(self.first_bad) if self.first_bad is not None else -1
        if step >= 0:
            raise TrainingError(
                f"the training loss became NaN or inf in task {self.task + 1} at step {step}; lower optim.lr "
                f"(now {pl_module.optim_cfg.lr}) or check the data for NaN/inf values"
            )
