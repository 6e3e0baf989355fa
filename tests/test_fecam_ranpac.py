"""FeCAM and RanPAC against computations written here in numpy: FeCAM's logits are a Mahalanobis
classifier with shrunk, normalized per-class covariances; RanPAC's weights after two tasks are
the ridge solution on both tasks' projected features at once, task-by-task accumulation equals
one shot, and its lambda is the candidate with the least error on the validation split."""

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from continual.baselines.fecam import FeCAM
from continual.baselines.ranpac import RanPAC, squared_error
from continual.cli.main import main
from continual.config import load_config
from continual.config.schema import OptimConfig
from continual.data.task_data import TaskData
from continual.errors import ConfigError
from continual.metrics.memory import stored_floats, trainable_params
from continual.models.mlp import MLP
from test_statistics_baselines import batch, build, learn


def two_tasks(d=5, seed=0, n=(12, 9, 15, 7)):
    """Two tasks of two classes, each class its own mean and shape, positive (ReLU-like) features."""
    gen = np.random.default_rng(seed)
    xs, ys = [], []
    for t in range(2):
        x, y = [], []
        for c in (2 * t, 2 * t + 1):
            mix = gen.normal(size=(d, d)) * gen.uniform(0.2, 1.5, size=d)
            x.append(np.abs(gen.normal(size=(n[c], d)) @ mix + gen.uniform(0, 4, size=d)))
            y += [c] * n[c]
        xs.append(np.concatenate(x))
        ys.append(y)
    return xs, ys


# -- FeCAM ----------------------------------------------------------------------------------------
def fecam_numpy(x, y, query, n_out, beta, gamma1, gamma2):
    """FeCAM's logits from the samples of each class at once: Tukey's power, np.cov, the shrinkage
    of the paper (mean variance on the diagonal, mean non-zero covariance off it), the correlation
    matrix, and minus the squared Mahalanobis distance between unit-length vectors."""
    x, query = np.sign(x) * np.abs(x) ** beta, np.sign(query) * np.abs(query) ** beta
    d = x.shape[1]
    eye = np.eye(d)
    q = query / np.linalg.norm(query, axis=1, keepdims=True)
    out = np.empty((len(query), n_out))
    for c in range(n_out):
        xc = x[y == c]
        mu = xc.mean(0)
        cov = np.cov(xc, rowvar=False)
        off = cov[~eye.astype(bool)]
        cov = cov + gamma1 * np.trace(cov) / d * eye + gamma2 * off[off != 0].mean() * (1 - eye)
        sd = np.sqrt(np.diag(cov))
        diff = q - mu / np.linalg.norm(mu)
        out[:, c] = -np.einsum("bd,de,be->b", diff, np.linalg.pinv(cov / np.outer(sd, sd)), diff)
    return out


@pytest.mark.parametrize("beta, gamma1, gamma2", [(0.5, 1.0, 1.0), (1.0, 0.3, 0.0)])
def test_fecam_logits_are_a_mahalanobis_classifier_with_shrunk_covariances(beta, gamma1, gamma2):
    xs, ys = two_tasks()
    m = build(FeCAM, n_in=5, beta=beta, gamma1=gamma1, gamma2=gamma2)
    learn(m, xs[:1], ys[:1])
    query = np.abs(np.random.default_rng(1).normal(size=(20, 5)) * 3)
    after_first = m.logits(batch(query, task=0)).numpy()
    assert np.isinf(after_first[:, 2:]).all()  # classes not seen yet
    expected = fecam_numpy(xs[0], np.array(ys[0]), query.astype(np.float32), 2, beta, gamma1, gamma2)
    assert np.allclose(after_first[:, :2], expected, rtol=1e-6, atol=1e-9)
    learn(m, xs[1:], ys[1:], first=1)
    x, y = np.concatenate(xs), np.concatenate(ys)
    expected = fecam_numpy(x, y, query.astype(np.float32), 4, beta, gamma1, gamma2)
    got = m.logits(batch(query))
    assert np.allclose(got.numpy(), expected, rtol=1e-6, atol=1e-9)
    assert m.predict(batch(query)).tolist() == expected.argmax(1).tolist()
    assert len(set(expected.argmax(1).tolist())) > 1  # the query is not all one class
    assert trainable_params(m) == 0 and stored_floats(m) == 4 * (5 * 5 + 5 + 1)  # scatter, sums, count per class


