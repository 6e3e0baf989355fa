"""Enforce that frozen modules stay frozen: hash before and after every task.

The first hash taken is the reference for the whole stream, so a change made between tasks
(outside any Trainer) is caught at the next task start too.
"""

from __future__ import annotations

import lightning as L

from continual.errors import FrozenBackboneError
from continual.models.backbones import state_hash


class FrozenBackboneGuard(L.Callback):
    def __init__(self) -> None:
        self.reference: dict[str, str] = {}

    def state_dict(self) -> dict:
        return {"reference": self.reference}

    def load_state_dict(self, state: dict) -> None:
        self.reference = dict(state["reference"])

    def check(self, pl_module: L.LightningModule, when: str) -> None:
        for name, module in pl_module.frozen_modules().items():
            trainable = [n for n, p in module.named_parameters() if p.requires_grad]
            if trainable:
                raise FrozenBackboneError(f"frozen module '{name}' has trainable parameters {trainable[:3]} {when}")
            digest = state_hash(module)
            expected = self.reference.setdefault(name, digest)
            if digest != expected:
                raise FrozenBackboneError(
                    f"frozen module '{name}' changed {when} (hash {expected[:12]} -> {digest[:12]}): "
                    f"something wrote to its weights; the run is aborted"
                )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(pl_module, f"before task {pl_module.current_task}")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(pl_module, f"while learning task {pl_module.current_task}")
