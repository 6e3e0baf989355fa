"""Every `method=`: its name mapped to its ContinualModule class.

Classes are imported only when that method is built, so `continual --help` stays fast. A class
with a `config_key` gets that config section as `hp` (see `ContinualModule.from_config`).
"""

from __future__ import annotations

import importlib

REGISTRY = {
    "router": "continual.routers.module:RouterModule",
    "finetune": "continual.baselines.finetune:FineTune",
    "joint": "continual.baselines.finetune:Joint",
    "ewc": "continual.baselines.ewc:EWC",
    "si": "continual.baselines.si:SI",
    "lwf": "continual.baselines.lwf:LwF",
    "er": "continual.baselines.replay:ExperienceReplay",
    "hat": "continual.baselines.hat:HAT",
    "packnet": "continual.baselines.packnet:PackNet",
}


def method_class(name: str):
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)
