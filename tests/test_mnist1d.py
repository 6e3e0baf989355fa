"""Split MNIST-1D: generated offline by the `mnist1d` package, cut like Split-MNIST, cached by the
generator's arguments (a second build does not generate), the run's random draws untouched, and a
plain MLP on it well above chance but far from saturated."""

import json
import random

import mnist1d.data
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from continual.cli.main import main
from continual.config.schema import DataConfig
from continual.data.streams import build_stream
from continual.data.streams.split_mnist1d import cache_path, generator_args
from helpers import QUICK, read_only_folder


def data_cfg(root, **kw):
    return OmegaConf.merge(OmegaConf.structured(DataConfig), {"stream": "split_mnist1d", "root": str(root), **kw})


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """One generated data set for the module's tests (generating takes a second or two)."""
    path = tmp_path_factory.mktemp("data")
    build_stream(data_cfg(path), seed=0)
    return path


def test_five_tasks_of_two_digits_of_40_samples(root):
    s = build_stream(data_cfg(root), seed=0)
    assert s.name == "split_mnist1d" and len(s) == 5 and s.n_features == 40 and s.input_shape == (1, 40) and s.n_classes == 10
    assert s.task_classes == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    data = np.load(cache_path(root, generator_args()))
    assert data["x"].shape == (4000, 40) and data["x_test"].shape == (1000, 40)
    for t in s.tasks:
        for split in ("train", "val", "test"):
            x, y = t.split(split)
            assert x.shape == (len(y), 1, 40) and x.dtype == torch.float32 and set(y.tolist()) == set(t.classes)
    # the whole training set, split 90/10 into train and val, and the whole test set: nothing lost
    assert sum(len(t.y_train) + len(t.y_val) for t in s.tasks) == 4000 and sum(len(t.y_test) for t in s.tasks) == 1000
    t1 = s.tasks[1]
    assert torch.equal(t1.x_test, torch.from_numpy(data["x_test"][np.isin(data["y_test"], [2, 3])]).float().view(-1, 1, 40))
    assert round(len(t1.y_val) / (len(t1.y_train) + len(t1.y_val)), 2) == 0.1


def test_cut_like_split_mnist_and_the_same_per_seed(root):
    a, b = build_stream(data_cfg(root, shuffle_classes=True), seed=3), build_stream(data_cfg(root, shuffle_classes=True), seed=3)
    assert a.task_classes == b.task_classes
    assert all(torch.equal(s.x_train, t.x_train) and torch.equal(s.y_val, t.y_val) for s, t in zip(a.tasks, b.tasks))
    order = np.argsort(np.random.RandomState(3).permutation(10)).tolist()  # van de Ven & Tolias's order for seed 3
    assert sum(a.task_classes, []) == order
    other = build_stream(data_cfg(root, shuffle_classes=True), seed=4)
    assert other.task_classes != a.task_classes
    three = build_stream(data_cfg(root, classes_per_task=3, n_tasks=3), seed=0)
    assert three.task_classes == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]


def test_the_cache_is_reused_and_generation_leaves_the_global_generators_alone(tmp_path, monkeypatch):
    calls = []
    make = mnist1d.data.make_dataset
    monkeypatch.setattr(mnist1d.data, "make_dataset", lambda args: calls.append(1) or make(args))
    np.random.seed(7)
    random.seed(7)
    first = build_stream(data_cfg(tmp_path), seed=0)
    # mnist1d seeds numpy's and Python's global generators; the run's next draws are as if it had not
    assert np.random.rand() == np.random.RandomState(7).rand() and random.random() == random.Random(7).random()
    assert calls == [1] and cache_path(tmp_path, generator_args()).is_file()
    second = build_stream(data_cfg(tmp_path), seed=0)
    assert calls == [1]  # read from the cache
    assert all(torch.equal(s.x_train, t.x_train) and torch.equal(s.x_test, t.x_test) for s, t in zip(first.tasks, second.tasks))
    cache_path(tmp_path, generator_args()).write_bytes(b"torn")  # an unreadable cache is rebuilt
    third = build_stream(data_cfg(tmp_path), seed=0)
    assert calls == [1, 1] and torch.equal(third.tasks[0].x_train, first.tasks[0].x_train)


def test_the_cache_file_is_named_by_the_generator_arguments(tmp_path):
    args = generator_args()
    assert "url" not in args and cache_path(tmp_path, args) == cache_path(tmp_path, dict(args))
    assert cache_path(tmp_path, {**args, "seed": 43}) != cache_path(tmp_path, args)


def test_a_plain_mlp_learns_it_well_above_chance_and_far_from_saturation(root, tmp_path):
    """Task-IL fine-tuning, one epoch per task of 3 tasks on QUICK's small MLP: 77.5% measured
    (chance: 50%)."""
    out = tmp_path / "run"
    assert main(["fit", "data.stream=split_mnist1d", f"data.root={root}", "method=finetune", "scenario=task", *QUICK,
                 f"output_dir={out}"]) == 0
    acc = json.loads((out / "metrics.json").read_text())["acc"]
    assert 0.65 < acc < 0.9


def test_an_unwritable_cache_folder_warns_and_the_stream_is_still_built(root, tmp_path):
    (tmp_path / "mnist1d").write_text("a file where the cache folder would go")
    with pytest.warns(UserWarning, match="MNIST-1D not cached: cannot cache MNIST-1D under .* is not a folder; set data.cache_dir="):
        s = build_stream(data_cfg(tmp_path), seed=0)
    assert torch.equal(s.tasks[0].x_train, build_stream(data_cfg(root), seed=0).tasks[0].x_train)


def test_a_read_only_data_root_is_not_written_and_the_stream_is_still_built(root, tmp_path):
    """A shared folder (mode 0555), which root could write: left as it is, the data generated."""
    with read_only_folder(tmp_path / "shared") as shared:
        with pytest.warns(UserWarning, match=f"MNIST-1D not cached: cannot cache MNIST-1D under '{shared / 'mnist1d'}': '{shared}' is "):
            s = build_stream(data_cfg(shared), seed=0)
        assert list(shared.iterdir()) == []
    assert torch.equal(s.tasks[0].x_train, build_stream(data_cfg(root), seed=0).tasks[0].x_train)
