"""Rotated-MNIST, Split-FashionMNIST, Split-CIFAR-10/100 and custom streams, loaded from tiny
files written in the exact on-disk formats (IDX, CIFAR pickles) through the real loaders."""

import pickle
import struct
import sys

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from continual.config.schema import DataConfig
from continual.data.custom import stream_from_tensors
from continual.data.streams import build_stream
from continual.errors import ConfigError, DataError


def data_cfg(**kw):
    return OmegaConf.merge(OmegaConf.structured(DataConfig), kw)


def write_idx(folder, n_train=40, n_test=20, seed=0):
    """MNIST-format IDX files: magic 2051 (images, uint8 [N,28,28]) and 2049 (labels)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + labels.tobytes())
        out[prefix] = (images, labels)
    return out


def test_split_fashion_mnist_reads_idx_files(tmp_path):
    raw = write_idx(tmp_path / "FashionMNIST" / "raw")
    s = build_stream(data_cfg(stream="split_fashion_mnist", root=str(tmp_path), val_fraction=0.0), seed=0)
    assert len(s) == 5 and s.n_features == 784
    images, labels = raw["t10k"]
    t1 = s.tasks[1]
    keep = np.isin(labels, [2, 3])
    assert torch.equal(t1.x_test, torch.from_numpy(images[keep].reshape(-1, 1, 28, 28)).float() / 255)
    assert torch.equal(t1.y_test, torch.from_numpy(labels[keep]).long())


def test_rotated_mnist_rotates_each_task_by_its_angle(tmp_path):
    write_idx(tmp_path / "MNIST" / "raw")
    s = build_stream(data_cfg(stream="rotated_mnist", root=str(tmp_path), rotations=[0, 90, 180]), seed=0)
    assert len(s) == 3 and s.task_classes[2] == list(range(20, 30)) and s.meta["rotations"] == [0, 90, 180]
    x0 = s.tasks[0].x_test.view(-1, 28, 28)
    assert torch.allclose(s.tasks[1].x_test.view(-1, 28, 28), torch.rot90(x0, 1, dims=(1, 2)))  # counter-clockwise
    assert torch.allclose(s.tasks[2].x_test.view(-1, 28, 28), torch.rot90(x0, 2, dims=(1, 2)))
    with pytest.raises(ConfigError, match="one angle per task"):
        build_stream(data_cfg(stream="rotated_mnist", root=str(tmp_path), rotations=[0, 90], n_tasks=3), seed=0)


def test_rotated_mnist_spaces_angles_evenly_or_draws_them_per_seed(tmp_path):
    """Buzzega et al.'s R-MNIST draws each task's angle uniformly from [0, 180): the seed decides
    the angles (and nothing else: the hold-out split is the evenly spaced stream's)."""
    from torchvision.transforms.functional import rotate

    write_idx(tmp_path / "MNIST" / "raw")
    even = build_stream(data_cfg(stream="rotated_mnist", root=str(tmp_path), n_tasks=4), seed=3)
    assert even.meta["rotations"] == [0.0, 45.0, 90.0, 135.0]
    drawn = {seed: build_stream(data_cfg(stream="rotated_mnist", root=str(tmp_path), n_tasks=4, rotation_draw="uniform"), seed=seed)
             for seed in (3, 4)}
    angles = drawn[3].meta["rotations"]
    assert angles == (180 * torch.rand(4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)).tolist()
    assert all(0 <= a < 180 for a in angles) and len(set(angles)) == 4 and drawn[4].meta["rotations"] != angles
    x0 = even.tasks[0].x_test
    for task, angle in zip(drawn[3].tasks, angles):
        assert torch.equal(task.x_test, rotate(x0, angle))
    assert all(torch.equal(a.y_train, b.y_train) and torch.equal(a.y_val, b.y_val) for a, b in zip(even.tasks, drawn[3].tasks))
    from continual.config import load_config

    with pytest.raises(ConfigError, match="data.rotation_draw.*one of: even, uniform"):
        load_config(None, ["data.stream=rotated_mnist", "data.rotation_draw=random"])


def write_cifar(root, name, n_classes, n_per_file=30):
    rng = np.random.default_rng(1)
    folder, train, test, key = {
        10: ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels"),
        100: ("cifar-100-python", ["train"], ["test"], "fine_labels"),
    }[n_classes]
    (root / folder).mkdir(parents=True)
    written = {}
    for f in train + test:
        entry = {"data": rng.integers(0, 256, (n_per_file, 3072), dtype=np.uint8), key: list(np.arange(n_per_file) % n_classes)}
        with open(root / folder / f, "wb") as fh:
            pickle.dump(entry, fh, protocol=2)
        written[f] = entry
    return written, train


@pytest.mark.parametrize("n_classes", [10, 100])
def test_split_cifar_reads_pickled_batches(tmp_path, n_classes):
    written, train_files = write_cifar(tmp_path, f"cifar{n_classes}", n_classes, n_per_file=n_classes * 2)
    per = 2 if n_classes == 10 else 10
    s = build_stream(data_cfg(stream=f"split_cifar{n_classes}", root=str(tmp_path), classes_per_task=per, val_fraction=0.0), seed=0)
    assert len(s) == 5 if n_classes == 10 else len(s) == 10
    assert s.n_features == 3072 and s.n_classes == n_classes
    n_train = sum(len(t.y_train) for t in s.tasks)
    assert n_train == len(train_files) * n_classes * 2
    test = written["test_batch" if n_classes == 10 else "test"]
    first = s.tasks[0]
    labels = np.array(test["labels" if n_classes == 10 else "fine_labels"])
    keep = np.isin(labels, first.classes)
    assert s.input_shape == (3, 32, 32)  # channel-major, as CIFAR stores its rows
    assert torch.equal(first.x_test, torch.from_numpy(test["data"][keep]).float().view(-1, 3, 32, 32) / 255)


@pytest.mark.parametrize("stream,missing", [("split_cifar10", "data_batch_1"), ("split_cifar100", "train"), ("split_fashion_mnist", "train-images")])
def test_missing_files_name_the_file_and_the_fix(tmp_path, stream, missing):
    with pytest.raises(DataError, match=rf"{missing}.*data.download=true"):
        build_stream(data_cfg(stream=stream, root=str(tmp_path)), seed=0)


def test_custom_stream_from_tensors_and_by_name(tmp_path, monkeypatch):
    x, y = torch.rand(60, 2, 3), torch.arange(60) % 4
    s = stream_from_tensors("mine", x, y, x[:20], y[:20], data_cfg(val_fraction=0.0), seed=0)
    assert s.task_classes == [[0, 1], [2, 3]] and s.n_features == 6 and s.input_shape == (2, 3)
    assert torch.equal(s.tasks[1].x_train.reshape(-1, 6).sort(0).values, x[y >= 2].reshape(-1, 6).sort(0).values)
    (tmp_path / "mystreams.py").write_text(
        "import torch\nfrom continual.data.custom import stream_from_tensors\n"
        "def four(cfg, seed):\n    x, y = torch.rand(40, 5), torch.arange(40) % 4\n"
        "    return stream_from_tensors('four', x, y, x, y, cfg, seed)\n"
        "def not_a_stream(cfg, seed):\n    return [1, 2]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for spelling in (dict(stream="custom", custom="mystreams:four"), dict(stream="mystreams:four")):  # one code path
        s = build_stream(data_cfg(**spelling), seed=0)
        assert s.name == "four" and s.task_classes == [[0, 1], [2, 3]]
    with pytest.raises(ConfigError, match=r"^data.stream='mystreams:not_a_stream' returned list, not a continual Stream$"):
        build_stream(data_cfg(stream="mystreams:not_a_stream"), seed=0)
    with pytest.raises(ConfigError, match="module:function"):
        build_stream(data_cfg(stream="custom"), seed=0)
    sys.modules.pop("mystreams", None)