def test_fecam_domain_il_statistics_merged_over_tasks_equal_those_of_all_samples():
    xs, ys = two_tasks(d=3)
    m = build(FeCAM, scenario="domain", n_in=3, beta=1.0)
    learn(m, xs, ys)
    x, out = np.concatenate(xs), np.concatenate(ys) % 2
    for o in (0, 1):
        xo = x[out == o]
        assert m.counts[o] == len(xo) and np.allclose(m.means()[o].numpy(), xo.mean(0))
        assert np.allclose(m.scatter[o].numpy(), np.cov(xo, rowvar=False) * (len(xo) - 1), rtol=1e-5)


def test_fecam_with_a_dead_feature_and_no_diagonal_shrinkage_still_scores():
    xs, ys = two_tasks(d=4)
    xs = [np.concatenate([x[:, :3], np.zeros((len(x), 1))], 1) for x in xs]  # a ReLU unit that never fires
    m = build(FeCAM, n_in=4, beta=1.0, gamma1=0.0, gamma2=0.5)
    learn(m, xs, ys)
    assert torch.isfinite(m.logits(batch(np.abs(np.random.default_rng(2).normal(size=(8, 4)))))).all()


# -- RanPAC ---------------------------------------------------------------------------------------
def ranpac(scenario="class", **hp):
    """RanPAC over 5 features, two tasks of two classes, its projection drawn from seed 5."""
    return RanPAC(MLP(5, [3], 4), hp=OmegaConf.structured(RanPAC.Config(**hp)), seed=5, task_classes=[[0, 1], [2, 3]],
                  n_classes=4, scenario=scenario, optim=OmegaConf.structured(OptimConfig))


def ridge_numpy(h, y, n_out, lam):
    """(H^T H + lambda I)^-1 H^T Y on all samples at once."""
    onehot = np.eye(n_out)[y]
    return np.linalg.solve(h.T @ h + lam * np.eye(h.shape[1]), h.T @ onehot)


