"""The methods that learn class statistics instead of weights (ncm, prototypes, slda): their
logits against hand computations on a tiny 2-d stream, SLDA's streaming update against LDA
computed from all samples at once, and Split-Digits class-IL through the CLI with the memory
they keep counted by hand."""

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from continual.baselines.ncm import NCM
from continual.baselines.prototypes import Prototypes
from continual.baselines.slda import SLDA
from continual.cli.main import main
from continual.config import load_config
from continual.config.schema import OptimConfig
from continual.data.task_data import TaskData
from continual.errors import ConfigError
from continual.metrics.memory import stored_floats, trainable_params
from continual.models.mlp import MLP

# Two tasks of two classes of 2-d points; class means (1, 0), (0, 5), (6, 6), (-4, -4).
X = [[[0, 0], [2, 0], [0, 4], [0, 6]], [[5, 5], [7, 5], [6, 8], [-4, -4]]]
Y = [[0, 0, 1, 1], [2, 2, 2, 3]]
MEANS = torch.tensor([[1.0, 0], [0, 5], [6, 6], [-4, -4]], dtype=torch.float64)
QUERY = torch.tensor([[1.0, 1], [0, 4], [6, 5], [-3, -3], [4, 4]])


def build(cls, scenario="class", task_classes=((0, 1), (2, 3)), n_in=2, hidden=(3,), **hp):
    task_classes = [list(c) for c in task_classes]
    n_classes = 1 + max(c for t in task_classes for c in t)
    return cls(MLP(n_in, list(hidden), n_classes), hp=OmegaConf.structured(cls.Config(**hp)), task_classes=task_classes,
               n_classes=n_classes, scenario=scenario, optim=OmegaConf.structured(OptimConfig))


def learn(m, xs, ys, first=0):
    """The task loop's hooks for tasks first, first + 1, ...: the cursor, then the task's data."""
    for t, (x, y) in enumerate(zip(xs, ys), start=first):
        m.set_task(t)
        y = torch.as_tensor(y)
        m.on_task_end(TaskData(t, torch.as_tensor(x, dtype=torch.float32), y, torch.full_like(y, t)))


def batch(x, task=1):
    x = torch.as_tensor(x, dtype=torch.float32)
    return {"x": x, "task": torch.full((len(x),), task)}


def neg_sq_dist(x, centers):
    """-||x - c||^2 from the differences themselves (the methods use the expanded form)."""
    return -((x.double()[:, None, :] - centers[None]) ** 2).sum(-1)


def test_ncm_logits_are_minus_the_squared_distance_to_each_class_mean():
    m = build(NCM)
    learn(m, X[:1], Y[:1])
    after_first = m.logits(batch(QUERY))
    assert torch.equal(after_first[:, :2], neg_sq_dist(QUERY, MEANS[:2]))
    assert torch.isinf(after_first[:, 2:]).all()  # classes not seen yet
    learn(m, X[1:], Y[1:], first=1)
    assert torch.equal(m.logits(batch(QUERY)), neg_sq_dist(QUERY, MEANS))
    assert m.predict(batch(QUERY)).tolist() == [0, 1, 2, 3, 2]
    assert trainable_params(m) == 0 and stored_floats(m) == 4 * 2 + 4  # sums and counts, no network


def test_ncm_domain_il_pools_each_within_task_class_over_tasks():
    m = build(NCM, scenario="domain")
    learn(m, X, Y)
    # output 0: classes 0 and 2, output 1: classes 1 and 3
    pooled = torch.tensor([[(0 + 2 + 5 + 7 + 6) / 5, (0 + 0 + 5 + 5 + 8) / 5], [(0 + 0 - 4) / 3, (4 + 6 - 4) / 3]],
                          dtype=torch.float64)
    assert torch.allclose(m.logits(batch(QUERY)), neg_sq_dist(QUERY, pooled))


def test_ncm_task_il_predicts_within_the_given_task():
    m = build(NCM, scenario="task")
    learn(m, X, Y)
    # (4, 4) is nearest to class 2's mean (6, 6); told task 0, it gets class 1: (0, 5) is at 17, (1, 0) at 25
    assert m.predict(batch([[4, 4]], task=0)).item() == 1 and m.predict(batch([[4, 4]], task=1)).item() == 2


