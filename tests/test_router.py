"""The attention router: frozen parts stay frozen, masks are deterministic, padded classes never
win, `n_v` is validated, and every variant learns on Split-Digits."""

import copy
import dataclasses
import itertools
import math

import lightning as L
import pytest
import torch

from continual.build import build_method
from continual.cli.main import main
from continual.config import load_config
from continual.data.datamodule import TaskStreamDataModule
from continual.data.streams import build_stream
from continual.features import extract_features
from continual.experiment import run
from continual.models.backbones import state_hash
from helpers import QUICK, comparable

ROUTER = [*QUICK, "method=router", "router.h=16"]


def train_stream(overrides):
    """Train a router over the whole stream by hand, hashing what must not change."""
    cfg = load_config(None, [*ROUTER, *overrides])
    L.seed_everything(cfg.seed, verbose=False)
    stream = extract_features(cfg, build_stream(cfg.data, cfg.seed))
    module = build_method(cfg, stream)
    dm = TaskStreamDataModule(stream, cfg.data.batch_size, cfg.data.eval_batch_size, cfg.seed)
    backbone_hash = state_hash(module.net)
    memory_hashes = []
    for t in range(len(stream)):
        dm.set_task(t)
        module.set_task(t)
        module.on_task_start(dm.task_data())
        L.Trainer(**cfg.trainer, logger=False).fit(module, datamodule=dm)
        module.on_task_end(dm.task_data())
        memory_hashes.append(state_hash(module.memories[t]))
    return module, stream, backbone_hash, memory_hashes


SPARSE = ["router.gate_init=0.2", "router.mask_sparsity=0.2", "optim.lr=1e-2"]  # gates that close, so masks differ


@pytest.fixture(scope="module")
def trained():
    return train_stream(["trainer.max_epochs=15", *SPARSE])


def test_backbone_and_earlier_tasks_are_untouched(trained):
    module, stream, backbone_hash, memory_hashes = trained
    assert state_hash(module.net) == backbone_hash
    assert all(not p.requires_grad for p in module.net.parameters())
    for t, h in enumerate(memory_hashes):  # hashed right after task t; unchanged after all later tasks
        assert state_hash(module.memories[t]) == h
    # and while the last task trains, only its own memory is trainable
    trainable = {n.split(".")[1] for n, p in module.named_parameters() if p.requires_grad and n.startswith("memories.")}
    assert trainable == {str(len(stream) - 1)}
    assert not any(p.requires_grad for p in module.encoder.parameters())


def test_same_sample_gets_the_same_mask_bit_for_bit(trained):
    module, stream, _, _ = trained
    module.eval()
    x = torch.cat([t.x_test for t in stream.tasks])
    with torch.no_grad():
        a = module.route(x)
        b = module.route(x)
        c = module.route(x.flip(0))
    assert torch.equal(a["mask"], b["mask"]) and torch.equal(a["task"], b["task"])
    assert ((a["mask"] == 0) | (a["mask"] == 1)).all()  # hard masks are exactly binary, not 1 +- rounding
    on = (a["mask"] > 0.5).float().mean(1)
    assert 0.05 < on.mean() < 0.95 and on.std() > 0  # masks that switch units, and differ by sample
    # a different batch order does not change any sample's task or binarized mask
    assert torch.equal(a["task"], c["task"].flip(0))
    assert torch.equal(a["mask"] > 0.5, (c["mask"] > 0.5).flip(0))


