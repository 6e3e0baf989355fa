"""Every baseline learns; the bounds are ordered; EWC, SI, replay and the buffer do what they claim."""

import json

import pytest
import torch
from omegaconf import OmegaConf

from continual.baselines.ewc import EWC
from continual.baselines.lwf import LwF
from continual.cli.main import main
from continual.config.schema import OptimConfig
from continual.data.loader import TensorLoader
from continual.helpers.buffer import ReservoirBuffer
from continual.helpers.fisher import fisher_diagonal
from continual.models.mlp import MLP


def fit(tmp_path, name, *overrides):
    out = tmp_path / name
    assert main(["fit", f"output_dir={out}", "logger.kind=none", "trainer.enable_progress_bar=false", *overrides]) == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.parametrize("method", ["joint", "ewc", "si", "lwf", "er", "hat", "packnet"])
def test_each_method_learns_split_digits_task_il(tmp_path, method):
    m = fit(tmp_path, method, f"method={method}")
    assert m["acc"] > 0.85  # chance is 0.5 on 2-class tasks
    if method in ("packnet", "hat", "joint"):
        assert m["bwt"] >= -0.01  # weights/gates of learned tasks are held fixed


def test_joint_beats_finetune_on_class_il(tmp_path):
    joint = fit(tmp_path, "joint", "method=joint", "scenario=class")
    ft = fit(tmp_path, "ft", "method=finetune", "scenario=class")
    assert joint["acc"] > 0.85 and ft["acc"] < 0.35
    assert all(row == joint["accuracy_matrix"][0] for row in joint["accuracy_matrix"])  # trained once


def test_er_with_a_buffer_remembers_class_il(tmp_path):
    er = fit(tmp_path, "er", "method=er", "scenario=class", "er.buffer_size=200")
    assert er["acc"] > 0.6


def _tiny_ewc(scenario="task", outputs="seen"):
    """Learning task 0 of two (classes 0-1, then 2)."""
    torch.manual_seed(0)
    net = MLP(3, [4, 5], 3)  # two hidden layers: deltas flow through an inner layer too
    hp = OmegaConf.structured(EWC.Config(lambda_=3.0))
    return EWC(net, hp=hp, task_classes=[[0, 1], [2]], n_classes=3, scenario=scenario, optim=OmegaConf.structured(OptimConfig),
               class_il_train_outputs=outputs)


def test_ewc_penalty_matches_hand_computation():
    m = _tiny_ewc()
    params = dict(m.net.named_parameters())
    fisher = {n: torch.rand_like(p) for n, p in params.items()}
    theta = {n: p.detach() + torch.randn_like(p) for n, p in params.items()}
    m.anchors = [(fisher, theta)]
    by_hand = 0.5 * sum(float((fisher[n] * (params[n].detach() - theta[n]) ** 2).sum()) for n in params)
    assert float(m.penalty().detach()) == pytest.approx(by_hand, rel=1e-5)
    m.hp.online, m.hp.gamma = True, 0.5
    assert float(m.penalty().detach()) == pytest.approx(0.5 * by_hand, rel=1e-5)


@pytest.mark.parametrize("label", ["empirical", "predicted"])
@pytest.mark.parametrize("scenario, outputs", [("task", "seen"), ("class", "all")])
def test_fisher_equals_mean_squared_per_sample_gradient(label, scenario, outputs):
    """Over the outputs of the training loss: task 0's (task-IL), or all three with class_il_train_outputs=all."""
    m = _tiny_ewc(scenario, outputs)
    x, y = torch.randn(10, 3), torch.randint(0, 2, (10,))
    got = fisher_diagonal(m, TensorLoader(x, y, 0, 4, train=False), label, None)
    expected = {n: torch.zeros_like(p) for n, p in m.net.named_parameters()}
    for i in range(10):  # the slow way, one sample at a time
        logits = m.net(x[i : i + 1])[:, : 2 if outputs == "seen" else 3]
        target = y[i : i + 1] if label == "empirical" else logits.argmax(1)
        m.net.zero_grad()
        torch.nn.functional.cross_entropy(logits, target).backward()
        for n, p in m.net.named_parameters():
            expected[n] += p.grad**2 / 10
    for n in expected:
        assert torch.allclose(got[n], expected[n], atol=1e-6)
    assert set(fisher_diagonal(m, TensorLoader(x, y, 0, 2, train=False), label, 3)) == set(expected)  # capped sample count runs


def test_reservoir_never_exceeds_size_and_samples_uniformly():
    size, n, trials = 20, 100, 400
    counts = torch.zeros(n)
    for seed in range(trials):
        buf = ReservoirBuffer(size, seed)
        for chunk in torch.arange(n).split(7):  # uneven batches
            buf.add(i=chunk)
            assert len(buf) <= size
        held = buf.data["i"]
        assert len(held.unique()) == size  # no sample held twice
        counts[held] += 1
    p = size / n  # each sample is held with probability size/n
    expected, sd = trials * p, (trials * p * (1 - p)) ** 0.5
    assert (counts - expected).abs().max() < 5 * sd
    assert abs(counts[:50].sum() - counts[50:].sum()) < 6 * sd * 50**0.5  # early and late samples alike