def test_ncm_on_hidden_features_uses_the_frozen_backbone_and_does_not_count_it():
    torch.manual_seed(0)
    m = build(NCM, hidden=(5, 3), features="hidden")
    learn(m, X, Y)
    net = m.backbone()
    feats = [net.features(torch.tensor(x, dtype=torch.float32)).double() for x in X]
    y = torch.tensor(Y[0] + Y[1])
    z = torch.cat(feats)
    means = torch.stack([z[y == c].mean(0) for c in range(4)])
    expected = neg_sq_dist(net.features(QUERY), means)
    assert torch.allclose(m.logits(batch(QUERY)), expected)
    assert trainable_params(m) == 0 and stored_floats(m) == 4 * 3 + 4  # the 3-wide features' sums and counts


def test_prototypes_with_one_per_class_are_the_class_means():
    m = build(Prototypes, k=1)
    learn(m, X, Y)
    assert torch.allclose(m.logits(batch(QUERY)), neg_sq_dist(QUERY, MEANS))
    assert m.mass[:, 0].tolist() == [2, 2, 3, 1]


def test_prototypes_find_well_separated_clusters_and_beat_the_mean_between_them():
    # class 0: two clusters of three points, about (1/3, 1/3) and (31/3, 1/3); class 1: one point
    x0 = [[0, 0], [0, 1], [1, 0], [10, 0], [10, 1], [11, 0]]
    xs, ys = [x0 + [[5, 2]]], [[0] * 6 + [1]]
    m = build(Prototypes, task_classes=[[0, 1]], k=2)
    learn(m, xs, ys)
    found = sorted(m.protos[0].tolist())
    assert np.allclose(found, [[1 / 3, 1 / 3], [31 / 3, 1 / 3]]) and m.mass[0].tolist() == [3, 3]
    # fewer samples than k: the sample itself, the other slot empty
    assert m.protos[1, 0].tolist() == [5, 2] and m.mass[1].tolist() == [1, 0]
    q = torch.tensor([[5.0, 0.5]])  # beside class 0's mean, far from both its clusters
    assert np.allclose(m.logits(batch(q, task=0)), [[-(14 / 3) ** 2 - (1 / 6) ** 2, -2.25]])
    ncm = build(NCM, task_classes=[[0, 1]])
    learn(ncm, xs, ys)
    assert ncm.predict(batch(q, task=0)).item() == 0 and m.predict(batch(q, task=0)).item() == 1


def test_prototypes_are_deterministic_and_resume_from_their_buffers():
    torch.manual_seed(1)
    xs = [torch.randn(40, 2).tolist(), (torch.randn(40, 2) + 3).tolist()]
    ys = [[0] * 20 + [1] * 20, [2] * 20 + [3] * 20]
    a, b = build(Prototypes, k=4), build(Prototypes, k=4)
    learn(a, xs, ys)
    learn(b, xs, ys)
    assert torch.equal(a.protos, b.protos) and torch.equal(a.mass, b.mass)
    assert a.mass.sum(1).tolist() == [20, 20, 20, 20]  # every sample stands in exactly one prototype
    c = build(Prototypes, k=4)
    c.load_state_dict(a.state_dict())
    assert torch.equal(c.logits(batch(QUERY)), a.logits(batch(QUERY)))


def test_prototypes_domain_il_merge_old_prototypes_by_their_mass():
    m = build(Prototypes, scenario="domain", k=1)
    learn(m, X, Y)
    # k = 1: the old prototype (mass = its count) and the new samples average to the pooled mean
    assert torch.allclose(m.protos[:, 0], torch.tensor([[4, 3.6], [-4 / 3, 2]], dtype=torch.float64))
    assert m.mass[:, 0].tolist() == [5, 3]


def closed_form_lda(x, target, n_out, eps):
    """LDA from all samples at once (numpy): class means, the pooled within-class covariance
    (divided by N), Lambda = inv((1 - eps) Sigma + eps I); returns W [n_out, d] and b [n_out]."""
    x, target = np.asarray(x, dtype=np.float64), np.asarray(target)
    mu = np.stack([x[target == c].mean(0) for c in range(n_out)])
    centered = x - mu[target]
    sigma = centered.T @ centered / len(x)
    lam = np.linalg.inv((1 - eps) * sigma + eps * np.eye(x.shape[1]))
    w = mu @ lam
    return w, -0.5 * np.einsum("cd,cd->c", w, mu)


