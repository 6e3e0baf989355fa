"""Fine-tuning and joint training: the lower and upper bounds every continual method sits between.

Fine-tuning trains the whole MLP on each task in turn; nothing protects old tasks. Joint
training is the same model and loss fed every task's data at once (the datamodule serves the
union on the first task and nothing afterwards, see `TaskStreamDataModule`).
"""

from __future__ import annotations

from continual.models.continual_module import ContinualModule
from continual.models.mlp import MLP


class FineTune(ContinualModule):
    def __init__(self, net: MLP, **kwargs):
        super().__init__(**kwargs)
        self.net = net

    def logits(self, batch: dict):
        return self.net(batch["x"])


class Joint(FineTune):
    joint = True

    def set_task(self, t: int) -> None:
        """Every task is learned at once: class-IL outputs span the whole stream from the start."""
        self.current_task = self.n_tasks - 1


def past_weight(weight: float | None, task: int) -> float:
    """Weight of the loss on past tasks while task `task` (0-based) is learned; the current
    task's loss gets 1 - it. None: 1 - 1/(task+1), each task seen so far counts equally
    (van de Ven & Tolias 2019)."""
    return weight if weight is not None else 1.0 - 1.0 / (task + 1)
