"""The replay methods against hand computations: DER++'s loss terms with the same buffer draws,
the logits DER stores (those of insertion time), A-GEM's projection and a whole A-GEM step, and
a buffer sized by a `buffer_floats` budget, counted by hand in `stored_floats`."""

import json

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from continual.baselines.agem import AGEM, project
from continual.baselines.der import DER
from continual.baselines.derpp import DERPlusPlus
from continual.baselines.replay import ExperienceReplay
from continual.cli.main import main
from continual.config.schema import OptimConfig
from continual.data.loader import TensorLoader
from continual.data.task_data import TaskData
from continual.errors import ConfigError
from continual.helpers.buffer import buffer_capacity
from continual.metrics.memory import stored_floats
from continual.models.mlp import MLP
from helpers import QUICK

TASKS = [[0, 1], [2, 3]]  # two tasks of two classes; outputs 0-3
SGD = OmegaConf.merge(OmegaConf.structured(OptimConfig), {"name": "sgd", "lr": 0.5})  # every optim key, at its default


def build(cls, scenario="class", seed=0, **hp):
    torch.manual_seed(seed)
    config = OmegaConf.merge(OmegaConf.structured(cls.Config), hp)
    return cls(MLP(3, [5], 4), hp=config, batch_size=6, seed=seed, task_classes=TASKS, n_classes=4,
               scenario=scenario, optim=SGD)


def batch_of(task: int, n: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"x": torch.randn(n, 3, generator=g), "y": torch.tensor(TASKS[task])[torch.randint(2, (n,), generator=g)],
            "task": torch.full((n,), task)}


def cross_entropy(logits, y, outputs):
    """Plain cross-entropy of each row over `outputs[i]` (the outputs its sample may be assigned)."""
    out = []
    for row, label, allowed in zip(logits, y, outputs):
        allowed = torch.tensor(allowed)
        out.append(-(row[label] - row[allowed].exp().sum().log()))
    return torch.stack(out)


@pytest.mark.parametrize("scenario", ["class", "task"])
def test_derpp_loss_terms_equal_a_hand_computation_with_the_same_draws(scenario):
    m = build(DERPlusPlus, scenario, alpha=0.3, beta=0.7, buffer_size=8, batch_size=4)
    m.training_step(batch_of(0, 6, seed=1), 0)  # task 0 fills 6 of the 8 slots
    with torch.no_grad():  # the network moves on after storing its logits (as training would)
        for p in m.net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    m.set_task(1)
    stored = {k: v[:6].clone() for k, v in m.buffer.data.items()}
    gen = torch.Generator()
    gen.set_state(m.buffer.gen.get_state())
    batch = batch_of(1, 5, seed=2)
    loss = m.training_step(batch, 0)

    first, second = torch.randperm(6, generator=gen)[:4], torch.randperm(6, generator=gen)[:4]
    net = m.net
    with torch.no_grad():
        # current batch: class-IL may assign every class of tasks 0-1, task-IL its own task's
        own = [TASKS[int(t)] for t in batch["task"]]
        ce = cross_entropy(net(batch["x"]), batch["y"], own if scenario == "task" else [[0, 1, 2, 3]] * 5).mean()
        # logit term: class-IL matches all 4 stored logits; task-IL the stored task's 2
        out, target = net(stored["x"][first]), stored["logits"][first]
        if scenario == "task":
            mse = ((out - target)[:, :2] ** 2).mean()  # every stored sample is task 0's: outputs 0-1
        else:
            mse = ((out - target) ** 2).mean()
        labels = stored["y"][second]
        past = [TASKS[0]] * 4 if scenario == "task" else [[0, 1, 2, 3]] * 4
        ce_past = cross_entropy(net(stored["x"][second]), labels, past).mean()
    assert torch.allclose(loss, ce + 0.3 * mse + 0.7 * ce_past, atol=1e-6)
    assert mse > 0.01 and ce_past > 0.01  # both terms count in the sum checked


def test_der_stores_each_batch_with_its_logits_at_insertion_time():
    m = build(DER, buffer_size=20, batch_size=4)
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    before = nn.utils.parameters_to_vector(m.net.parameters()).clone()
    seen = []
    for step in range(3):
        batch = batch_of(0, 5, seed=step)
        with torch.no_grad():
            seen.append((batch, m.net(batch["x"]).clone()))  # the logits before this step's update
        opt.zero_grad()
        m.training_step(batch, step).backward()
        opt.step()
    assert not torch.equal(before, nn.utils.parameters_to_vector(m.net.parameters()))  # it learned
    held = m.buffer.data
    assert len(m.buffer) == 15  # filling: sample i took slot i
    assert torch.equal(held["x"][:15], torch.cat([b["x"] for b, _ in seen]))
    assert torch.equal(held["task"][:15], torch.zeros(15, dtype=torch.long))
    assert torch.equal(held["logits"][:15], torch.cat([logits for _, logits in seen]))
    with torch.no_grad():  # not the logits the trained network gives them now
        assert not torch.allclose(held["logits"][:5], m.net(held["x"][:5]))
    assert "y" not in held  # DER keeps no labels; DER++ does
    pp, batch = build(DERPlusPlus), batch_of(0, 5, seed=0)
    pp.training_step(batch, 0)
    assert torch.equal(pp.buffer.data["y"][:5], batch["y"])


