"""Raw data sets as whole tensors: images as float32 [N, channels, height, width] in [0, 1],
integer labels.

Each source returns `(x_train, y_train, x_test, y_test)`; splitting into tasks happens in
`continual.data.streams`. Files that are missing or unreadable raise a one-line `DataError`
that says how to get them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from continual.data import safe_pickle
from continual.errors import DataError

Arrays = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def digits_file() -> Path:
    """The file scikit-learn's digits are read from (inside the installed package), found without importing it."""
    from importlib.util import find_spec

    return Path(find_spec("sklearn").submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"


def load_digits(test_fraction: float, seed: int) -> Arrays:
    """scikit-learn's 1797 8x8 digits (shipped inside the package: no network).

    The test split is stratified per class and fixed by `seed`.
    """
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = torch.from_numpy(bunch.data.astype(np.float32) / 16.0).view(-1, 1, 8, 8)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    gen = torch.Generator().manual_seed(seed)
    test = torch.zeros(len(y), dtype=torch.bool)
    for c in y.unique():
        idx = (y == c).nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=gen)]
        test[idx[: round(len(idx) * test_fraction)]] = True
    return x[~test], y[~test], x[test], y[test]


def at_mnist_layout(x: torch.Tensor) -> torch.Tensor:
    """8x8 digits ([N, 64] or [N, 1, 8, 8]) -> [N, 1, 28, 28]: drawn as MNIST draws its digits, scaled to a 20x20 box
    (bilinear) centred in 28x28. Other writers' digits at MNIST's input size: a pretraining set
    for MNIST streams that shares none of their images."""
    img = torch.nn.functional.interpolate(x.view(-1, 1, 8, 8), size=(20, 20), mode="bilinear", align_corners=False)
    return torch.nn.functional.pad(img, (4, 4, 4, 4)).clamp_(0.0, 1.0)


def mnist_files(root: str, name: str = "MNIST") -> list[Path]:
    """MNIST's or Fashion-MNIST's IDX files in torchvision's layout: `<root>/<name>/raw/*-ubyte`."""
    return [Path(root) / name / "raw" / f for f in MNIST_FILES]


def require_mnist(root: str, name: str = "MNIST") -> None:
    """A one-line DataError when `mnist_files` are not all there (missing, or only compressed); reads none."""
    raw = mnist_files(root, name)[0].parent
    missing = [f for f in MNIST_FILES if not (raw / f).is_file()]
    if missing and (raw / f"{missing[0]}.gz").is_file():
        raise DataError(
            f"{name} file '{raw / missing[0]}' is only there compressed ({missing[0]}.gz); "
            f"unpack the files with: gunzip -k {raw}/*.gz"
        )
    if missing:
        raise DataError(
            f"{name} file '{raw / missing[0]}' not found; set data.root to the folder that holds "
            f"{name}/raw, or pass data.download=true to fetch it (needs network)"
        )


def mnist_facts(name: str = "MNIST") -> dict:
    """What a stream read from MNIST's (or Fashion-MNIST's) files registers: the files (they key its
    caches) and their check (a grid runs it before any cell: continual.data.streams.require_files)."""
    return {"files": lambda cfg: mnist_files(cfg.root, name), "requires": lambda cfg: require_mnist(cfg.root, name)}


def load_mnist(root: str, download: bool, name: str = "MNIST") -> Arrays:
    """MNIST or Fashion-MNIST (`mnist_files`)."""
    from torchvision import datasets

    raw = mnist_files(root, name)[0].parent
    if not download:
        require_mnist(root, name)
    splits = []
    for train in (True, False):
        try:
            ds = getattr(datasets, name)(root, train=train, download=download)
            x, y = ds.data, ds.targets
        except DataError:
            raise
        except Exception as err:  # torchvision raises many types for truncated/corrupt files
            raise DataError(
                f"{name} files in '{raw}' are unreadable or corrupt ({type(err).__name__}: {err}); "
                f"delete them and re-run with data.download=true"
            ) from None
        split = "train" if train else "t10k"
        if x.ndim != 3 or x.shape[1:] != (28, 28):
            raise DataError(
                f"{name} file '{raw}/{split}-images-idx3-ubyte' holds images of shape {tuple(x.shape)}, "
                f"expected (N, 28, 28); the file is corrupt: delete it and re-download"
            )
        if y.shape != (len(x),) or not ((y >= 0) & (y < 10)).all():
            what = f"{len(y)} labels for {len(x)} images" if y.shape != (len(x),) else f"labels {sorted(set(y[(y < 0) | (y >= 10)].tolist()))[:5]} outside 0..9"
            raise DataError(
                f"{name} file '{raw}/{split}-labels-idx1-ubyte' holds {what}; the file is corrupt: delete it and re-download"
            )
        splits += [x.reshape(len(x), 1, 28, 28).float().div_(255.0), y.long()]
    return tuple(splits)  # type: ignore[return-value]


CIFAR = {  # name -> (folder, train files, test files, label key, torchvision class)
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels", "CIFAR10"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "fine_labels", "CIFAR100"),
}


def cifar_files(root: str, name: str) -> list[Path]:
    """CIFAR-10/100's pickle batches, train then test."""
    folder, train_files, test_files, *_ = CIFAR[name]
    return [Path(root) / folder / f for f in train_files + test_files]


def require_cifar(root: str, name: str) -> None:
    """A one-line DataError when `cifar_files` are not all there; reads none."""
    missing = [f for f in cifar_files(root, name) if not f.is_file()]
    if missing:
        raise DataError(
            f"{name} file '{missing[0]}' not found; set data.root to the folder that holds "
            f"{CIFAR[name][0]}/, or pass data.download=true to fetch it (needs network)"
        )


def cifar_facts(name: str) -> dict:
    """`mnist_facts` of a CIFAR stream."""
    return {"files": lambda cfg: cifar_files(cfg.root, name), "requires": lambda cfg: require_cifar(cfg.root, name)}


def load_cifar(root: str, download: bool, name: str) -> Arrays:
    """CIFAR-10/100 from the python pickle batches torchvision writes, as [N, 3, 32, 32] images
    (channel-major, as stored). Read directly, so files are never re-hashed or re-downloaded, and
    through `safe_pickle`, so a crafted batch is refused before any code in it runs."""
    folder, train_files, test_files, key, tv_name = CIFAR[name]
    base = cifar_files(root, name)[0].parent
    if download and not all(f.is_file() for f in cifar_files(root, name)):  # torchvision's download alone: its dataset class would unpickle the batches unchecked
        from torchvision import datasets
        from torchvision.datasets.utils import download_and_extract_archive

        tv = getattr(datasets, tv_name)
        download_and_extract_archive(tv.url, root, filename=tv.filename, md5=tv.tgz_md5)
    require_cifar(root, name)
    fix = f"delete {folder}/ and re-run with data.download=true"
    splits = []
    for files in (train_files, test_files):
        xs, ys = [], []
        for f in files:
            try:
                entry = safe_pickle.load(base / f, f"{name} file", fix)
                xs.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3072))
                ys.append(np.asarray(entry[key], dtype=np.int64))
            except DataError:
                raise
            except Exception as err:
                raise DataError(f"{name} file '{base / f}' is unreadable or corrupt ({type(err).__name__}: {err}); {fix}") from None
        splits += [torch.from_numpy(np.concatenate(xs)).float().div_(255.0).view(-1, 3, 32, 32), torch.from_numpy(np.concatenate(ys))]
    return tuple(splits)  # type: ignore[return-value]
