"""The backbone registry: `backbone.name=<name>` for the built-ins, `backbone.name=<module>:<function>`
for your own (docs/backbones.md); and what every backbone gets: frozen, fingerprinted.

A backbone is one file of this package: a function `(cfg, stream, n_out) -> nn.Module` (cfg: the
whole run config; the module ends in an `n_out`-wide head) decorated with `@register("name")`,
its docstring's first line its help. Installed packages add backbones under the entry-point
group `continual.backbones`. The fingerprint (`state_hash`) is what `FrozenBackboneGuard`
compares before and after every task: a frozen backbone whose bytes changed aborts the run.
"""

from __future__ import annotations

import hashlib

import torch
from omegaconf import DictConfig
from torch import nn

from continual.registry import Registry

BACKBONES = Registry("backbone", "backbone.name", ("continual.models.backbones",), "continual.backbones",
                     user="<module>:<function>", what="a function (cfg, stream, n_out) -> nn.Module")
register = BACKBONES.register


def build_backbone(cfg: DictConfig, stream, n_out: int) -> nn.Module:
    """The backbone `cfg.backbone.name` selects, with an `n_out`-wide head, built under the run's seed."""
    build = BACKBONES.get(cfg.backbone.name)
    torch.manual_seed(cfg.seed)
    return build(cfg, stream, n_out)


def state_hash(module: nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def freeze(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()