def test_agem_projection_on_hand_made_gradients():
    g, g_ref = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    # g . g_ref = -1 < 0: g - (-1 / 2) g_ref = (0.5, 0.5), orthogonal to g_ref
    assert torch.equal(project(g, g_ref), torch.tensor([0.5, 0.5]))
    assert torch.equal(project(torch.tensor([1.0, 1.0]), torch.tensor([1.0, 0.0])), torch.tensor([1.0, 1.0]))  # dot 1 >= 0: kept
    assert torch.equal(project(g, torch.zeros(2)), g)  # no reference gradient: kept


def test_agem_projection_does_not_depend_on_where_the_gradients_lie_in_memory():
    """A resumed run must equal the uninterrupted one bit for bit, and the flat gradients are new
    tensors each step: CPU BLAS's dot (MKL) rounds by the vectors' alignment, a plain sum does not."""
    g, g_ref = torch.randn(2, 90_000, generator=torch.Generator().manual_seed(0))
    g_ref = g_ref - 2 * (g @ g_ref).clamp(min=0) / (g @ g) * g  # pointing against g: this case projects

    def at(offset: int, t: torch.Tensor) -> torch.Tensor:  # t's values, `offset` floats into a new block
        return torch.empty(len(t) + 16)[offset:offset + len(t)].copy_(t)

    results = {project(at(i, g), at(j, g_ref)).numpy().tobytes() for i in range(8) for j in (0, 3, 5)}
    assert len(results) == 1


def test_an_agem_step_equals_a_hand_run_step():
    m = build(AGEM, ref_batch_size=5, buffer_size=10, seed=3)
    past = batch_of(0, 10, seed=4)
    m.buffer.add(**past)
    m.set_task(1)
    current = batch_of(1, 6, seed=5)
    x, y = current["x"], current["y"]
    # by hand: the same memory draw, the two gradients of plain cross-entropies, the projection
    gen = torch.Generator()
    gen.set_state(m.buffer.gen.get_state())
    idx = torch.randperm(10, generator=gen)[:5]
    net = MLP(3, [5], 4)
    net.load_state_dict(m.net.state_dict())
    params = list(net.parameters())
    everything = [[0, 1, 2, 3]]  # class-IL while task 1 is learned: every output
    g_ref = torch.autograd.grad(cross_entropy(net(past["x"][idx]), past["y"][idx], everything * 5).mean(), params)
    g = torch.autograd.grad(cross_entropy(net(x), y, everything * 6).mean(), params)
    g, g_ref = torch.cat([t.flatten() for t in g]), torch.cat([t.flatten() for t in g_ref])
    dot = g @ g_ref
    assert dot < 0  # this case projects
    expected = nn.utils.parameters_to_vector(params).detach() - 0.5 * (g - dot / (g_ref @ g_ref) * g_ref)

    # the step through Lightning: g_ref in training_step, the projection before the optimizer's step
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(m, train_dataloaders=TensorLoader(x, y, 1, batch_size=6, train=True))
    assert torch.allclose(nn.utils.parameters_to_vector(m.net.parameters()), expected, atol=1e-6)


def test_agem_per_task_memory_keeps_buffer_size_over_n_tasks_distinct_samples_of_each_finished_task():
    m = build(AGEM, buffer_size=7, memory="per_task", seed=2)  # 2 tasks: 3 slots each, 1 never used
    tasks = [batch_of(t, 10, seed=10 + t) for t in range(2)]
    gen = torch.Generator().manual_seed(2)  # the buffer's own generator, as seeded
    for t, b in enumerate(tasks):
        m.on_task_end(TaskData(t, b["x"], b["y"], b["task"]))
        pick = torch.randperm(10, generator=gen)[:3]  # by hand: 7 // 2 distinct samples of this task
        torch.rand(3, generator=gen)  # the reservoir's own draw, which decides nothing while it fills
        assert len(m.buffer) == 3 * (t + 1)
        assert torch.equal(m.buffer.data["x"][3 * t: 3 * t + 3], b["x"][pick])
        assert torch.equal(m.buffer.data["task"][: 3 * (t + 1)], torch.tensor([0, 0, 0, 1, 1, 1][: 3 * (t + 1)]))
    reservoir = build(AGEM, buffer_size=7, seed=2)
    reservoir.on_task_end(TaskData(0, tasks[0]["x"], tasks[0]["y"], tasks[0]["task"]))
    assert len(reservoir.buffer) == 7  # the default fills the whole buffer with the first task
    with pytest.raises(ConfigError, match=r"^agem.memory=per_task gives each of the 2 tasks 1 // 2 = 0 samples; set agem.buffer_size to at least 2"):
        build(AGEM, buffer_size=1, memory="per_task")
    with pytest.raises(ConfigError, match=r"^agem.memory=per_task gives each of the 2 tasks 1 // 2 = 0 samples; raise agem.buffer_floats, or"):
        build(AGEM, buffer_floats=44 + 5, memory="per_task")  # the network's 44 floats + one sample's x (3), label and task id


