"""Raw data sets as whole tensors: images flattened to float32 in [0, 1], integer labels.

Each source returns `(x_train, y_train, x_test, y_test)`; splitting into tasks happens in
`continual.data.streams`. Files that are missing or unreadable raise a one-line `DataError`
that says how to get them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from continual.errors import DataError

Arrays = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def load_digits(test_fraction: float, seed: int) -> Arrays:
    """scikit-learn's 1797 8x8 digits (shipped inside the package: no network).

    The test split is stratified per class and fixed by `seed`.
    """
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = torch.from_numpy(bunch.data.astype(np.float32) / 16.0)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    gen = torch.Generator().manual_seed(seed)
    test = torch.zeros(len(y), dtype=torch.bool)
    for c in y.unique():
        idx = (y == c).nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=gen)]
        test[idx[: round(len(idx) * test_fraction)]] = True
    return x[~test], y[~test], x[test], y[test]


def load_mnist(root: str, download: bool) -> Arrays:
    """MNIST in torchvision's layout: `<root>/MNIST/raw/*-ubyte`."""
    from torchvision.datasets import MNIST

    raw = Path(root) / "MNIST" / "raw"
    missing = [f for f in MNIST_FILES if not (raw / f).is_file()]
    if missing and not download:
        raise DataError(
            f"MNIST file '{raw / missing[0]}' not found; set data.root to the folder that holds "
            f"MNIST/raw, or pass data.download=true to fetch it (needs network)"
        )
    splits = []
    for train in (True, False):
        try:
            ds = MNIST(root, train=train, download=download)
            x, y = ds.data, ds.targets
        except DataError:
            raise
        except Exception as err:  # torchvision raises many types for truncated/corrupt files
            raise DataError(
                f"MNIST files in '{raw}' are unreadable or corrupt ({type(err).__name__}: {err}); "
                f"delete them and re-run with data.download=true"
            ) from None
        expected = 60000 if train else 10000
        if x.shape != (expected, 28, 28) or y.shape != (expected,):
            raise DataError(
                f"MNIST {'train' if train else 'test'} split in '{raw}' has shape {tuple(x.shape)}, "
                f"expected ({expected}, 28, 28); the files are corrupt: delete them and re-download"
            )
        splits += [x.reshape(len(x), -1).float().div_(255.0), y.long()]
    return tuple(splits)  # type: ignore[return-value]
