"""SupSup: the one-shot task inference against finite differences of the entropy written out by
hand, the straight-through top-k, a frozen network and frozen finished masks, and Split-Digits
runs that learn, infer tasks and count their masks as bits."""

import importlib.util
import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from continual.baselines.supsup import SupSup, entropy_gradients
from continual.cli.main import main
from continual.config import load_config
from continual.config.schema import OptimConfig
from continual.experiment import run
from continual.models.backbones import state_hash
from continual.models.mlp import MLP

QUIET = ["logger.kind=none", "trainer.enable_progress_bar=false"]

# A 2-4-4 ReLU network (no biases) and two tasks: task A's first layer reads input 0 only, task
# B's input 1 only, so x = (1, 0) gives zero hidden units, hence uniform outputs, under B's mask.
W1 = np.array([[2.0, 0.5], [1.0, 2.0], [-1.0, 1.0], [0.5, -1.0]])
W2 = np.array([[3.0, 1.0, 0.0, 1.0], [-1.0, 0.0, 1.0, 0.0], [0.5, -1.0, 2.0, 1.0], [1.0, 0.5, -2.0, 0.0]])
MASK_A = (np.array([[1, 0], [1, 0], [1, 0], [1, 0]]), np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]]))
MASK_B = (np.array([[0, 1], [0, 1], [0, 1], [0, 1]]), np.array([[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 0, 1], [0, 0, 1, 1]]))


def entropy_by_hand(x: np.ndarray, alpha: np.ndarray) -> float:
    """H(softmax(f(x; W * (alpha_A M_A + alpha_B M_B)))), the superposed network written out."""
    m1 = alpha[0] * MASK_A[0] + alpha[1] * MASK_B[0]
    m2 = alpha[0] * MASK_A[1] + alpha[1] * MASK_B[1]
    z = (W2 * m2) @ np.maximum((W1 * m1) @ x, 0.0)
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    return float(-(p * np.log(p)).sum())


def tiny_net() -> MLP:
    net = MLP(2, [4], 4).double()
    with torch.no_grad():
        net.hidden[0].weight.copy_(torch.tensor(W1))
        net.head.weight.copy_(torch.tensor(W2))
        net.hidden[0].bias.zero_()
        net.head.bias.zero_()
    return net


def supsup(net, n_tasks: int, **hp) -> SupSup:
    classes = [[2 * t, 2 * t + 1] for t in range(n_tasks)]
    return SupSup(net, hp=OmegaConf.structured(SupSup.Config(**hp)), task_classes=classes, n_classes=2 * n_tasks,
                  scenario="class", optim=OmegaConf.structured(OptimConfig))


def test_one_shot_inference_matches_finite_differences_of_the_entropy_by_hand():
    x = np.array([1.0, 0.0])
    assert entropy_by_hand(x, np.array([0.0, 1.0])) == pytest.approx(np.log(4))  # B's mask: uniform outputs
    assert entropy_by_hand(x, np.array([1.0, 0.0])) < 0.1  # A's: confident, the sample is A's
    eps, half = 1e-6, np.array([0.5, 0.5])
    by_hand = [(entropy_by_hand(x, half + eps * e) - entropy_by_hand(x, half - eps * e)) / (2 * eps) for e in np.eye(2)]
    masks = [torch.tensor(np.stack([MASK_A[i], MASK_B[i]]), dtype=torch.float64) for i in range(2)]
    with torch.inference_mode():  # as in a test pass: the gradient must still be computed
        grad = entropy_gradients(tiny_net(), torch.tensor(x[None]), masks, 1.0)
    assert grad[0].tolist() == pytest.approx(by_hand, rel=1e-6)
    assert by_hand[0] < by_hand[1] and int((-grad).argmax(1)) == 0  # more of A lowers the entropy most


def test_the_module_infers_each_samples_task_whatever_the_batch():
    """Task A's mask stored as bits, task B the task in training (its mask from the scores)."""
    module = supsup(tiny_net(), 2, init="backbone", mask="threshold")
    flat = [np.concatenate([m[0].ravel(), m[1].ravel()]) for m in (MASK_A, MASK_B)]
    module.masks[0] = torch.tensor(flat[0], dtype=torch.bool)
    module.set_task(1)
    with torch.no_grad():
        module.scores.copy_(torch.tensor(flat[1] - 0.5))  # score >= 0 exactly on B's connections
    xa, xb = torch.tensor([[1.0, 0.0]], dtype=torch.float64), torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    with torch.inference_mode():
        assert module.infer_task(xa).tolist() == [0] and module.infer_task(xb).tolist() == [1]
        assert module.infer_task(torch.cat([xb, xa, xa, xb])).tolist() == [1, 0, 0, 1]


