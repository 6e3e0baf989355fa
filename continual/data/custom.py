"""Custom streams from any tensors or torchvision data set, in a few lines.

    # mystreams.py
    from torchvision.datasets import KMNIST
    from continual.data.custom import stream_from_torchvision

    def kmnist(cfg, seed):                  # cfg: the run's `data` config section
        train, test = KMNIST(cfg.root, train=True), KMNIST(cfg.root, train=False)
        return stream_from_torchvision("split_kmnist", train, test, cfg, seed)

    $ continual fit data.stream=mystreams:kmnist      # or: data.stream=custom data.custom=mystreams:kmnist

The stream is split into tasks exactly like the built-in split streams (`data.classes_per_task`,
`data.n_tasks`, `data.class_order`, `data.val_fraction` all apply).
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from continual.data.streams.cutting import Stream, split_stream
from continual.errors import DataError


def _labels(name: str, split: str, y) -> torch.Tensor:
    """`y` as class ids (torch.long); a one-line DataError for labels that are not whole numbers,
    which `.long()` would silently truncate (2.7 -> 2)."""
    y = torch.as_tensor(y)
    if y.is_floating_point():
        bad = y[~(torch.isfinite(y) & (y == y.round()))]
        if len(bad):
            raise DataError(f"custom stream '{name}': y_{split} holds non-integer labels {bad[:5].tolist()}; labels are class ids 0..C-1; "
                            f"fix the tensors your stream function returns for '{name}'")
    return y.long()


def _check_tensors(name: str, x_train, y_train, x_test, y_test) -> int:
    """The number of classes of valid stream tensors; a one-line DataError for anything that would
    be silently dropped or poison training (unpaired rows, NaN/inf inputs, labels not 0..C-1)."""
    fix = f"fix the tensors your stream function returns for '{name}'"
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if y.ndim != 1 or len(x) != len(y):
            raise DataError(f"custom stream '{name}': x_{split} has {len(x)} rows but y_{split} has {tuple(y.shape)} labels; {fix}")
        if not len(y):
            raise DataError(f"custom stream '{name}': the {split} split is empty; {fix}")
        if x.ndim < 2 or not x[0].numel():
            raise DataError(f"custom stream '{name}': x_{split} has no features per sample (shape {tuple(x.shape)}); {fix}")
        if not torch.isfinite(x).all():
            raise DataError(f"custom stream '{name}': x_{split} holds NaN or inf values; {fix}")
        if (y < 0).any():
            raise DataError(f"custom stream '{name}': y_{split} holds negative labels {sorted(set(y[y < 0].tolist()))[:5]}; labels are 0..C-1; {fix}")
    if x_train.shape[1:] != x_test.shape[1:]:
        what = [f"{x.shape[1]} features" if x.ndim == 2 else f"shape {tuple(x.shape[1:])}" for x in (x_train, x_test)]
        raise DataError(f"custom stream '{name}': x_train has {what[0]} per sample but x_test {what[1]}; {fix}")
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    present = y_train.unique()  # sorted; every class 0..n_classes-1 must be among them
    if len(present) < n_classes:
        # the first absent classes lie among the first len(present) + 5 ids: no set of a huge range
        absent = sorted(set(range(min(n_classes, len(present) + 5))) - set(present.tolist()))
        raise DataError(
            f"custom stream '{name}': labels go up to {n_classes - 1} but classes {absent[:5]}{'...' if n_classes - len(present) > 5 else ''} "
            f"have no training samples; labels must be 0..C-1 with every class present: {fix}"
        )
    return n_classes


def stream_from_tensors(name: str, x_train, y_train, x_test, y_test, cfg: DictConfig, seed: int = 0) -> Stream:
    """Split labelled tensors into tasks: float32, each sample keeps its shape (images as
    [channels, height, width] for a conv backbone; one number per sample becomes [1])."""
    x_train, x_test = (torch.as_tensor(x).float() for x in (x_train, x_test))
    x_train, x_test = (x if x.ndim > 1 else x.reshape(-1, 1) for x in (x_train, x_test))
    y_train, y_test = _labels(name, "train", y_train), _labels(name, "test", y_test)
    n_classes = _check_tensors(name, x_train, y_train, x_test, y_test)
    return split_stream(name, (x_train, y_train, x_test, y_test), cfg, seed, n_classes)


def _channels_first(x: torch.Tensor) -> torch.Tensor:
    if x.ndim == 3:
        return x.unsqueeze(1)
    if x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        return x.permute(0, 3, 1, 2).contiguous()
    return x


def stream_from_torchvision(name: str, train, test, cfg: DictConfig, seed: int = 0, scale: float = 255.0) -> Stream:
    """A torchvision data set pair exposing `.data` and `.targets` (MNIST-like, CIFAR-like), as
    [N, channels, height, width] images: MNIST-like [N, H, W] gains a channel, CIFAR-like
    [N, H, W, 3] (channels last, as torchvision stores it) is put channels first."""
    xs = [_channels_first(torch.as_tensor(ds.data).float() / scale) for ds in (train, test)]
    return stream_from_tensors(name, xs[0], train.targets, xs[1], test.targets, cfg, seed)