def projected(m, x):
    """h = ReLU(x W) with W as the test draws it: N(0, 1) from the run's seed."""
    w = torch.randn(x.shape[1], m.hp.m, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert torch.equal(w, m.projection)
    return np.maximum(np.asarray(x, dtype=np.float32).astype(np.float64) @ w.numpy(), 0)


def task_data(t, x, y, x_val=None, y_val=None):
    as_x = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    y = torch.as_tensor(y)
    val = (as_x(x_val), torch.as_tensor(y_val)) if x_val is not None else ()
    return TaskData(t, as_x(x), y, torch.full_like(y, t), *val)


def test_ranpac_weights_after_two_tasks_are_the_ridge_solution_on_both_at_once():
    xs, ys = two_tasks()
    m = ranpac(m=40, ridge=0.5)
    learn(m, xs, ys)
    h = projected(m, np.concatenate(xs))
    w = ridge_numpy(h, np.concatenate(ys), 4, 0.5)
    assert np.allclose(m.weights.numpy(), w, rtol=1e-5, atol=1e-8)
    query = np.abs(np.random.default_rng(1).normal(size=(10, 5)) * 3)
    assert np.allclose(m.logits(batch(query)).numpy(), projected(m, query) @ w, rtol=1e-5, atol=1e-8)
    # one shot: both tasks' samples in one call give the same statistics and weights
    once = ranpac(m=40, ridge=0.5)
    once.set_task(1)
    once.on_task_end(task_data(1, np.concatenate(xs), np.concatenate(ys)))
    for name in ("gram", "sums", "counts", "weights"):
        assert torch.allclose(getattr(once, name), getattr(m, name), rtol=1e-10, atol=1e-10), name
    # G, the class sums and the weights (40 x 4 each), counts (4) and the lambda in use; W is drawn from the seed
    assert trainable_params(m) == 0 and stored_floats(m) == 40 * 40 + 2 * 40 * 4 + 4 + 1


def test_ranpac_chooses_the_ridge_with_the_least_error_on_the_validation_split_seen_so_far():
    xs, ys = two_tasks(n=(30, 30, 30, 30))
    ridges = [10.0 ** k for k in range(-2, 8)]
    m = ranpac(m=60, ridge=ridges)
    fit = [slice(0, 15), slice(30, 45)]  # per task: half of each class to train, the other half to validate
    val = [slice(15, 30), slice(45, 60)]
    train_x = [np.concatenate([x[s] for s in fit]) for x in xs]
    train_y = [np.concatenate([np.array(y)[s] for s in fit]) for y in ys]
    val_x = [np.concatenate([x[s] for s in val]) for x in xs]
    val_y = [np.concatenate([np.array(y)[s] for s in val]) for y in ys]
    for t in range(2):
        m.set_task(t)
        m.on_task_end(task_data(t, train_x[t], train_y[t], val_x[t], val_y[t]))
    h, hv = projected(m, np.concatenate(train_x)), projected(m, np.concatenate(val_x))
    yv = np.eye(4)[np.concatenate(val_y)]
    solutions = [ridge_numpy(h, np.concatenate(train_y), 4, lam) for lam in ridges]
    errors = [((yv - hv @ w) ** 2).sum() for w in solutions]
    # the error from the validation split's Gram matrix and class sums, less sum ||y||^2 (one per sample)
    got = squared_error(torch.from_numpy(np.stack(solutions)), m.val_gram, m.val_sums).numpy()
    assert np.allclose(got + len(yv), errors, rtol=1e-6)
    best = int(np.argmin(errors))
    assert 0 < best < len(ridges) - 1  # the choice is not an end of the list: it is made, not defaulted
    assert m.ridge.item() == ridges[best] and np.allclose(m.weights.numpy(), solutions[best], rtol=1e-5, atol=1e-8)
    # + the validation Gram matrix and class sums
    assert stored_floats(m) == 2 * 60 * 60 + 3 * 60 * 4 + 4 + 1


def test_ranpac_task_il_predicts_within_the_given_task():
    xs, ys = two_tasks()
    m = ranpac(scenario="task", m=40, ridge=0.5)
    learn(m, xs, ys)
    q = batch(np.concatenate(xs)[:5], task=1)
    assert set(m.predict(q).tolist()) <= {2, 3}


@pytest.mark.parametrize("overrides, message", [
    (["method=ranpac", "ranpac.ridge=[0.1,1]", "data.val_fraction=0"],
     "ranpac.ridge lists 2 candidates but data.val_fraction=0 leaves no validation split"),
    (["method=ranpac", "ranpac.ridge=-1"], "ranpac.ridge=-1 must be a positive number or a non-empty list of them"),
    (["method=ranpac", "ranpac.ridge=[]"], r"ranpac.ridge=\[\] must be a positive number"),
    (["method=ranpac", "ranpac.m=0"], "ranpac.m=0 must be a positive integer"),
    (["method=fecam", "fecam.beta=0"], r"fecam.beta=0.0 must be in \(0, 1\]"),
    (["method=fecam", "fecam.gamma1=-1"], "fecam.gamma1=-1.0 must be a finite number >= 0"),
    (["method=fecam", "fecam.gamma2=inf"], "fecam.gamma2=inf must be a finite number >= 0"),  # no training loss to catch it
])
def test_bad_values_are_refused_in_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


@pytest.mark.parametrize("method, overrides, stored", [
    ("fecam", [], 10 * (64 * 64 + 64 + 1)),  # per class: a 64 x 64 scatter, the pixel sums, a count
    ("ranpac", ["ranpac.m=200", "ranpac.ridge=[1,100]"], 2 * 200 * 200 + 3 * 200 * 10 + 10 + 1),
])
def test_split_digits_class_il_without_training(tmp_path, method, overrides, stored):
    out = tmp_path / "run"
    assert main(["fit", f"method={method}", "scenario=class", *overrides, "logger.kind=none",
                 "trainer.enable_progress_bar=false", f"output_dir={out}"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["acc"] > 0.9  # nearest class mean on the pixels: 0.8 and more (tests/test_statistics_baselines.py)
    assert m["trainable_params_per_task"] == [0] * 5 and m["stored_floats"] == stored
