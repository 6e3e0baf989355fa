"""`backbone.name=conv`: a small CNN for images [channels, height, width] (28x28 MNIST, 32x32 CIFAR,
8x8 digits): two conv-BN-ReLU-maxpool blocks, then the 64 maps average-pooled to 2x2 (256 features)."""

from __future__ import annotations

from omegaconf import DictConfig
from torch import nn

from continual.errors import ConfigError
from continual.models.backbones import register


@register("conv")
def conv(cfg: DictConfig, input_shape: tuple[int, ...]) -> nn.Module:
    """a small CNN for images (two conv-BN-ReLU-pool blocks, 256 features)"""
    if len(input_shape) != 3:
        raise ConfigError(f"backbone.name=conv needs images [channels, height, width], but stream {cfg.data.stream} gives samples of shape {input_shape}; "
                          f"use backbone.name=conv1d for sequences or mlp for vectors")
    channels = input_shape[0]
    return nn.Sequential(
        nn.Conv2d(channels, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(),
    )
