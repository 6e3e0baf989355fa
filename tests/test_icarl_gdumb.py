"""iCaRL and GDumb against hand computations on tiny tensors: iCaRL's herding order, its exemplar
sets, nearest-mean-of-exemplars rule and distillation loss; GDumb's greedy balanced memory and
its retraining from the seed's weights; both methods' stored floats and memory budgets."""

import math

import pytest
import torch
from omegaconf import OmegaConf

from continual.baselines.gdumb import BalancedBuffer, GDumb
from continual.baselines.icarl import ICaRL, herding_order
from continual.config import load_config
from continual.config.schema import OptimConfig
from continual.data.task_data import TaskData
from continual.errors import ConfigError
from continual.metrics.memory import stored_floats
from continual.models.mlp import MLP

OPTIM = OmegaConf.structured(OptimConfig)


def hand_herding(points: list[tuple[float, float]], m: int) -> list[int]:
    """Algorithm 4 in plain Python: the k-th pick minimises |mu - (chosen sum + p) / k|."""
    mu = [sum(p[d] for p in points) / len(points) for d in range(2)]
    chosen, total = [], [0.0, 0.0]
    for k in range(1, m + 1):
        cost = {i: math.dist(mu, [(total[d] + p[d]) / k for d in range(2)]) for i, p in enumerate(points) if i not in chosen}
        best = min(cost, key=cost.get)
        chosen.append(best)
        total = [total[d] + points[best][d] for d in range(2)]
    return chosen


def test_herding_order_is_algorithm_4_run_by_hand():
    # unit vectors at 0, 20, 100, 160 and 250 degrees; their mean is (0.0969, 0.1458). Step 1:
    # distances 0.915 0.865 0.882 1.055 1.171 -> 20 deg (1); step 2, averages with it: 0.873 (0),
    # 0.591 (2), 0.219 (3), 0.488 (4) -> 160 deg (3); step 3: 0.250 (0), 0.439 (2), 0.313 (4) -> 0;
    # step 4: 0.293 (2), 0.220 (4) -> 4; then 2
    points = [(math.cos(math.radians(a)), math.sin(math.radians(a))) for a in (0, 20, 100, 160, 250)]
    assert hand_herding(points, 5) == [1, 3, 0, 4, 2]
    order = herding_order(torch.tensor(points), 5).tolist()
    assert order == [1, 3, 0, 4, 2]
    assert herding_order(torch.tensor(points), 3).tolist() == [1, 3, 0]  # its first m for m = 3
    # neither the samples nearest the mean first ([1, 2, 0, 3, 4]) nor a random order
    mu = torch.tensor(points).mean(0)
    assert order != (torch.tensor(points) - mu).norm(dim=1).argsort().tolist()
    assert order != torch.randperm(5, generator=torch.Generator().manual_seed(0)).tolist()


def tiny_icarl(scenario="class", **hp) -> ICaRL:
    torch.manual_seed(0)
    config = OmegaConf.structured(ICaRL.Config(**{"buffer_size": 4, **hp}))
    return ICaRL(MLP(3, [5], 4), hp=config, batch_size=5, seed=0, task_classes=[[0, 1], [2, 3]], n_classes=4,
                 scenario=scenario, optim=OPTIM)


def task_data(t: int, x: torch.Tensor, y: torch.Tensor) -> TaskData:
    return TaskData(t, x, y, torch.full_like(y, t))


