"""Fine-tuning: the whole MLP trained on each task in turn; nothing protects old tasks (the lower bound).

Also the base class of the baselines that train the MLP itself (`self.net`), and
`past_weight`, the weight of past tasks' loss those baselines share.
"""

from __future__ import annotations

from continual.methods import register
from continual.models.continual_module import ContinualModule
from continual.models.mlp import MLP


@register("finetune")
class FineTune(ContinualModule):
    def __init__(self, net: MLP, **kwargs):
        super().__init__(**kwargs)
        self.net = net

    def logits(self, batch: dict):
        return self.net(batch["x"])


def past_weight(weight: float | None, task: int) -> float:
    """Weight of the loss on past tasks while task `task` (0-based) is learned; the current
    task's loss gets 1 - it. None: 1 - 1/(task+1), each task seen so far counts equally
    (van de Ven & Tolias 2019)."""
    return weight if weight is not None else 1.0 - 1.0 / (task + 1)