def random_stream(n_tasks, seed=0):
    """Tasks of two classes each, of uneven sizes, in 4-d with a constant last dimension (as
    constant pixels are): only the shrinkage keeps the covariance invertible."""
    gen = np.random.default_rng(seed)
    xs, ys = [], []
    for t in range(n_tasks):
        n = gen.integers(5, 30, size=2)
        y = np.repeat([2 * t, 2 * t + 1], n)
        x = gen.normal(size=(len(y), 4)) * [1, 2, 0.5, 0] + y[:, None] * [1, -1, 0.5, 0] + [0, 0, 0, 7]
        xs.append(x.tolist())
        ys.append(y.tolist())
    return xs, ys


@pytest.mark.parametrize("scenario", ["class", "domain"])
def test_slda_streaming_update_equals_lda_on_all_samples_at_once(scenario):
    """Class-IL: every class arrives in one task (the covariance merge across tasks is exercised);
    domain-IL: each output's mean is merged over 4 tasks too (the between-batch term)."""
    xs, ys = random_stream(4)
    task_classes = [[2 * t, 2 * t + 1] for t in range(4)]
    m = build(SLDA, scenario=scenario, task_classes=task_classes, n_in=4, shrinkage=1e-3)
    learn(m, xs, ys)
    x = np.concatenate(xs)
    y = np.concatenate(ys)
    target = y % 2 if scenario == "domain" else y
    w, b = closed_form_lda(x, target, m.labels.n_out, 1e-3)
    query = torch.randn(16, 4, generator=torch.Generator().manual_seed(3))
    got = m.logits(batch(query, task=3))
    assert np.allclose(got.numpy(), query.double().numpy() @ w.T + b, rtol=1e-8, atol=1e-8)
    assert stored_floats(m) == m.labels.n_out * (4 + 1) + 4 * 4  # means (as sums), counts, one covariance


def test_slda_with_full_shrinkage_ranks_like_the_nearest_class_mean():
    xs, ys = random_stream(3, seed=1)
    task_classes = [[0, 1], [2, 3], [4, 5]]
    slda, ncm = build(SLDA, task_classes=task_classes, n_in=4, shrinkage=1.0), build(NCM, task_classes=task_classes, n_in=4)
    learn(slda, xs, ys)
    learn(ncm, xs, ys)
    query = batch(torch.randn(50, 4, generator=torch.Generator().manual_seed(0)) * 3, task=2)
    assert torch.equal(slda.predict(query), ncm.predict(query))


@pytest.mark.parametrize("method, override, message", [
    ("prototypes", "prototypes.k=0", "prototypes.k=0 must be a positive integer"),
    ("prototypes", "prototypes.iters=0", "prototypes.iters=0 must be a positive integer"),
    ("slda", "slda.shrinkage=1.5", r"slda.shrinkage=1.5 must be in \[0, 1\]"),
    ("ncm", "ncm.features=pixels", "ncm.features='pixels' is not valid; choose one of: input, hidden"),
])
def test_bad_values_are_refused_in_one_line(method, override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [f"method={method}", override])


DIGITS = 10 * 64  # Split-Digits: 10 classes, 64 pixels


@pytest.mark.parametrize("method, overrides, stored", [
    ("ncm", [], DIGITS + 10),  # per class: the pixel sums and a count
    ("ncm", ["ncm.features=hidden"], 10 * 100 + 10),  # sums of the last hidden layer (100); the backbone is not counted
    ("prototypes", [], 16 * DIGITS + 16 * 10),  # 16 prototypes per class and their masses
    ("slda", [], DIGITS + 10 + 64 * 64),  # + one 64 x 64 covariance
])
def test_split_digits_class_il_without_training(tmp_path, method, overrides, stored):
    out = tmp_path / "run"
    assert main(["fit", f"method={method}", "scenario=class", *overrides, "logger.kind=none",
                 "trainer.enable_progress_bar=false", f"output_dir={out}"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["acc"] > 0.8  # fine-tuning: about 0.2 (tests/test_baselines.py: below 0.35)
    assert m["trainable_params_per_task"] == [0] * 5 and m["stored_floats"] == stored