TINY_NET = 3 * 5 + 5 + 5 * 4 + 4  # MLP(3, [5], 4): what a replay method holds besides its samples


def test_buffer_capacity_from_samples_or_a_budget():
    m = build(DER, buffer_size=7)
    hp = OmegaConf.create({"buffer_size": 7, "buffer_floats": None})
    assert buffer_capacity(m, hp, 8) == 7  # no budget: buffer_size
    hp.buffer_floats = TINY_NET + 3 * 8 + 7.0
    assert buffer_capacity(m, hp, 8) == 3  # the budget after the method's network, in whole samples
    hp.buffer_floats = TINY_NET + 7.0
    with pytest.raises(ConfigError, match="^der.buffer_floats=51 holds no sample: one costs 8 floats besides the 44 its "
                                          r"method holds without samples \(network, teacher, means\); set der.buffer_floats to at least 52$"):
        buffer_capacity(m, hp, 8)


@pytest.mark.parametrize("cls, per_sample", [
    (ExperienceReplay, 3 + 1 + 1),  # x, label, task id
    (AGEM, 3 + 1 + 1),
    (DER, 3 + 4 + 1),  # x, 4 logits, task id
    (DERPlusPlus, 3 + 4 + 1 + 1),  # + label
])
def test_each_method_sizes_its_buffer_by_what_one_sample_stores(cls, per_sample):
    budget = TINY_NET + 10 * per_sample + per_sample - 1
    m = build(cls, buffer_floats=budget)
    assert m.buffer.size == 10
    assert build(cls, buffer_size=13).buffer.size == 13
    batch = batch_of(0, 12, seed=0)
    if cls in (DER, DERPlusPlus):  # stored as trained on
        m.training_step({**batch, "global_size": 12}, 0)
    else:  # stored at the task's end
        m.on_task_end(TaskData(0, batch["x"], batch["y"], batch["task"]))
    # full: the whole method, generator state not counted, is the budget less under one sample
    assert stored_floats(m) == TINY_NET + 10 * per_sample and budget - per_sample < stored_floats(m) <= budget


NET = 64 * 64 + 64 + 64 * 64 + 64 + 64 * 10 + 10  # QUICK's Split-Digits MLP: 64 inputs, hidden [64, 64], 10 outputs


@pytest.mark.parametrize("method, per_sample", [("er", 64 + 1 + 1), ("der", 64 + 10 + 1)])
def test_a_runs_stored_floats_are_the_budget_within_one_sample(tmp_path, method, per_sample):
    budget = 20_000
    out = tmp_path / "run"
    assert main(["fit", f"output_dir={out}", *QUICK, "data.n_tasks=2", "scenario=class", f"method={method}",
                 f"{method}.buffer_floats={budget}"]) == 0
    stored = json.loads((out / "metrics.json").read_text())["stored_floats"]
    samples = (budget - NET) // per_sample  # 109 for er, 96 for der
    assert stored == NET + samples * per_sample
    assert budget - per_sample < stored <= budget


def test_a_budget_that_holds_no_sample_is_one_line_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["fit", f"output_dir={out}", *QUICK, "method=derpp", f"derpp.buffer_floats={NET + 75}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    # a sample: 64 inputs + 10 logits + task id + label = 76 floats, after the network's
    assert err == [f"continual: error: derpp.buffer_floats={NET + 75} holds no sample: one costs 76 floats besides the {NET} "
                   f"its method holds without samples (network, teacher, means); set derpp.buffer_floats to at least {NET + 76}"]
    assert not out.exists()


def test_a_budget_needs_the_backbones_input_size():
    torch.manual_seed(0)
    common = dict(batch_size=6, task_classes=TASKS, n_classes=4, scenario="class", optim=SGD)
    net = nn.Sequential(nn.Linear(3, 4))  # a backbone without `n_in`
    hp = OmegaConf.structured(ExperienceReplay.Config)
    assert ExperienceReplay(net, hp=hp, **common).buffer.size == 1000  # sized by samples: fine
    hp.buffer_floats = 1e5
    with pytest.raises(ConfigError, match="^er.buffer_floats needs the backbone's input size .* set er.buffer_size instead$"):
        ExperienceReplay(net, hp=hp, **common)


@pytest.mark.parametrize("method", ["er", "der", "derpp", "agem"])
def test_an_infinite_float_budget_is_refused_in_one_line(method):
    """buffer_floats=inf has no size: it was an OverflowError traceback when the buffer was sized."""
    from continual.config import load_config

    with pytest.raises(ConfigError, match=f"^{method}.buffer_floats=inf must be a positive finite number"):
        load_config(None, [f"method={method}", f"{method}.buffer_floats=inf"])