def test_replay_buffer_holds_only_past_tasks(tmp_path, monkeypatch):
    from continual.baselines.replay import ExperienceReplay

    seen = []
    original = ExperienceReplay.training_step

    def spy(self, batch, batch_idx):
        held = self.buffer.data.get("task")
        if held is not None and len(self.buffer):
            seen.append((self.current_task, held[: len(self.buffer)].unique().tolist(), len(self.buffer)))
        return original(self, batch, batch_idx)

    monkeypatch.setattr(ExperienceReplay, "training_step", spy)
    fit(tmp_path, "er", "method=er", "er.buffer_size=50", "trainer.max_epochs=1")
    assert seen and {t for t, _, _ in seen} == {1, 2, 3, 4}
    for task, held, n in seen:
        assert max(held) < task and n <= 50
    assert set(seen[-1][1]) == {0, 1, 2, 3}  # a uniform sample of all past tasks


@pytest.mark.parametrize("over_classes", ["sum", "mean"])
@pytest.mark.parametrize("scenario", ["task", "class"])
def test_lwf_loss_matches_hand_computation(scenario, over_classes):
    """Second of two 2-class tasks, T=2, alpha=1/2. Class-IL: the new softmax over all 4 outputs
    against the old softmax over outputs 0-1, zero for 2-3 (van de Ven & Tolias's padding)."""
    torch.manual_seed(0)
    hp = OmegaConf.structured(LwF.Config(temperature=2.0, alpha=0.5, kd_over_classes=over_classes))
    m = LwF(MLP(3, [4], 4), hp=hp, task_classes=[[0, 1], [2, 3]], n_classes=4, scenario=scenario, optim=OmegaConf.structured(OptimConfig))
    m.on_task_end(None)  # the old network: a copy of the current one ...
    with torch.no_grad():
        m.teacher.head.bias += torch.tensor([1.0, -1.0, 0.5, 0.0])  # ... made to differ
    m.set_task(1)
    x, y = torch.randn(5, 3), torch.tensor([2, 3, 2, 2, 3])
    batch = {"x": x, "y": y, "task": torch.ones(5, dtype=torch.long), "global_size": 5}
    new, old = m.net(x).detach(), m.teacher(x)
    if scenario == "task":  # own outputs of task 2 for the CE, own outputs of task 1 for distillation
        ce = torch.nn.functional.cross_entropy(new[:, 2:], y - 2)
        q, p = (new[:, :2] / 2).log_softmax(1), (old[:, :2] / 2).softmax(1)
    else:
        ce = torch.nn.functional.cross_entropy(new, y)
        q = (new / 2).log_softmax(1)
        p = torch.cat([(old[:, :2] / 2).softmax(1), torch.zeros(5, 2)], 1)
    kd = -(p * q).sum(1).mean() * 4 / (1 if over_classes == "sum" else p.shape[1])  # "mean": / outputs
    assert float(m.training_step(batch, 0).detach()) == pytest.approx(float(0.5 * ce + 0.5 * kd), rel=1e-5)


def test_packnet_owners_move_with_the_module():
    """Lightning moves the module to the CPU after every fit and test and back before the next:
    the weight owners must follow (they were once a plain list left on the GPU)."""
    from continual.baselines.packnet import PackNet

    hp = OmegaConf.structured(PackNet.Config)
    m = PackNet(MLP(3, [4, 5], 2), hp=hp, task_classes=[[0, 1]], n_classes=2, scenario="task", optim=OmegaConf.structured(OptimConfig))
    m.to("meta")
    assert len(m.owner) == 2 and all(o.device.type == "meta" for o in m.owner)
    assert all(f"owner{i}" in m.state_dict() for i in range(2))  # saved with the weights


# the methods whose training loss is a cross-entropy over the class-IL outputs; at the first step
# of task 0 (empty buffers, no anchors, no teacher) it is that cross-entropy alone
CE_METHODS = ["finetune", "joint", "er", "agem", "ewc", "si", "l2", "lwf", "der", "derpp", "gdumb"]


@pytest.mark.parametrize("outputs", ["seen", "all"])
def test_class_il_train_outputs_sets_the_outputs_of_every_methods_training_cross_entropy(outputs):
    """Split digits, class-IL (10 outputs), a batch of task 0: `seen` is the cross-entropy over
    task 0's two outputs (joint: every class of the stream, learned at once), `all` over all 10;
    the prediction is among the classes seen either way."""
    from continual import extract_features, load_config
    from continual.build import build_method
    from continual.data.streams import build_stream

    cfg = load_config(None, ["scenario=class", "logger.kind=none"])
    stream = extract_features(cfg, build_stream(cfg.data, cfg.seed))  # the flat inputs the methods see
    task = stream.tasks[0]
    x, y = task.x_train[:16], task.y_train[:16]
    batch = {"x": x, "y": y, "task": torch.zeros(16, dtype=torch.long), "global_size": 16}
    for name in CE_METHODS:
        module = build_method(load_config(None, ["scenario=class", f"class_il_train_outputs={outputs}", f"method={name}",
                                                 "logger.kind=none"]), stream)
        with torch.no_grad():
            logits = module.net(x)
            # the plain log-softmax over the outputs each rule keeps, by hand
            keep = list(range(10)) if outputs == "all" or name == "joint" else task.classes
            target = torch.tensor([keep.index(int(c)) for c in y])
            over = logits[:, keep]
            expected = -(over.gather(1, target[:, None]).squeeze(1) - over.exp().sum(1).log()).mean()
            assert float(module.training_step(batch, 0)) == pytest.approx(float(expected), rel=1e-5), name
            predicted = set(module.predict(batch).tolist())
            assert predicted <= set(range(10) if name == "joint" else task.classes), name  # among the classes seen
