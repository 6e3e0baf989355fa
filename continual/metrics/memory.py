"""What a method costs: trainable parameters per task and the floats it keeps.

`stored_floats` counts everything in the method's state besides its frozen backbone (the
network every task shares, `ContinualModule.backbone()`): parameters, persistent buffers and
the task state it carries (anchors, replay buffers, prototypes, teachers, keys, masks). It
counts values, not bytes: a float64 or an integer counts 1, a bool entry 1/32 (a bit, as it
would be packed; docs/metrics.md). The optimizer state
carried with `optim.carry_state` is training machinery, not the method's memory: not counted; nor
is a random generator's state (a `task_state` entry named `generator`: where a replay draw is, not
something learned or kept from the stream).
Every row of a comparison is read at this cost (README, docs/router.md).
"""

from __future__ import annotations

import statistics

import torch

from continual.metrics.base import Column, Metric
from continual.metrics.registry import register


def _floats(obj) -> float:
    if torch.is_tensor(obj):
        return obj.numel() / 32 if obj.dtype == torch.bool else float(obj.numel())
    if isinstance(obj, dict):
        return sum(_floats(v) for k, v in obj.items() if k != "generator")
    if isinstance(obj, (list, tuple)):
        return sum(_floats(v) for v in obj)
    return 0.0


def stored_floats(module) -> float:
    backbone = module.backbone()
    # every path to the backbone (the router's signature holds it too)
    prefixes = tuple(f"{name}." for name, m in module.named_modules(remove_duplicate=False) if m is backbone)
    total = 0.0
    for key, value in module.state_dict().items():
        if backbone is not None and key.startswith(prefixes):
            continue
        total += _floats(value["method"]) if key.endswith("_extra_state") else _floats(value)
    return total


def trainable_params(module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


@register
class Memory(Metric):
    """After each task: the parameters that task could change, and what the method keeps."""

    key = "memory"
    state = ("trainable", "stored")
    # compare reads every cost of a run together: its time besides its memory
    columns = (
        Column("wall_time_s", "wall time (s)", lambda m: m.get("wall_time_s"), "seconds"),
        Column("trainable_per_task", "trainable/task",
               lambda m: statistics.fmean(m["trainable_params_per_task"]) if m.get("trainable_params_per_task") else None, "count"),
        Column("stored_floats", "stored floats", lambda m: m.get("stored_floats"), "count"),
    )

    def row(self, counts, module) -> tuple[int, float]:
        # the requires_grad flags are still those of the task just learned
        return trainable_params(module), stored_floats(module)

    def keep(self, row) -> None:
        self.store(self.trainable, row[0])
        self.store(self.stored, row[1])

    def results(self) -> dict:
        return {"trainable_params_per_task": self.trainable, "stored_floats": self.stored[-1] if self.stored else None,
                "stored_floats_curve": self.stored}

    @classmethod
    def entries(cls, results) -> dict:
        return results  # the memory keys sit at metrics.json's top level

    def scalars(self) -> dict:
        return {"memory/stored_floats": self.stored[-1]} if self.stored else {}