def unit_features(m: ICaRL, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        z = m.net.features(x)
    return z / z.norm(dim=1, keepdim=True)


def test_exemplar_sets_are_each_classs_herding_order_cut_to_k_over_classes_seen():
    m = tiny_icarl()
    gen = torch.Generator().manual_seed(1)
    x0, y0 = torch.randn(12, 3, generator=gen), torch.tensor([0, 1] * 6)
    m.on_task_end(task_data(0, x0, y0))  # K = 4 over 2 classes: 2 each
    first = {c: [tuple(p) for p in unit_features(m, x0[y0 == c]).tolist()] for c in (0, 1)}
    expected0 = {c: x0[y0 == c][hand_herding_nd(first[c], 2)] for c in (0, 1)}
    assert torch.equal(m.exemplars["y"], torch.tensor([0, 0, 1, 1]))
    assert torch.equal(m.exemplars["x"], torch.cat([expected0[0], expected0[1]]))
    with torch.no_grad():  # the next task's network differs
        m.net.hidden[0].weight.mul_(-1)
    m.set_task(1)
    x1, y1 = torch.randn(8, 3, generator=gen), torch.tensor([2, 3] * 4)
    m.on_task_end(task_data(1, x1, y1))  # 4 classes: 1 each; old classes keep their first
    second = {c: [tuple(p) for p in unit_features(m, x1[y1 == c]).tolist()] for c in (2, 3)}
    assert torch.equal(m.exemplars["y"], torch.tensor([0, 1, 2, 3]))
    assert torch.equal(m.exemplars["x"], torch.stack([
        expected0[0][0], expected0[1][0], x1[y1 == 2][hand_herding_nd(second[2], 1)[0]], x1[y1 == 3][hand_herding_nd(second[3], 1)[0]]]))


def hand_herding_nd(points: list[tuple[float, ...]], m: int) -> list[int]:
    """`hand_herding` in any dimension."""
    dim = len(points[0])
    mu = [sum(p[d] for p in points) / len(points) for d in range(dim)]
    chosen, total = [], [0.0] * dim
    for k in range(1, m + 1):
        cost = {i: math.dist(mu, [(total[d] + p[d]) / k for d in range(dim)]) for i, p in enumerate(points) if i not in chosen}
        best = min(cost, key=cost.get)
        chosen.append(best)
        total = [total[d] + points[best][d] for d in range(dim)]
    return chosen


@pytest.mark.parametrize("scenario", ["class", "task"])
def test_predictions_are_the_nearest_mean_of_exemplars(scenario):
    m = tiny_icarl(scenario, buffer_size=8)
    gen = torch.Generator().manual_seed(2)
    x0, y0 = torch.randn(10, 3, generator=gen), torch.tensor([0, 1] * 5)
    m.on_task_end(task_data(0, x0, y0))
    m.set_task(1)
    x1, y1 = torch.randn(10, 3, generator=gen), torch.tensor([2, 3] * 5)
    m.on_task_end(task_data(1, x1, y1))
    # the class means by hand: the normalised mean of each class's normalised exemplar features
    z = unit_features(m, m.exemplars["x"])
    means = {}
    for c in range(4):
        s = z[m.exemplars["y"] == c].mean(0)
        means[c] = s / s.norm()
    x = torch.randn(30, 3, generator=gen)
    task = torch.randint(2, (30,), generator=gen)
    q = unit_features(m, x)
    allowed = {0: (0, 1), 1: (2, 3)}
    by_hand = [min(allowed[int(t)] if scenario == "task" else range(4), key=lambda c: float(((qi - means[c]) ** 2).sum()))
               for qi, t in zip(q, task)]
    batch = {"x": x, "y": torch.zeros(30, dtype=torch.long), "task": task}
    assert m.predict(batch).tolist() == by_hand
    assert len(set(by_hand)) > 2  # the rule is exercised, not one class everywhere


def test_loss_is_bce_with_the_old_networks_sigmoid_targets_on_old_classes_over_the_union():
    m = tiny_icarl(batch_size=2)
    gen = torch.Generator().manual_seed(3)
    m.on_task_end(task_data(0, torch.randn(8, 3, generator=gen), torch.tensor([0, 1] * 4)))
    with torch.no_grad():  # the network moves on from the old one
        m.net.head.bias += torch.tensor([0.5, -1.0, 0.3, 0.2])
    m.set_task(1)
    m.on_task_start(task_data(1, torch.randn(8, 3), torch.tensor([2, 3] * 4)))
    x, y = torch.randn(5, 3, generator=gen), torch.tensor([2, 3, 3, 2, 2])
    batch = {"x": x, "y": y, "task": torch.ones(5, dtype=torch.long), "global_size": 5}
    draw = torch.Generator()
    draw.set_state(m.gen.get_state())
    idx = torch.randint(4, (2,), generator=draw)
    xr, yr = m.exemplars["x"][idx], m.exemplars["y"][idx]

    def bce(inputs, labels):  # per sample: sum over the 4 classes seen of -[t log s + (1-t) log(1-s)]
        s = torch.sigmoid(m.net(inputs).detach())
        old = torch.sigmoid(m.teacher(inputs))
        t = torch.zeros(len(labels), 4)
        t[:, :2] = old[:, :2]  # task 1's classes: the old network's outputs
        t[:, 2:] = torch.nn.functional.one_hot(labels, 4)[:, 2:].float()  # task 2's: the labels (all 0 for exemplars)
        return -(t * s.log() + (1 - t) * (1 - s).log()).sum(1)

    by_hand = (bce(x, y).sum() + bce(xr, yr).sum()) / 7
    assert float(m.training_step(batch, 0).detach()) == pytest.approx(float(by_hand), rel=1e-5)


def test_exemplars_per_step_average_their_share_of_the_union():
    """On average a step replays batch x exemplars / task samples, as in the union the paper
    trains on (200 exemplars beside 12,000 samples at batch 10: 1/6 a step; rounding that to one
    a step would replay 6x as many)."""
    m = tiny_icarl(buffer_size=8)
    m.on_task_end(task_data(0, torch.randn(8, 3), torch.tensor([0, 1] * 4)))
    m.set_task(1)
    m.on_task_start(task_data(1, torch.randn(24, 3), torch.tensor([2, 3] * 12)))  # batch 5 (tiny_icarl's), 8 exemplars
    share = 5 * 8 / 24
    assert m.replay_share == share
    draw = torch.Generator()
    draw.set_state(m.gen.get_state())
    counts = [m.replay_count() for _ in range(3000)]
    assert counts == [1 + int(torch.rand((), generator=draw) < share - 1) for _ in range(3000)]  # the generator's draws
    assert set(counts) == {1, 2} and sum(counts) / 3000 == pytest.approx(share, abs=0.03)
    m.on_task_start(task_data(1, torch.randn(40, 3), torch.tensor([2, 3] * 20)))
    state = m.gen.get_state()
    assert m.replay_share == 1.0 and m.replay_count() == 1 and torch.equal(m.gen.get_state(), state)  # a whole share: no draw


def test_first_task_loss_is_bce_on_the_labels_of_its_classes():
    m = tiny_icarl()
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 1, 0])
    batch = {"x": x, "y": y, "task": torch.zeros(4, dtype=torch.long), "global_size": 4}
    s = torch.sigmoid(m.net(x).detach()[:, :2])
    t = torch.nn.functional.one_hot(y, 2).float()
    by_hand = -(t * s.log() + (1 - t) * (1 - s).log()).sum(1).mean()
    assert float(m.training_step(batch, 0).detach()) == pytest.approx(float(by_hand), rel=1e-5)


