"""`backbone.name=conv1d`: a small 1-D CNN for sequences [channels, length] (e.g. MNIST-1D's
(1, 40)); a flat sequence [length] is read as one channel. Two conv-BN-ReLU-maxpool blocks, then
the 64 maps average-pooled to length 4 (256 features)."""

from __future__ import annotations

from omegaconf import DictConfig
from torch import nn

from continual.errors import ConfigError
from continual.models.backbones import register


@register("conv1d")
def conv1d(cfg: DictConfig, input_shape: tuple[int, ...]) -> nn.Module:
    """a small 1-D CNN for sequences [channels, length] (two conv-BN-ReLU-pool blocks, 256 features)"""
    if len(input_shape) not in (1, 2):
        raise ConfigError(f"backbone.name=conv1d needs sequences [channels, length], but stream {cfg.data.stream} gives samples of shape {input_shape}; "
                          f"use backbone.name=conv for images")
    channels = input_shape[0] if len(input_shape) == 2 else 1
    return nn.Sequential(
        *([nn.Unflatten(1, (1, input_shape[0]))] if len(input_shape) == 1 else []),  # [N, L] -> [N, 1, L]
        nn.Conv1d(channels, 32, 5, padding=2), nn.BatchNorm1d(32), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(32, 64, 5, padding=2), nn.BatchNorm1d(64), nn.ReLU(), nn.MaxPool1d(2),
        nn.AdaptiveAvgPool1d(4), nn.Flatten(),
    )