def test_n_v_smaller_than_a_task_is_a_config_error(capsys):
    assert main(["fit", *ROUTER, "router.n_v=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "continual: error: router.n_v=1 is smaller than task 1's 2 classes [0, 1]; "
        "set router.n_v>=2 (or leave it unset for the largest task's class count)"
    )


def test_padded_classes_are_never_predicted(tmp_path):
    module, stream, _, _ = train_stream(["router.n_v=5", "trainer.max_epochs=1"])
    module.eval()
    x = torch.cat([t.x_test for t in stream.tasks])
    with torch.no_grad():
        out = module.route(x)
    assert out["logits"].shape[1] == 5
    assert torch.isneginf(out["logits"][:, 2:]).all()  # every task has 2 classes: slots 2..4 padded
    assert (out["logits"].argmax(1) < 2).all()
    pred = module.predict({"x": x, "task": torch.cat([torch.full((len(t.y_test),), t.id) for t in stream.tasks])})
    assert set(pred.tolist()) <= set(range(10))  # always a real global class


def test_class_il_infers_tasks_and_beats_finetune(tmp_path):
    default = ["trainer.max_epochs=5", "data.n_tasks=5", "backbone.hidden=[100,100]"]  # the default config's size: the README's claim
    router = run(load_config(None, [*ROUTER, *default, "scenario=class", "optim.lr=1e-2", f"output_dir={tmp_path / 'r'}"]))
    finetune = run(load_config(None, [*QUICK, *default, "scenario=class", f"output_dir={tmp_path / 'f'}"]))
    assert router["bwt"] > -0.2 and finetune["bwt"] < -0.5
    assert router["acc"] > finetune["acc"] + 0.3


# A covering set instead of all 3 x 4 x 3 x 2 x 3 x 2 combinations: every pair of values of the
# router's choice options (and `positional`) appears in some row, so each value is run and so is
# each pair that interacts:
# * tokens x attention: the attention reads the signature's shape (dot's query width is the token
#   width; local's band and the positional embeddings are n_tokens wide; queries are chunked by n_tokens^2);
# * gate x mask: hard connection masks are learned through shared gate logits and kept as bits,
#   soft ones are the gates themselves; unit masks are mixed by attention before binarizing;
# * task_inference x gate: entropy inference runs each task's gated forward pass;
# * task_inference x attention, positional x attention: dot attention has parameters only with
#   positional embeddings, and a trainable attention refits task 1's keys when it ends, in the same
#   query pass that fits the Gaussian variances.
# The numeric settings of one option each ride on rows that use it: heads on learned/local/perceiver,
# window on local, latents on perceiver, patch_size and unit_chunks that do not divide the 64
# inputs (the padded groups of the signature).
# test_the_router_variants_cover_every_pair checks the covering property against the config. The four
# rows not marked slow run every value once (one row per attention kind), for the quick test loop.
VARIANTS = [  # tokens, attention, gate, mask, task_inference, positional, extra
    pytest.param(*("layer", "learned", "units", "hard", "nearest", True, ["router.heads=2"]), marks=pytest.mark.slow),
    ("layer", "dot", "none", "hard", "gaussian", True, []),
    pytest.param(*("layer", "perceiver", "connections", "hard", "entropy", False, ["router.latents=3"]), marks=pytest.mark.slow),
    pytest.param(*("layer", "local", "none", "soft", "gaussian", False, ["router.window=2"]), marks=pytest.mark.slow),
    pytest.param(*("unit", "learned", "none", "hard", "entropy", True, []), marks=pytest.mark.slow),
    pytest.param(*("unit", "dot", "connections", "hard", "nearest", False, ["router.unit_chunks=5"]), marks=pytest.mark.slow),
    pytest.param(*("unit", "perceiver", "units", "soft", "gaussian", False, ["router.heads=2"]), marks=pytest.mark.slow),
    ("unit", "local", "units", "hard", "entropy", True, []),
    ("patch", "learned", "connections", "soft", "gaussian", False, ["router.patch_size=10"]),
    pytest.param(*("patch", "dot", "units", "soft", "entropy", True, []), marks=pytest.mark.slow),
    ("patch", "perceiver", "none", "hard", "nearest", True, []),
    pytest.param(*("patch", "local", "connections", "soft", "nearest", True, ["router.heads=2", "router.patch_size=16"]), marks=pytest.mark.slow),
]
OPTIONS = ("tokens", "attention", "gate", "mask", "task_inference", "positional")


def test_the_router_variants_cover_every_pair():
    """Every pair of values of every two options is in VARIANTS, and a value added to an option
    fails here until a row runs it."""
    from continual.routers.module import RouterModule

    values = {f.name: f.metadata["choices"] for f in dataclasses.fields(RouterModule.Config) if "choices" in f.metadata}
    assert set(OPTIONS) == {*values, "positional"}
    values["positional"] = (False, True)
    rows = [v.values if hasattr(v, "values") else v for v in VARIANTS]  # pytest.param(...) or a tuple
    for a, b in itertools.combinations(range(len(OPTIONS)), 2):
        seen = {(row[a], row[b]) for row in rows}
        assert seen == set(itertools.product(values[OPTIONS[a]], values[OPTIONS[b]])), (OPTIONS[a], OPTIONS[b])
    quick = [v for v in VARIANTS if not hasattr(v, "marks")]
    assert all({row[a] for row in quick} == set(values[OPTIONS[a]]) for a in range(len(OPTIONS)))


@pytest.mark.parametrize(OPTIONS + ("extra",), VARIANTS)
def test_every_variant_learns_task_il_without_forgetting(tmp_path, tokens, attention, gate, mask, task_inference, positional, extra):
    overrides = [
        f"router.tokens={tokens}", f"router.attention={attention}", f"router.gate={gate}", f"router.mask={mask}",
        f"router.task_inference={task_inference}", f"router.positional={str(positional).lower()}", *extra,
        "router.memories=2", "optim.lr=1e-2", "trainer.max_epochs=6",
        "backbone.hidden=[64,64]", "data.n_tasks=3", "data.eval_batch_size=512", f"output_dir={tmp_path}",
    ]
    m = run(load_config(None, [*ROUTER, *overrides]))
    assert m["acc"] > 0.75  # chance is 0.5 on these 2-class tasks
    assert m["bwt"] == 0.0 and all(f == 0.0 for f in m["forgetting"][:-1])  # nothing learned is overwritten


@pytest.mark.parametrize("mask", ["soft", "hard"])
def test_mask_sparsity_closes_gates_and_still_learns(tmp_path, mask):
    base = [*ROUTER, f"router.mask={mask}", "router.gate_init=0.2", "optim.lr=1e-2", "trainer.max_epochs=3", "data.n_tasks=2"]
    dense = run(load_config(None, [*base, "router.mask_sparsity=0", f"output_dir={tmp_path / 'dense'}"]))
    sparse = run(load_config(None, [*base, "router.mask_sparsity=1", f"output_dir={tmp_path / 'sparse'}"]))
    d, s = dense["mask_stability"]["mask_density"], sparse["mask_stability"]["mask_density"]
    assert s < 0.5 * d  # the sparsity term switched most of the network off ...
    assert sparse["acc"] > 0.85  # ... and the tasks are still learned (chance: 0.5)


def test_test_batch_query_memo_changes_no_number(tmp_path, monkeypatch):
    """Predictions and metric callbacks share one query computation per test batch; every
    number must be what separate computations give."""
    overrides = [*ROUTER, "scenario=class", "optim.lr=1e-2", "data.n_tasks=3", *SPARSE[:2]]
    memo = comparable(run(load_config(None, [*overrides, f"output_dir={tmp_path / 'memo'}"])))
    from continual.routers.module import RouterModule

    monkeypatch.setattr(RouterModule, "on_test_batch_start", lambda self, *a, **k: None)  # memo off
    plain = comparable(run(load_config(None, [*overrides, f"output_dir={tmp_path / 'plain'}"])))
    assert memo == plain
    assert memo["task_inference"]["accuracy"] < 1.0  # some samples are misrouted: the shared query matters


def test_gaussian_task_inference_by_hand():
    from continual.routers.parts.memory import TaskMemory, gaussian_scores

    torch.manual_seed(0)
    q, keys, log_var = torch.randn(5, 3), torch.randn(4, 3), torch.randn(4, 3) * 0.3
    by_hand = torch.tensor([[-0.5 * float(((qi - k) ** 2 / lv.exp() + lv).sum()) for k, lv in zip(keys, log_var)] for qi in q])
    assert torch.allclose(gaussian_scores(q, keys, log_var), by_hand, atol=1e-5)
    # variances: slot 0 gets the two points near it, slot 1 one point; shrunk towards the overall
    memory = TaskMemory(2, 2, [], 4, 2, 0.0, gaussian=True)
    memory.keys.data = torch.tensor([[0.0, 0.0], [10.0, 10.0]])
    pts = torch.tensor([[1.0, 0.0], [-1.0, 2.0], [10.0, 13.0]])
    memory.fit_variances(pts, prior=2.0)
    sq = torch.tensor([[1.0, 0.0], [1.0, 4.0], [0.0, 9.0]])
    overall = sq.mean(0)
    expected = torch.stack([(sq[0] + sq[1] + 2 * overall) / 4, (sq[2] + 2 * overall) / 3])
    assert torch.allclose(memory.log_var.exp(), expected, atol=1e-6)


def test_gaussian_inference_is_used_at_test_and_not_in_training(tmp_path):
    m = run(load_config(None, [*ROUTER, "scenario=class", "optim.lr=1e-2", "router.task_inference=gaussian", "trainer.max_epochs=1",
                               f"output_dir={tmp_path / 'g'}"]))
    n = run(load_config(None, [*ROUTER, "scenario=class", "optim.lr=1e-2", "trainer.max_epochs=1", f"output_dir={tmp_path / 'n'}"]))
    # same training (the losses use nearest-key scores either way), another task choice at test
    assert m["padded_class"] == n["padded_class"]
    assert m["task_inference"]["confusion_matrix"] != n["task_inference"]["confusion_matrix"]


def test_entropy_task_inference_by_hand(trained):
    """`task_inference=entropy` picks, at test, the task whose within-task prediction has the
    lowest entropy over its own classes (divided by log of their count); training keeps the
    nearest-key scores the losses are defined on."""
    module, stream, _, _ = trained
    x = torch.cat([task.split("test")[0][:30] for task in stream.tasks])
    module.eval()
    with torch.no_grad():
        neg_entropy = []
        for t, task in enumerate(stream.tasks):
            n = len(task.classes)
            p = module.route(x, torch.full((len(x),), t))["logits"][:, :n].double().softmax(1)
            neg_entropy.append(torch.special.xlogy(p, p).sum(1) / math.log(n))
        expected = torch.stack(neg_entropy, 1).argmax(1)
        nearest = module.route(x)["task"]
        module.hp.task_inference = "entropy"
        try:
            chosen = module.route(x)["task"]
            module.train()
            in_training = module.route(x)["task"]
        finally:
            module.hp.task_inference = "nearest"
            module.eval()
    assert torch.equal(chosen, expected)
    assert not torch.equal(chosen, nearest)  # another rule, other choices
    assert torch.equal(in_training, nearest)


def test_value_readout_by_hand(trained):
    """A sample's padded logits: each slot's value head on the gated features, weighted by the
    sample's attention over its task's slots and summed (padding: test_padded_classes_are_never_predicted)."""
    from continual.routers.parts.gating import forward_units

    module, stream = copy.deepcopy(trained[0]), trained[1]
    assert module.hp.gate == "units"
    with torch.no_grad():
        for memory in module.memories:  # biases a readout ignores would also train to nothing: set them
            memory.value_bias.normal_()
    x = torch.cat([task.split("test")[0][:4] for task in stream.tasks])
    task = torch.arange(len(x)) % len(stream)
    module.eval()
    with torch.no_grad():
        out = module.route(x, task, infer=False)
        for i in range(len(x)):
            memory, alpha = module.memories[int(task[i])], out["alpha"][i]
            feats = forward_units(module.net, x[i : i + 1], out["mask"][i : i + 1])[0]  # the sample's gated features
            expected = sum(alpha[s] * (memory.values[s] @ feats + memory.value_bias[s]) for s in range(len(alpha)))
            assert torch.allclose(out["unmasked"][i], expected, atol=1e-5)
            own = module.within_task.valid(int(task[i]))
            assert torch.allclose(out["logits"][i][own], expected[own], atol=1e-5)


def test_straight_through_is_exactly_the_hard_mask_forward_and_the_identity_backward():
    from continual.models.straight_through import straight_through

    soft = torch.rand(10000, requires_grad=True)
    hard = (soft > 0.5).float()
    out = straight_through(soft, hard)
    assert torch.equal(out, hard)  # (hard + soft) - soft would be off by a rounding for ~1 in 8 entries
    weights = torch.randn(10000)
    (out * weights).sum().backward()
    assert torch.equal(soft.grad, weights)


def test_finished_connection_masks_are_kept_as_bits_and_give_the_same_outputs():
    """Hard connection masks: a task is learned through float gate logits shared by all tasks;
    when it ends its masks become bits, and its outputs stay those it had, after later tasks too."""
    # five epochs: in one, no gate has closed yet
    cfg = load_config(None, [*ROUTER, "router.gate=connections", "router.memories=2", "trainer.max_epochs=5", *SPARSE])
    L.seed_everything(cfg.seed, verbose=False)
    stream = extract_features(cfg, build_stream(cfg.data, cfg.seed))
    module = build_method(cfg, stream)
    dm = TaskStreamDataModule(stream, cfg.data.batch_size, cfg.data.eval_batch_size, cfg.seed)
    x = torch.cat([t.x_test for t in stream.tasks])
    learned = []
    for t in range(len(stream)):
        dm.set_task(t)
        module.set_task(t)
        module.on_task_start(dm.task_data())
        assert all((g == cfg.router.gate_init).all() for g in module.gate_scores)  # each task's gates start afresh
        L.Trainer(**cfg.trainer, logger=False).fit(module, datamodule=dm)
        module.eval()
        with torch.no_grad():
            from_scores = module.route(x, torch.full((len(x),), t))["logits"]
            expected_bits = [torch.sigmoid(g) > 0.5 for g in module.gate_scores]
        module.on_task_end(dm.task_data())
        with torch.no_grad():
            from_bits = module.route(x, torch.full((len(x),), t))["logits"]
        assert bool(module.memories[t].finished)
        assert all(torch.equal(b, e) for b, e in zip(module.memories[t].mask_bits(), expected_bits))
        assert 0 < sum(b.sum() for b in expected_bits) < sum(b.numel() for b in expected_bits)  # some gates closed
        assert torch.equal(from_bits, from_scores)
        learned.append(from_scores)
    with torch.no_grad():
        for t, logits in enumerate(learned):
            assert torch.equal(module.route(x, torch.full((len(x),), t))["logits"], logits)
    assert all(b.dtype == torch.bool for m in module.memories for b in m.mask_bits()) and not len(module.memories[0].gates)
