"""Streams, loaders and data errors."""

import shutil

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from continual.config.schema import DataConfig
from continual.data import loader as loader_mod
from continual.data.loader import TensorLoader
from continual.data.streams import build_stream
from continual.errors import ConfigError, DataError


def data_cfg(**kw):
    return OmegaConf.merge(OmegaConf.structured(DataConfig), kw)


def test_split_digits_tasks_partition_the_data():
    from sklearn.datasets import load_digits

    stream = build_stream(data_cfg(), seed=0)
    assert len(stream) == 5 and stream.task_classes == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    total = sum(len(t.y_train) + len(t.y_val) + len(t.y_test) for t in stream.tasks)
    assert total == len(load_digits().target) == 1797
    for t in stream.tasks:
        for split in ("train", "val", "test"):
            x, y = t.split(split)
            assert set(y.unique().tolist()) == set(t.classes)
            assert x.shape[1:] == (1, 8, 8) and 0.0 <= x.min() and x.max() <= 1.0


def test_class_order_fixed_and_shuffled_by_seed():
    s = build_stream(data_cfg(class_order=[9, 8, 7, 6, 5, 4, 3, 2, 1, 0], n_tasks=2), seed=0)
    assert s.task_classes == [[9, 8], [7, 6]]
    a = build_stream(data_cfg(shuffle_classes=True), seed=1).task_classes
    b = build_stream(data_cfg(shuffle_classes=True), seed=1).task_classes
    c = build_stream(data_cfg(shuffle_classes=True), seed=2).task_classes
    assert a == b and a != c and sorted(sum(a, [])) == list(range(10))
    with pytest.raises(ConfigError, match="distinct classes"):
        build_stream(data_cfg(class_order=[1, 1, 2]), seed=0)


@pytest.mark.parametrize("seed", [1, 7, 19])
def test_shuffled_classes_cut_the_tasks_of_van_de_ven_code(seed):
    """Their data.py: np.random.seed(seed); digit y gets label perm[y]; task t holds labels 2t, 2t+1
    (in that order: in domain-IL label 2t is output 0)."""
    np.random.seed(seed)
    perm = np.random.permutation(list(range(10)))
    theirs = [[[y for y in range(10) if perm[y] == label][0] for label in (2 * t, 2 * t + 1)] for t in range(5)]
    assert build_stream(data_cfg(shuffle_classes=True), seed=seed).task_classes == theirs


def test_split_mnist_matches_published_label_counts(mnist_root):
    stream = build_stream(data_cfg(stream="split_mnist", root=str(mnist_root)), seed=0)
    test_counts = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    train_counts = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    for t, task in enumerate(stream.tasks):
        a, b = task.classes
        assert len(task.y_test) == test_counts[a] + test_counts[b]
        assert len(task.y_train) + len(task.y_val) == train_counts[a] + train_counts[b]
    x = torch.cat([t.x_train for t in stream.tasks] + [t.x_val for t in stream.tasks])
    assert x.shape[1:] == (1, 28, 28) and stream.n_features == 784 and abs(x.mean().item() - 0.1307) < 2e-3


def test_permuted_mnist_permutes_pixels_and_offsets_labels(mnist_root):
    s = build_stream(data_cfg(stream="permuted_mnist", root=str(mnist_root), n_tasks=3, val_fraction=0.0), seed=0)
    assert s.task_classes[2] == list(range(20, 30)) and s.n_classes == 30
    t0, t1 = s.tasks[0], s.tasks[1]
    assert torch.equal(t0.y_test + 10, t1.y_test)
    assert not torch.equal(t0.x_test, t1.x_test)
    # the same pixels, rearranged: per-image sorted values agree
    assert t1.x_test.shape[1:] == (1, 28, 28)  # images stay images
    assert torch.equal(t0.x_test[:50].flatten(1).sort(dim=1).values, t1.x_test[:50].flatten(1).sort(dim=1).values)


