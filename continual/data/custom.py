"""Custom streams from any tensors or torchvision data set, in a few lines.

    # mystreams.py
    from torchvision.datasets import KMNIST
    from continual.data.custom import stream_from_torchvision

    def kmnist(cfg, seed):                  # cfg: the run's `data` config section
        train, test = KMNIST(cfg.root, train=True), KMNIST(cfg.root, train=False)
        return stream_from_torchvision("split_kmnist", train, test, cfg, seed)

    $ continual fit data.stream=custom data.custom=mystreams:kmnist

The stream is split into tasks exactly like the built-in split streams (`data.classes_per_task`,
`data.n_tasks`, `data.class_order`, `data.val_fraction` all apply).
"""

from __future__ import annotations

import importlib

import torch
from omegaconf import DictConfig

from continual.data.streams import Stream, split_stream
from continual.errors import ConfigError


def stream_from_tensors(name: str, x_train, y_train, x_test, y_test, cfg: DictConfig, seed: int = 0) -> Stream:
    """Split labelled tensors (any shape per sample; flattened to float32) into tasks."""
    x_train, x_test = (torch.as_tensor(x).float().reshape(len(x), -1) for x in (x_train, x_test))
    y_train, y_test = (torch.as_tensor(y).long() for y in (y_train, y_test))
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    return split_stream(name, (x_train, y_train, x_test, y_test), cfg, seed, n_classes)


def stream_from_torchvision(name: str, train, test, cfg: DictConfig, seed: int = 0, scale: float = 255.0) -> Stream:
    """A torchvision data set pair exposing `.data` and `.targets` (MNIST-like, CIFAR-like)."""
    xs = [torch.as_tensor(ds.data).float() / scale for ds in (train, test)]
    return stream_from_tensors(name, xs[0], train.targets, xs[1], test.targets, cfg, seed)


def load_custom(cfg: DictConfig, seed: int) -> Stream:
    """`data.stream=custom`: call the function named by `data.custom` ("module:function")."""
    if not cfg.custom or ":" not in cfg.custom:
        raise ConfigError("data.stream=custom needs data.custom='module:function' (a function (cfg, seed) -> Stream)")
    module, fn = cfg.custom.split(":", 1)
    try:
        builder = getattr(importlib.import_module(module), fn)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"data.custom='{cfg.custom}' cannot be imported ({err}); is the module on PYTHONPATH?") from None
    stream = builder(cfg, seed)
    if not isinstance(stream, Stream):
        raise ConfigError(f"data.custom='{cfg.custom}' returned {type(stream).__name__}, not a continual Stream")
    return stream
