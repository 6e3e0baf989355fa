"""The backbone registry: `backbone.name=<name>` names the frozen *feature extractor* (built-ins,
or `backbone.name=<module>:<function>` for your own; docs/backbones.md); after it comes the
frozen MLP (`backbone.hidden`) that the router and the baselines act on.

An extractor is one file of this package: a function `(cfg, input_shape) -> nn.Module` (cfg: the
whole run config; input_shape: one sample's shape, e.g. (1, 28, 28)) that maps a float batch
[N, *input_shape] to features [N, D], decorated with `@register("name")`, its docstring's first
line its help (`torchvision=True`: it loads torchvision's named weights itself). Installed packages add extractors under the entry-point group
`continual.backbones`. `build_extractor` builds it seeded, loads `backbone.weights`, and freezes
it; `continual.features` runs it once over the stream, and `build_backbone` builds the MLP on the
D features. The fingerprint (`state_hash`) is what `FrozenBackboneGuard` compares before and
after every task, and part of the feature cache's key.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from continual.errors import CheckpointError, ConfigError
from continual.registry import Registry

BACKBONES = Registry("backbone", "backbone.name", ("continual.models.backbones",), "continual.backbones",
                     user="<module>:<function>", what="a function (cfg, input_shape) -> nn.Module (a feature extractor)", takes=2)
register = BACKBONES.register


def build_extractor(cfg: DictConfig, input_shape: tuple[int, ...]) -> nn.Module:
    """The extractor `cfg.backbone.name` selects for samples of `input_shape`: built under the run's
    seed (without touching the global random state), its `backbone.weights` loaded, frozen, in eval mode."""
    build = BACKBONES.get(cfg.backbone.name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        net = build(cfg, tuple(input_shape))
    if not isinstance(net, nn.Module):
        raise ConfigError(f"backbone.name='{cfg.backbone.name}' returned {type(net).__name__}, not a torch nn.Module")
    weights = cfg.backbone.get("weights")
    if weights and is_torchvision_weights(weights):  # a named torchvision weight is the entry's to load
        if not BACKBONES.facts(cfg.backbone.name).get("torchvision"):
            raise ConfigError(f"backbone.weights={weights} names torchvision weights, but backbone.name={cfg.backbone.name} takes a state_dict file; "
                              f"use backbone.name=resnet18 or vit_b_16 for torchvision's weights")
    elif weights:
        load_weights(net, weights)
    return freeze(net)


def is_torchvision_weights(weights: str) -> bool:
    """`backbone.weights` names a torchvision weight (ResNet18_Weights.IMAGENET1K_V1), not a file."""
    enum, _, member = str(weights).partition(".")
    return enum.endswith("_Weights") and member.isidentifier() and not Path(weights).exists()


def read_state_dict(path: str, key: str, give: str) -> dict:
    """The state_dict in the file `path` (`weights_only`; a Lightning-style {"state_dict": ...} is
    unwrapped); one line naming `key` if it is missing (with `give`: what to give instead) or unreadable."""
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"{key} '{path}' not found; give {give}")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{key} '{path}' cannot be read ({type(err).__name__}); is it a torch state_dict?") from None
    return state.get("state_dict", state) if isinstance(state, dict) else state


def load_weights(net: nn.Module, path: str) -> None:
    """Load a state_dict file (`weights_only`) into the extractor; every key must fit."""
    state = read_state_dict(path, "backbone.weights",
                            "a state_dict file of the extractor, or a torchvision weights name such as ResNet18_Weights.IMAGENET1K_V1")
    own = net.state_dict()
    for k, v in own.items():
        if k not in state or tuple(state[k].shape) != tuple(v.shape):
            got = tuple(state[k].shape) if k in state else "missing"
            raise CheckpointError(f"backbone.weights '{path}' does not fit the extractor: '{k}' is {got}, expected {tuple(v.shape)}")
    extra = sorted(set(state) - set(own))
    if extra:
        raise CheckpointError(f"backbone.weights '{path}' holds keys the extractor does not have, e.g. '{extra[0]}'; save the extractor's own state_dict")
    net.load_state_dict(state)


def extract(extractor: nn.Module, x: torch.Tensor, batch_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """extractor(x) in batches on `device`, as float32 [N, D] on the CPU (no per-sample collation)."""
    extractor = extractor.to(device)
    with torch.inference_mode():
        if not len(x):  # an empty split still has the features' width
            return extractor(torch.zeros(1, *x.shape[1:], device=device)).float().flatten(1)[:0].cpu()
        return torch.cat([extractor(chunk.to(device, non_blocking=True)).float().flatten(1).cpu() for chunk in x.split(batch_size)])


def build_backbone(cfg: DictConfig, stream, n_out: int) -> nn.Module:
    """The frozen MLP (`backbone.hidden`) on the stream's features, with an `n_out`-wide head, built under the run's seed."""
    from continual.models.backbones.mlp import build_mlp

    torch.manual_seed(cfg.seed)
    return build_mlp(cfg, stream, n_out)


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
