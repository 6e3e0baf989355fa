"""The base-task protocol (`data.base_classes=K`): the cut, the base training against a hand-run
loop, its cache, its errors, `acc_incremental`, and a whole run."""

import json

import pytest
import torch
from lightning.pytorch import Callback
from torch import nn

from continual import load_config, load_run, run
from continual.build import build_method
from continual.cli.main import main
from continual.data import sources
from continual.data.streams import build_stream
from continual.data.streams.cutting import permuted_stream
from continual.models import base_task
from helpers import QUICK, QUIET, comparable, read_only_folder
from test_unequal import cut, hand_cut


def permuted_digits(cfg, seed):
    """A stream that is not a class split (data.stream=test_base_task:permuted_digits)."""
    return permuted_stream("permuted_digits", sources.load_digits(cfg.test_fraction, seed), cfg, seed)


def config(tmp_path, *overrides):
    return load_config(None, ["logger.kind=none", f"data.root={tmp_path}", "data.base_classes=4", "backbone.hidden=[16]",
                              "backbone.pretrain.epochs=3", "backbone.pretrain.batch_size=32", *overrides])


def test_the_base_task_holds_the_first_k_classes_of_the_order():
    _, y_tr, _, y_te = sources.load_digits(0.2, 0)
    cfg = load_config(None, ["data.base_classes=4"]).data
    assert cut(build_stream(cfg, 0)) == hand_cut(y_tr, y_te, [4, 2, 2, 2])
    cfg = load_config(None, ["data.base_classes=5", "data.classes_per_task=[3,2]", "data.shuffle_classes=true"]).data
    s = build_stream(cfg, 1)
    order = s.meta["class_order"]
    assert sorted(order) == list(range(10)) and order != list(range(10))
    assert cut(s) == hand_cut(y_tr, y_te, [5, 3, 2], order) and s.meta["base_classes"] == 5
    cfg = load_config(None, ["data.base_classes=6", "data.n_tasks=2"]).data  # n_tasks counts the base task
    assert [t.classes for t in build_stream(cfg, 0).tasks] == [[0, 1, 2, 3, 4, 5], [6, 7]]


def test_base_training_equals_a_hand_run_loop(tmp_path):
    """Adam on task 0's train split, shuffled batches from a generator seeded with the run's seed,
    then the epoch of the best val accuracy kept: written out here in plain PyTorch."""
    cfg = config(tmp_path)
    stream = build_stream(cfg.data, cfg.seed)
    task = stream.tasks[0]
    _, net, acc = base_task.train_base(cfg, stream)

    torch.manual_seed(0)
    hidden, head = nn.Linear(64, 16), nn.Linear(16, 4)  # the MLP's layers, in its order of creation

    def forward(x):
        return head(torch.relu(hidden(x.flatten(1))))  # digits as images [N, 1, 8, 8]: the mlp backbone flattens

    params = [*hidden.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    epochs = []
    for _ in range(3):
        for idx in torch.randperm(len(task.y_train), generator=gen).split(32):
            loss = nn.functional.cross_entropy(forward(task.x_train[idx]), task.y_train[idx])  # classes 0..3: their own index
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            val = (forward(task.x_val).argmax(1) == task.y_val).float().mean().item()
        epochs.append((val, [p.detach().clone() for p in params]))
    best = max(range(3), key=lambda e: (epochs[e][0], -e))  # the first best epoch
    assert acc == pytest.approx(epochs[best][0])
    got = [net.hidden[0].weight, net.hidden[0].bias, net.head.weight, net.head.bias]
    assert all(torch.equal(a, b) for a, b in zip(got, epochs[best][1]))


def test_the_base_backbone_is_cached_and_retrained_when_its_key_changes(tmp_path, monkeypatch):
    calls = []
    train = base_task.train_base
    monkeypatch.setattr(base_task, "train_base", lambda cfg, stream: calls.append(1) or train(cfg, stream))
    cfg = config(tmp_path, "method=finetune")
    stream = build_stream(cfg.data, cfg.seed)
    first = build_method(cfg, stream)
    assert len(calls) == 1 and [p.parent for p in tmp_path.rglob("*.pt")] == [tmp_path / "base"]
    second = build_method(cfg, stream)  # a cache hit: no training, and the same method (its own init included)
    assert len(calls) == 1 and all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters()))
    cached = torch.load(base_task.cache_path(cfg), weights_only=True)["mlp"]
    assert torch.equal(first.net.hidden[0].weight, cached["hidden.0.weight"])
    build_method(config(tmp_path, "method=finetune", "data.eval_batch_size=64", "trainer.max_epochs=7", "data.features=true"), stream)
    assert len(calls) == 1  # keys that do not decide the base backbone
    for changed in ("backbone.pretrain.lr=0.01", "seed=1", "backbone.hidden=[8]", "data.val_fraction=0.2"):
        c = config(tmp_path, "method=finetune", changed)
        build_method(c, build_stream(c.data, c.seed))
    assert len(calls) == 5 and len(list((tmp_path / "base").glob("*.pt"))) == 5


