"""Backbone construction, checkpoints, pretraining and the frozen-hash guard."""

import warnings

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from continual.callbacks.frozen_guard import FrozenBackboneGuard
from continual.config.schema import Config
from continual.data.streams import build_stream
from continual.errors import CheckpointError, FrozenBackboneError
from continual.features import extract_features
from continual.models.backbones import build_backbone, freeze, state_hash
from continual.models.continual_module import ContinualModule
from continual.models.mlp import MLP


def cfg(**kw):
    return OmegaConf.merge(OmegaConf.structured(Config), kw)


@pytest.fixture(scope="module")
def digits():
    return extract_features(cfg(), build_stream(cfg().data, seed=0))  # backbone.name=mlp: the pixels, flat


class FrozenNet(ContinualModule):
    """A method with a frozen backbone, to exercise the guard."""

    def __init__(self, net, stream):
        super().__init__(stream.task_classes, stream.n_classes, "task", cfg().optim)
        self.net = freeze(net)

    def frozen_modules(self):
        return {"backbone": self.net}


def test_guard_catches_a_deliberate_weight_change(digits):
    module = FrozenNet(MLP(64, [16], 10), digits)
    guard = FrozenBackboneGuard()
    guard.on_train_start(None, module)
    guard.on_train_end(None, module)  # untouched: passes
    with torch.no_grad():
        module.net.hidden[0].weight[3, 5] += 1e-6
    with pytest.raises(FrozenBackboneError, match="frozen module 'backbone' changed"):
        guard.on_train_end(None, module)


def test_guard_catches_trainable_parameters(digits):
    module = FrozenNet(MLP(64, [16], 10), digits)
    module.net.head.weight.requires_grad_(True)
    with pytest.raises(FrozenBackboneError, match="trainable parameters"):
        FrozenBackboneGuard().on_train_start(None, module)


def test_state_hash_sees_buffers_and_weights():
    a, b = MLP(4, [3], 2), MLP(4, [3], 2)
    b.load_state_dict(a.state_dict())
    assert state_hash(a) == state_hash(b)
    with torch.no_grad():
        b.head.bias[0] += 1.0
    assert state_hash(a) != state_hash(b)


def test_checkpoint_roundtrip_and_mismatch(tmp_path, digits):
    src = MLP(64, [32, 16], 10)
    path = tmp_path / "backbone.pt"
    torch.save(src.state_dict(), path)
    net = build_backbone(cfg(backbone={"hidden": [32, 16], "init": "checkpoint", "checkpoint": str(path)}), digits, 10)
    assert torch.equal(net.hidden[1].weight, src.hidden[1].weight) and torch.equal(net.head.weight, src.head.weight)
    with pytest.raises(CheckpointError, match="does not fit backbone.hidden=\\[32, 8\\]"):
        build_backbone(cfg(backbone={"hidden": [32, 8], "init": "checkpoint", "checkpoint": str(path)}), digits, 10)
    with pytest.raises(CheckpointError, match="not found"):
        build_backbone(cfg(backbone={"init": "checkpoint", "checkpoint": str(tmp_path / "nope.pt")}), digits, 10)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        build_backbone(cfg(backbone={"init": "checkpoint", "checkpoint": str(tmp_path / "junk.pt")}), digits, 10)


def test_pretraining_learns_and_warns_on_overlap(digits):
    c = cfg(backbone={"hidden": [16], "init": "pretrain", "pretrain": {"dataset": "digits", "epochs": 30}})
    with pytest.warns(UserWarning, match="overlaps the stream's own later-task classes"):
        net = build_backbone(c, digits, 10)
    # pretrained features separate digits better than random ones: a linear probe on them fits
    # better than on the best of five random inits: by 14-17 points here over pretraining seeds 0-2,
    # so neither a lucky draw nor another torch version's float order decides (at width 32 it was 4)
    x = torch.cat([t.x_train for t in digits.tasks]); y = torch.cat([t.y_train for t in digits.tasks])
    def probe(features):
        f = features(x).detach()
        w = torch.linalg.lstsq(f, torch.nn.functional.one_hot(y, 10).float()).solution
        return ((f @ w).argmax(1) == y).float().mean().item()
    randoms = []
    for seed in range(5):
        torch.manual_seed(seed)
        randoms.append(MLP(64, [16], 10))
    assert not any(torch.equal(net.hidden[0].weight, r.hidden[0].weight) for r in randoms)
    assert probe(net.features) > max(probe(r.features) for r in randoms)


@pytest.mark.parametrize("classes", [[5, 6, 7], [0, 1]], ids=["disjoint", "first-task"])
def test_pretraining_on_disjoint_or_first_task_classes_does_not_warn(digits, classes):
    stream = extract_features(cfg(), build_stream(cfg(data={"n_tasks": 2}).data, seed=0))  # classes 0..3, task 1 = {0, 1}
    c = cfg(backbone={"hidden": [8], "init": "pretrain", "pretrain": {"dataset": "digits", "classes": classes}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_backbone(c, stream, 10)


def test_digits_at_mnist_layout_by_hand():
    """digits28: an 8x8 digit scaled to 20x20 (bilinear) and centred in 28x28, as MNIST draws its
    digits; checked against numpy's 1-D interpolation at the pixel centres, rows times columns."""
    from continual.data.sources import at_mnist_layout

    full = at_mnist_layout(torch.ones(1, 64)).view(28, 28)
    assert torch.allclose(full[4:24, 4:24], torch.ones(20, 20)) and full.sum().round() == 400  # 4 blank pixels around
    src = np.clip((np.arange(20) + 0.5) * 8 / 20 - 0.5, 0, 7)  # each output pixel's centre on the 8x8 grid
    one = torch.zeros(1, 64)
    one[0, 8 * 2 + 5] = 1.0  # row 2, column 5
    expected = np.zeros((28, 28))
    expected[4:24, 4:24] = np.outer(np.interp(src, np.arange(8), np.eye(8)[2]), np.interp(src, np.arange(8), np.eye(8)[5]))
    assert np.allclose(at_mnist_layout(one).view(28, 28).numpy(), expected, atol=1e-6)