def test_missing_mnist_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError, match="data.download=true"):
        build_stream(data_cfg(stream="split_mnist", root=str(tmp_path)), seed=0)


def test_corrupt_mnist_is_reported(tmp_path, mnist_root):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in ("train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        shutil.copy(mnist_root / "MNIST" / "raw" / f, raw / f)
    (raw / "train-images-idx3-ubyte").write_bytes((mnist_root / "MNIST" / "raw" / "train-images-idx3-ubyte").read_bytes()[:5000])
    with pytest.raises(DataError, match="corrupt"):
        build_stream(data_cfg(stream="split_mnist", root=str(tmp_path)), seed=0)


def _collect(loader):
    return torch.cat([b["index"] for b in loader])


def test_loader_covers_every_sample_once_and_batches_are_gathered():
    x, y = torch.arange(23.0).unsqueeze(1), torch.arange(23)
    ev = TensorLoader(x, y, task_id=3, batch_size=5, train=False)
    batches = list(ev)
    assert len(ev) == len(batches) == 5
    assert torch.equal(torch.cat([b["y"] for b in batches]), y)
    assert all((b["task"] == 3).all() and torch.equal(b["x"][:, 0].long(), b["y"]) for b in batches)
    tr = TensorLoader(x, y, task_id=0, batch_size=5, train=True, seed=1)
    first, second = _collect(tr), _collect(tr)
    assert sorted(first.tolist()) == list(range(23)) and not torch.equal(first, second)  # reshuffled per epoch


@pytest.mark.parametrize("world", [2, 3])
def test_loader_shards_eval_once_and_train_batches_are_global(monkeypatch, world):
    """Eval: every sample exactly once over the ranks. Train: at every step the ranks' batches
    together are exactly the single-process batch (nothing padded), and each knows its size."""
    x, y = torch.zeros(23, 1), torch.arange(23)
    single = [b["index"] for b in TensorLoader(x, y, 0, batch_size=4, train=True, seed=0)]
    eval_shards, train = [], []
    for rank in range(world):
        monkeypatch.setattr(loader_mod, "dist_info", lambda r=rank: (r, world))
        ev = TensorLoader(x, y, 0, batch_size=4, train=False)
        eval_shards.append(_collect(ev))
        assert len(ev) == len(list(ev))
        tr = TensorLoader(x, y, 0, batch_size=4, train=True, seed=0)
        batches = list(tr)
        assert len(tr) == len(batches) == len(single)  # every rank takes the same number of steps
        train.append(batches)
    assert sorted(torch.cat(eval_shards).tolist()) == list(range(23))
    for k, step in enumerate(zip(*train)):
        assert sorted(torch.cat([b["index"] for b in step]).tolist()) == sorted(single[k].tolist())
        assert {b["global_size"] for b in step} == {len(single[k])}


def test_loader_resumes_mid_epoch_from_its_state():
    x, y = torch.zeros(23, 1), torch.arange(23)
    full = TensorLoader(x, y, 0, batch_size=4, train=True, seed=0)
    epochs = [[b["index"].tolist() for b in full] for _ in range(2)]
    cut = TensorLoader(x, y, 0, batch_size=4, train=True, seed=0)
    it = iter(cut)
    next(it), next(it)
    resumed = TensorLoader(x, y, 0, batch_size=4, train=True, seed=0)
    resumed.load_state_dict(cut.state_dict())
    assert [b["index"].tolist() for b in resumed] == epochs[0][2:]  # the rest of the epoch
    assert [b["index"].tolist() for b in resumed] == epochs[1]  # then the next epoch as usual
    finished = TensorLoader(x, y, 0, batch_size=4, train=True, seed=0)
    finished.load_state_dict({"epoch": 0, "served": len(full)})  # saved on the epoch's last batch
    assert [b["index"].tolist() for b in finished] == epochs[1]
