"""`FiniteLossGuard`: stop a task whose training loss is NaN or inf, naming the task and step.

A non-finite loss poisons the weights and every result after it, yet the run would go on and
write them. Each step's loss is only kept (no kernel, no host sync per step); they are checked
together on the steps the logger writes anyway (`log_every_n_steps`) and when the task's
training ends.
"""

from __future__ import annotations

import lightning as L
import torch

from continual.errors import TrainingError
from continual.lightning_internals import logs_at


class FiniteLossGuard(L.Callback):
    def __init__(self, task: int):
        self.task = task
        self.pending: list[tuple[int, torch.Tensor]] = []  # (step, loss) of the steps not checked yet

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        self.pending.append((trainer.global_step, loss.detach()))  # after this batch's optimizer step: from 1
        if logs_at(trainer, trainer.global_step):
            self.check(pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(pl_module)

    def check(self, pl_module: L.LightningModule) -> None:
        if not self.pending:
            return
        steps, losses = zip(*self.pending)
        self.pending = []
        finite = torch.stack(losses).isfinite().tolist()
        if not all(finite):
            raise TrainingError(
                f"the training loss became NaN or inf in task {self.task + 1} at step {steps[finite.index(False)]}; "
                f"lower optim.lr (now {pl_module.optim_cfg.lr}) or check the data for NaN/inf values"
            )