def test_icarl_stores_its_exemplars_means_and_old_network():
    net = 3 * 5 + 5 + 5 * 4 + 4  # 44
    means = 4 * 5 + 4 / 32  # a 5-wide mean per output, and which outputs have one (bits)
    fixed = net + net + 1 / 32 + means  # the network, the old network and its flag (a bit), the means
    m = tiny_icarl(buffer_size=100, buffer_floats=fixed + 19)  # 4 floats per exemplar: the budget holds 4
    m.on_task_end(task_data(0, torch.randn(12, 3), torch.tensor([0, 1] * 6)))
    exemplars = 4 * 3 + 4  # inputs and labels; the generator's state is not counted
    assert stored_floats(m) == fixed + exemplars
    with pytest.raises(ConfigError, match=f"buffer_floats={fixed + 3:g} holds no sample"):
        tiny_icarl(buffer_size=100, buffer_floats=fixed + 3)


def test_balanced_buffer_after_a_hand_made_sequence():
    """K = 4. Labels 0 0 0 0 0 1 1 1 2 0 2 2 (sample i has x = i): 0-3 fill the memory; 4 is
    refused (class 0 holds 4 = 4/1); 5 and 6 (class 1, under 4/2) replace random class-0 samples;
    7 is refused (2 = 4/2); 8 (class 2) replaces one of the tied largest classes 0 and 1, the
    smaller id, 0; 9 (class 0, 1 < 4/3) replaces one of class 1, now the largest; 10 (class 2) one
    of class 0; 11 is refused. A draw picks among the class's slots in slot order."""
    g = torch.Generator().manual_seed(5)
    assert [int(torch.randint(n, (1,), generator=g)) for n in (4, 3, 2, 2, 2)] == [3, 0, 1, 1, 0]
    # 5: class 0's slots [0 1 2 3], draw 3 -> slot 3;  6: [0 1 2], draw 0 -> slot 0
    # 8: class 0's [1 2], draw 1 -> slot 2;  9: class 1's [0 3], draw 1 -> slot 3
    # 10: class 0's [1 3], draw 0 -> slot 1
    rows = [6, 10, 8, 9]
    labels = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 2, 0, 2, 2])
    x = torch.arange(12.0)[:, None]
    for cut in (12, 7):  # all at once, or in two tasks' offers
        buffer = BalancedBuffer(4, seed=5)
        buffer.add(x[:cut], labels[:cut], torch.zeros(cut, dtype=torch.long))
        buffer.add(x[cut:], labels[cut:], torch.ones(12 - cut, dtype=torch.long))
        assert buffer.data["x"][:, 0].long().tolist() == rows
        assert buffer.data["y"].tolist() == [1, 2, 2, 0]
        assert buffer.data["task"].tolist() == [0, int(cut < 11), int(cut < 9), int(cut < 10)]
        assert buffer.classes == [0, 1, 2]
    other = BalancedBuffer(4, seed=6)  # another seed removes other samples
    other.add(x, labels, torch.zeros(12, dtype=torch.long))
    assert other.data["x"][:, 0].long().tolist() != rows


