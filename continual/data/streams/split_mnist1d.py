"""Split MNIST-1D (Greydanus & Kobak, "Scaling down deep learning with MNIST-1D", ICML 2024): ten
1-d digit templates, each sample padded, shifted, scaled, sheared and noised into 40 values.
Small and offline like split_digits, but an MLP stays far below a CNN on it, so methods do not
all saturate.

The `mnist1d` package generates it locally (4000 train / 1000 test samples in seconds; never its
`get_dataset`, which downloads). The arrays are cached under `<data.root>/mnist1d/` in a file
named by a hash of the generator's arguments and the package's version, so later runs read them
instead of generating.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import warnings
import zipfile
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

from continual.data import cache_root, check_cache_folder
from continual.data.streams import register
from continual.data.streams.cutting import split_stream
from continual.errors import StorageError
from continual.rundir import atomic_write

ARRAYS = ("x", "y", "x_test", "y_test")


def generator_args() -> dict:
    """The package's default arguments (the paper's data set), without its download address."""
    from mnist1d.data import get_dataset_args

    args = get_dataset_args(as_dict=True)
    args.pop("url")
    return args


def cache_path(root: str, args: dict) -> Path:
    """The cache file of these arguments and this version of the package (its code draws the samples)."""
    key = hashlib.sha256(json.dumps({**args, "mnist1d": version("mnist1d")}, sort_keys=True).encode()).hexdigest()[:16]
    return Path(root) / "mnist1d" / f"mnist1d_{key}.npz"


def _generate(args: dict) -> dict[str, np.ndarray]:
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    # make_dataset seeds numpy's and Python's global generators: leave the run's draws as they were
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(ObjectView(dict(args)))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {k: data[k] for k in ARRAYS}


def _read(path: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None if the file is missing or unreadable (then it is rebuilt)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in ARRAYS}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # missing, torn, not these arrays
        return None


def load_mnist1d(root: str):
    """(x_train, y_train, x_test, y_test): [4000, 1, 40] float32 sequences (one channel, for the
    `conv1d` backbone) and their digits, cached."""
    args = generator_args()
    path = cache_path(root, args)
    arrays = _read(path)
    if arrays is None:
        arrays = _generate(args)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        try:
            check_cache_folder(path.parent, "MNIST-1D")
            atomic_write(path, buf.getvalue(), elsewhere="data.cache_dir")
        except StorageError as err:  # a read-only data.root: generate each run instead
            warnings.warn(f"MNIST-1D not cached: {err}", stacklevel=2)
    x, y, x_te, y_te = (arrays[k] for k in ARRAYS)
    return (torch.from_numpy(x.astype(np.float32)).view(-1, 1, 40), torch.from_numpy(y.astype(np.int64)),
            torch.from_numpy(x_te.astype(np.float32)).view(-1, 1, 40), torch.from_numpy(y_te.astype(np.int64)))


@register("split_mnist1d", source="mnist1d", files=lambda cfg: [cache_path(cache_root(cfg), generator_args())])
def split_mnist1d(cfg, seed):
    """MNIST-1D (generated offline, cached in data.cache_dir or data.root), data.classes_per_task classes per task"""
    return split_stream("split_mnist1d", load_mnist1d(cache_root(cfg)), cfg, seed)