def test_per_sample_alphas_give_each_images_own_gradient_as_the_reference_loop_does():
    """The platform's one backward over per-sample alphas against repro/supsup_loop.py, which
    differentiates each image's entropy alone (torch.func): a deeper net, 3 random masks, biases."""
    spec = importlib.util.spec_from_file_location("supsup_loop", Path(__file__).resolve().parents[1] / "repro" / "supsup_loop.py")
    loop = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loop)
    torch.manual_seed(0)
    net = MLP(6, [5, 4], 3).double()
    with torch.no_grad():
        for layer in [*net.hidden, net.head]:
            layer.bias.zero_()  # the reference network has none
    weights = [layer.weight.detach() for layer in [*net.hidden, net.head]]
    learned = [[(torch.rand_like(w) < 0.5).double() for w in weights] for _ in range(3)]
    x = torch.randn(8, 6, dtype=torch.float64)
    reference = loop.entropy_gradients(x, weights, learned)
    masks = [torch.stack([task[i] for task in learned]) for i in range(3)]
    assert torch.allclose(entropy_gradients(net, x, masks, 1.0), reference, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("sparsity", [0.1, 0.5, 0.9, 1.0])
def test_top_k_keeps_exactly_the_fraction_of_largest_scores_and_passes_the_gradient_through(sparsity):
    torch.manual_seed(0)
    module = supsup(MLP(5, [7], 3), 1, sparsity=sparsity)
    scores = torch.randn(5 * 7 + 7 * 3, requires_grad=True)
    mask = module.binarize(scores)
    for m, s, n in zip(mask.split([35, 21]), scores.detach().abs().split([35, 21]), [35, 21]):
        assert set(m.tolist()) <= {0.0, 1.0} and m.sum() == round(sparsity * n)
        if sparsity < 1:
            assert s[m == 1].min() > s[m == 0].max()  # the largest |scores| are the ones kept
    weight = torch.randn_like(scores)
    (mask * weight).sum().backward()
    assert torch.equal(scores.grad, weight * scores.detach().sign())  # straight through, via |scores|


class Hashes(L.Callback):
    """After every test pass: the backbone's hash and each mask row's."""

    def __init__(self):
        self.backbone, self.rows = [], []

    def on_test_end(self, trainer, pl_module):
        self.backbone.append(state_hash(pl_module.net))
        self.rows.append([hash(row.numpy().tobytes()) for row in pl_module.masks.cpu()])


@pytest.fixture(scope="module")
def class_il(tmp_path_factory):
    hashes = Hashes()
    out = tmp_path_factory.mktemp("supsup") / "class"
    metrics = run(load_config(None, ["method=supsup", "scenario=class", *QUIET, f"output_dir={out}"]), callbacks=[hashes])
    return metrics, hashes


def test_the_network_and_every_finished_mask_stay_bit_identical(class_il):
    _, hashes = class_il
    assert len(set(hashes.backbone)) == 1 and len(hashes.backbone) == 6  # before training + after each task
    for t in range(5):  # row t changes when task t is learned (pass t + 1), never afterwards
        assert hashes.rows[t + 1][t] != hashes.rows[t][t]
        assert len({rows[t] for rows in hashes.rows[t + 1:]}) == 1


def test_class_il_infers_tasks_better_than_chance(class_il):
    m, _ = class_il
    ti = m["task_inference"]
    assert ti["accuracy"] > 0.35  # measured 0.46 on Split-Digits; chance is 0.2
    # a sample's class can be right only if its task is
    assert all(acc <= inferred for acc, inferred in zip(m["accuracy_matrix"][-1], ti["per_task"]))
    assert all(row[j] == 0.0 for i, row in enumerate(m["accuracy_matrix"]) for j in range(i + 1, 5))


def test_split_digits_task_il_learns_without_forgetting_and_counts_masks_as_bits(tmp_path):
    out = tmp_path / "x"
    assert main(["fit", "method=supsup", "scenario=task", *QUIET, f"output_dir={out}"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["acc"] > 0.9  # measured 0.986; chance is 0.5 on these 2-class tasks
    assert m["bwt"] == 0.0 and all(f == 0.0 for f in m["forgetting"][:-1])
    assert m["task_inference"]["accuracy"] is not None  # inferred even when the task is given
    connections = 64 * 100 + 100 * 100 + 100 * 10  # hidden [100, 100], 10 outputs, every layer masked
    assert m["trainable_params_per_task"] == [connections] * 5  # the scores of the task in training
    assert m["stored_floats"] == 5 * connections / 32 + connections  # 5 masks as bits + those scores
    assert m["mask_density"] == 0.5 and m["mask_stability"]["unchanged_fraction"] == 1.0


@pytest.mark.parametrize("override, message", [
    ("supsup.sparsity=0", "supsup.sparsity=0.0 must be in (0, 1]"),
    ("supsup.outputs=1", "supsup.outputs=1 is fewer than the 2 classes of the largest task"),
])
def test_bad_values_are_one_line_errors(capsys, override, message):
    assert main(["fit", "method=supsup", override, *QUIET]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