@pytest.mark.parametrize("args, expected", [
    (["data.base_classes=10"], "data.base_classes=10 leaves none of the 10 classes of split_digits for incremental tasks; set data.base_classes<=9"),
    (["data.base_classes=4", "data.stream=test_base_task:permuted_digits", "scenario=domain"],
     "data.base_classes=4 sizes the tasks of class-split streams (split_*), but permuted_digits does not cut classes; drop data.base_classes"),
    (["data.base_classes=4", "backbone.init=pretrain", "backbone.pretrain.dataset=digits"],
     "data.base_classes=4 trains the backbone on the base task, and backbone.init=pretrain loads other weights; drop backbone.init=pretrain (or data.base_classes)"),
    (["data.base_classes=4", "backbone.init=checkpoint", "backbone.checkpoint=x.pt"], "drop backbone.init=checkpoint"),
    (["data.base_classes=4", "data.val_fraction=0"], "validation split, which data.val_fraction=0.0 leaves empty; raise data.val_fraction"),
    (["data.base_classes=0"], "data.base_classes=0 must be a positive integer"),
    (["data.base_classes=4", "data.n_tasks=1"], "data.n_tasks=1 leaves no incremental task after the base task"),
    (["data.base_classes=4", "data.n_tasks=5"], "data.base_classes=4 + 4 x data.classes_per_task=2 needs 12 classes but split_digits has 10"),
    (["data.base_classes=4", "data.classes_per_task=[3,4]"],
     "data.classes_per_task=[3, 4] needs 7 classes but split_digits has 6 after the 4 base classes; make the counts sum to at most 6"),
])
def test_bad_base_settings_are_one_line(tmp_path, capsys, args, expected):
    assert main(["fit", f"output_dir={tmp_path / 'run'}", f"data.root={tmp_path}", *QUIET, *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("continual: error: ") and expected in err, err
    assert not (tmp_path / "run").exists() and not (tmp_path / "base").exists()


def test_a_read_only_cache_folder_is_refused_before_the_base_training(tmp_path, monkeypatch, capsys):
    """The base backbone is always cached: with data.root a shared, read-only folder the run stops
    before training it (the trained network would be lost at the write), naming data.cache_dir."""
    trained = []
    monkeypatch.setattr(base_task, "train_base", lambda cfg, stream: trained.append(1))
    with read_only_folder(tmp_path / "shared") as shared:
        assert main(["fit", f"output_dir={tmp_path / 'run'}", f"data.root={shared}", "data.base_classes=4", *QUIET]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"continual: error: cannot cache the base task's backbone under '{shared / 'base'}': '{shared}' is ")
        assert err.endswith("; set data.cache_dir=<a writable folder> (data.root is only read)\n") and err.count("\n") == 1
        assert trained == [] and list(shared.iterdir()) == [] and not (tmp_path / "run").exists()


def test_after_a_base_task_the_last_task_takes_the_classes_left_and_says_so():
    """Split-MNIST B5 in tasks of 2 (the design card's setting): [5, 2, 2, 1], in one warning."""
    cfg = load_config(None, ["data.base_classes=4", "data.classes_per_task=4"]).data
    with pytest.warns(UserWarning, match=r"does not divide the 6 classes after data.base_classes=4: the last task holds 2 "
                                         r"\(tasks of \[4, 4, 2\] classes\); set data.n_tasks=2 to leave them out"):
        stream = build_stream(cfg, 0)
    assert [t.classes for t in stream.tasks] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_a_base_task_run_reports_the_incremental_tasks(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["fit", "--config", "split_digits.yaml", "data.base_classes=4", "method=prototypes", "scenario=class",
                 "prototypes.features=hidden", f"data.root={tmp_path}", f"output_dir={out}", *QUIET]) == 0
    assert "ACC over the incremental tasks T2-T4" in capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    assert m["base_classes"] == 4 and m["tasks"] == [[0, 1, 2, 3], [4, 5], [6, 7], [8, 9]]
    last = [c / n for c, n in zip(m["counts"]["correct"][-1], m["counts"]["total"][-1])]
    assert m["acc_incremental"] == pytest.approx(sum(last[1:]) / 3) and m["acc"] == pytest.approx(sum(last) / 4)
    run = load_run(out)  # the method's features come from the cached base backbone
    cached = torch.load(next((tmp_path / "base").glob("*.pt")), weights_only=True)["mlp"]
    assert all(torch.equal(run.module.backbone().hidden[i].weight, cached[f"hidden.{i}.weight"]) for i in range(2))


class StopAtSecondFit(Callback):
    def __init__(self):
        self.fits = 0

    def on_fit_start(self, trainer, module):
        self.fits += 1
        if self.fits == 2:
            raise RuntimeError("stopped after the base task")


def test_a_resumed_base_task_run_equals_the_uninterrupted_one_even_if_the_cache_went(tmp_path):
    """A run stopped after the base task resumes to the uninterrupted metrics, also when it finds no
    cache file (a cleaned folder): the base backbone is retrained from its key before the saved state loads."""
    args = [*QUICK, "method=finetune", "scenario=class", "data.base_classes=4", "data.classes_per_task=3", f"data.root={tmp_path}"]
    full = run(load_config(None, [*args, f"output_dir={tmp_path / 'full'}"]))
    with pytest.raises(RuntimeError, match="stopped after the base task"):
        run(load_config(None, [*args, f"output_dir={tmp_path / 'cut'}"]), callbacks=[StopAtSecondFit()])
    assert json.loads((tmp_path / "cut" / "metrics.json").read_text())["tasks_done"] == 1
    for f in (tmp_path / "base").glob("*.pt"):
        f.unlink()
    resumed = run(load_config(None, [*args, f"resume={tmp_path / 'cut'}"]))
    assert comparable(resumed) == comparable(full) and full["acc_incremental"] is not None


def test_a_run_on_cached_features_reads_the_base_backbone_once_and_no_raw_data(tmp_path, monkeypatch):
    """The second run of a base-task setting on features: the raw stream is never built, the base
    file is read once (for the extractor's fingerprint and the method's MLP), the metrics are the
    first run's; a change to the base backbone's key is new features."""
    from continual.features import extract as extraction

    args = [*QUICK, "method=finetune", "data.base_classes=4", "data.classes_per_task=3", "backbone.name=conv", "data.features=true",
            f"data.root={tmp_path}", "backbone.pretrain.batch_size=64"]
    first = run(load_config(None, [*args, f"output_dir={tmp_path / 'one'}"]))
    extracted, loads, real_load, real_extract = [], [], torch.load, extraction.extract
    monkeypatch.setattr(torch, "load", lambda f, *a, **k: loads.append(str(f)) or real_load(f, *a, **k))
    monkeypatch.setattr(extraction, "extract", lambda *a, **k: extracted.append(1) or real_extract(*a, **k))
    monkeypatch.setattr(extraction, "build_stream", lambda *a: pytest.fail("the raw stream was built"))
    base_task._load.cache_clear()
    second = run(load_config(None, [*args, f"output_dir={tmp_path / 'two'}"]))
    assert comparable(second) == comparable(first) and not extracted
    assert [f for f in loads if f.startswith(str(tmp_path / "base"))] == [str(base_task.cache_path(load_config(None, args)))]
    monkeypatch.setattr(extraction, "build_stream", build_stream)
    run(load_config(None, [*args, "backbone.pretrain.lr=0.01", f"output_dir={tmp_path / 'three'}"]))
    assert len(extracted) == 3 * 3 and len(list((tmp_path / "base").glob("*.pt"))) == 2  # 3 tasks x 3 splits