def tiny_gdumb(**hp) -> GDumb:
    torch.manual_seed(7)  # the run's seed, as build_backbone sets it
    config = OmegaConf.structured(GDumb.Config(**{"buffer_size": 6, "epochs": 4, "batch_size": 2, "lr": 0.1, **hp}))
    return GDumb(MLP(3, [5], 4), hp=config, seed=7, task_classes=[[0, 1], [2, 3]], n_classes=4, scenario="class", optim=OPTIM)


def test_gdumb_retrains_from_the_seeds_weights_on_the_memory_alone():
    m = tiny_gdumb()
    gen = torch.Generator().manual_seed(8)
    x, y = torch.randn(6, 3, generator=gen), torch.tensor([0, 1, 1, 0, 0, 1])  # fits: no draw while sampling
    with torch.no_grad():  # weights some earlier training left: retraining must not start here
        for p in m.net.parameters():
            p.add_(1.0)
    m.on_task_end(task_data(0, x, y))
    # by hand: the seed's MLP, SGD with momentum 0.9 and weight decay 1e-6, epoch 0 at lr/10,
    # epoch 1 at lr, epoch 2 at lr again (the period-1 cosine ends in a restart), epoch 3 halfway
    # down the period-2 cosine from 0.1 to 5e-4; cross-entropy over the classes seen (0, 1),
    # gradient norm clipped at 10
    torch.manual_seed(7)
    net = MLP(3, [5], 4)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-6)
    shuffle = torch.Generator().manual_seed(7)
    for lr in (0.01, 0.1, 0.1, 5e-4 + (0.1 - 5e-4) * (1 + math.cos(math.pi * 1 / 2)) / 2):
        for group in opt.param_groups:
            group["lr"] = lr
        for idx in torch.randperm(6, generator=shuffle).split(2):
            loss = torch.nn.functional.cross_entropy(net(x[idx])[:, :2], y[idx])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
            opt.step()
    for (name, p), q in zip(m.net.named_parameters(), net.parameters()):
        assert torch.allclose(p, q, atol=1e-6), name
        assert not p.requires_grad  # the task loop trains nothing by gradient: fit is skipped


def test_gdumb_stores_its_memory():
    net = 3 * 5 + 5 + 5 * 4 + 4
    m = tiny_gdumb(buffer_size=100, buffer_floats=net + 26)  # 5 floats per sample (input, label, task): 5 after the network
    m.on_task_end(task_data(0, torch.randn(8, 3), torch.tensor([0, 1] * 4)))
    assert len(m.buffer) == 5
    assert stored_floats(m) == net + 5 * (3 + 1 + 1)


def test_gdumb_refuses_a_floor_above_its_peak_learning_rate():
    with pytest.raises(ConfigError, match=r"gdumb.min_lr=0.1 is above gdumb.lr=0.05"):
        load_config(None, ["method=gdumb", "scenario=class", "gdumb.min_lr=0.1"])
