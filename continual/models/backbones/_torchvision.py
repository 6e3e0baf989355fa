"""What the torchvision extractors (`resnet18`, `vit_b_16`) share: a named torchvision weight,
fetched only with `data.download=true`, and the input transform that fits images to the network
(grey to three channels; with ImageNet weights, resized to 224 and normalized as they were trained)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from continual.errors import ConfigError
from continual.models.backbones import is_torchvision_weights


def named_weights(cfg: DictConfig, arch: str):
    """The torchvision weights enum member `backbone.weights` names for `arch`, or None (random
    weights, or a state_dict file that `build_extractor` loads)."""
    name = cfg.backbone.get("weights")
    if not name or not is_torchvision_weights(name):
        return None
    from torchvision.models import get_weight

    try:
        weights = get_weight(name)
    except (ValueError, KeyError, AttributeError):
        raise ConfigError(f"backbone.weights='{name}' is not a torchvision weights name nor a file; e.g. ResNet18_Weights.IMAGENET1K_V1, or the path of a state_dict") from None
    if not type(weights).__name__.lower().startswith(arch.replace("_", "") if arch.startswith("resnet") else arch):
        raise ConfigError(f"backbone.weights='{name}' are weights of another network than backbone.name={arch}; give {arch}'s weights")
    return weights


def load_named(net: nn.Module, weights, cfg: DictConfig) -> None:
    """Load a torchvision weight from torch's hub cache; download it only with `data.download=true`."""
    file = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    if not file.is_file() and not cfg.data.download:
        raise ConfigError(f"backbone.weights={cfg.backbone.weights} is not downloaded ({file} not found); pass data.download=true to fetch it "
                          f"(needs network), or copy {weights.url} to that path")
    state = weights.get_state_dict(progress=False, check_hash=True)
    net.load_state_dict({k: v for k, v in state.items() if k in net.state_dict()})


class ImageInput(nn.Module):
    """Images fitted to a torchvision network: grey repeated to 3 channels; resized to `size`
    (bilinear) unless they have it; normalized by `mean`/`std` when given."""

    def __init__(self, channels: int, size: int | None, mean=None, std=None):
        super().__init__()
        self.grey, self.size = channels == 1, size
        self.normalize = mean is not None
        if self.normalize:
            self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.grey:
            x = x.expand(-1, 3, -1, -1)
        if self.size is not None and tuple(x.shape[-2:]) != (self.size, self.size):
            x = nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        return (x - self.mean) / self.std if self.normalize else x

    def extra_repr(self) -> str:  # part of the feature cache's key (the extractor's architecture)
        return f"grey={self.grey}, size={self.size}, normalize={self.normalize}"


def check_image(cfg: DictConfig, arch: str, input_shape: tuple[int, ...]) -> None:
    if len(input_shape) != 3 or input_shape[0] not in (1, 3):
        raise ConfigError(f"backbone.name={arch} needs images [1 or 3 channels, height, width], but stream {cfg.data.stream} gives samples of shape {input_shape}")
