"""Streams whose tasks differ in size (`data.classes_per_task=[1, 2, 3]`): the cut of every
class-split stream, its errors, scenarios, the router's padded outputs, every method, metrics
and compare on them."""

import csv
import json
from types import SimpleNamespace

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from cases import CASES, case_overrides
from continual import load_run
from continual.cli.main import main
from continual.config.schema import DataConfig
from continual.data import sources
from continual.data.custom import stream_from_tensors
from continual.data.streams import build_stream
from continual.metrics.forgetting import Forgetting
from continual.metrics.padded import padded_counts
from continual.scenarios import LabelSpace
from helpers import QUICK, QUIET
from test_streams_extra import write_cifar

SIZES = [1, 2, 3]
UNEQUAL = [*QUICK, "data.classes_per_task=[1,2,3]"]


def data_cfg(**kw):
    return OmegaConf.merge(OmegaConf.structured(DataConfig), kw)


def hand_cut(y_train, y_test, sizes, order=None):
    """Per task: its classes (the next `sizes[t]` of the class order) and how many train+val and
    test samples they have, counted label by label."""
    order = order or list(range(10))
    out, start = [], 0
    for n in sizes:
        classes = order[start : start + n]
        start += n
        out.append((classes, sum(int((y_train == c).sum()) for c in classes), sum(int((y_test == c).sum()) for c in classes)))
    return out


def cut(stream):
    return [(t.classes, len(t.y_train) + len(t.y_val), len(t.y_test)) for t in stream.tasks]


def test_split_digits_cuts_the_next_classes_of_the_order_per_task():
    _, y_tr, _, y_te = sources.load_digits(0.2, 0)
    s = build_stream(data_cfg(classes_per_task=[1, 2, 3]), seed=0)  # n_tasks: the list's length
    assert cut(s) == hand_cut(y_tr, y_te, [1, 2, 3])
    assert [len(t.y_val) for t in s.tasks] == [round(0.1 * n) for _, n, _ in hand_cut(y_tr, y_te, [1, 2, 3])]
    order = [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    s = build_stream(data_cfg(classes_per_task=[4, 1, 5], n_tasks=3, class_order=order), seed=0)  # all ten classes
    assert cut(s) == hand_cut(y_tr, y_te, [4, 1, 5], order) and s.meta["class_order"] == order
    assert cut(build_stream(data_cfg(classes_per_task=[2, 2, 2, 2, 2]), seed=0)) == cut(build_stream(data_cfg(), seed=0))


def test_split_mnist_cuts_unequal_tasks(mnist_root):
    _, y_tr, _, y_te = sources.load_mnist(str(mnist_root), False)
    s = build_stream(data_cfg(stream="split_mnist", root=str(mnist_root), classes_per_task=[2, 3, 5]), seed=0)
    assert cut(s) == hand_cut(y_tr, y_te, [2, 3, 5])


def test_split_cifar_and_custom_streams_cut_unequal_tasks(tmp_path):
    written, train_files = write_cifar(tmp_path, "cifar10", 10, n_per_file=20)
    y_tr = torch.tensor([c for f in train_files for c in written[f]["labels"]])
    s = build_stream(data_cfg(stream="split_cifar10", root=str(tmp_path), classes_per_task=[3, 7]), seed=0)
    assert cut(s) == hand_cut(y_tr, torch.tensor(written["test_batch"]["labels"]), [3, 7])
    x, y = torch.rand(60, 5), torch.arange(60) % 6
    s = stream_from_tensors("mine", x, y, x[:30], y[:30], data_cfg(classes_per_task=[1, 5]), seed=0)
    assert cut(s) == hand_cut(y, y[:30], [1, 5], list(range(6)))


@pytest.mark.parametrize("args, expected", [
    (["data.classes_per_task=[4,4,4]"], "data.classes_per_task=[4, 4, 4] needs 12 classes but split_digits has 10; make the counts sum to at most 10"),
    (["data.classes_per_task=[2,0,3]"], "data.classes_per_task=[2, 0, 3] must be a positive integer or a non-empty list of them"),
    (["data.classes_per_task=[]"], "data.classes_per_task=[] must be a positive integer or a non-empty list of them"),
    (["data.classes_per_task=[1,2,3]", "data.n_tasks=4"],
     "data.n_tasks=4 disagrees with data.classes_per_task=[1, 2, 3] (3 tasks); drop data.n_tasks or set it to 3"),
    (["method=router", "data.classes_per_task=[1,2,3]", "router.n_v=2"],
     "router.n_v=2 is smaller than task 3's 3 classes [3, 4, 5]; set router.n_v>=3"),
])
def test_bad_unequal_settings_are_one_line(tmp_path, capsys, args, expected):
    assert main(["fit", f"output_dir={tmp_path / 'run'}", *QUIET, *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("continual: error: ") and expected in err, err
    assert not (tmp_path / "run").exists()


def test_scenarios_on_unequal_tasks_by_hand():
    tasks = [[0], [1, 2], [3, 4, 5]]
    task = LabelSpace("task", tasks, 6)
    assert task.own.tolist() == [[1, 0, 0, 0, 0, 0], [0, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]]  # heads of 1, 2, 3 outputs
    assert task.allowed(torch.tensor([1, 0]), current=2).sum(1).tolist() == [2, 1]
    cls = LabelSpace("class", tasks, 6)
    assert cls.allowed(torch.tensor([0, 2]), current=1).tolist() == [[1, 1, 1, 0, 0, 0]] * 2  # the 3 classes seen so far
    dom = LabelSpace("domain", tasks, 6)
    assert dom.n_out == 3 and dom.targets(torch.arange(6)).tolist() == [0, 0, 1, 0, 1, 2]


def test_router_pads_each_task_to_the_largest_and_the_padded_metric_counts_it():
    """N_v defaults to the largest task (3): task 1 has 2 padded slots, task 2 one, task 3 none."""
    from continual import extract_features, load_config
    from continual.build import build_method

    cfg = load_config(None, ["method=router", "router.h=16", "data.classes_per_task=[1,2,3]", "logger.kind=none"])
    stream = extract_features(cfg, build_stream(cfg.data, cfg.seed))  # the flat features the method sees
    module = build_method(cfg, stream).eval()
    assert module.within_task.n_v == 3
    for t in range(len(stream)):
        module.memories[t].gates[0].data.normal_(0, 3)  # an untrained, arbitrary network: padded slots would win
        module.memories[t].values.data.normal_(0, 3)
    b = {"x": torch.cat([t.x_test for t in stream.tasks]), "y": torch.cat([t.y_test for t in stream.tasks])}
    b["task"] = torch.cat([torch.full((len(t.y_test),), t.id) for t in stream.tasks])
    b["probe"] = torch.zeros(len(b["y"]), dtype=torch.bool)
    with torch.no_grad():
        p = module.evaluate(b)["padded"]
    for t, n in enumerate(SIZES):
        assert (p.valid[b["task"] == t].sum(1) == n).all()
    counts = padded_counts(p, b["task"], len(stream))
    pick = p.unmasked.argmax(1)
    by_hand = [int((pick[b["task"] == t] >= n).sum()) for t, n in enumerate(SIZES)]  # the padded slots are the last 3 - n
    assert counts[:, 3].tolist() == by_hand and by_hand[0] > 0 and by_hand[2] == 0
    assert counts[:, 2].sum() == 0  # masked, a padded slot never wins
    assert counts[:, 1].tolist() == [len(t.y_test) for t in stream.tasks]


def test_forgetting_callback_on_unequal_tasks_by_hand():
    """Tasks of 1 and 3 classes with 2 and 6 test samples: each task weighs the same in ACC and
    forgetting; with a base task, acc_incremental is the mean over the tasks after it."""
    from test_metric_callbacks import batch, run_pass

    cb, module = Forgetting([[0], [1, 2, 3]], 4, base_classes=1), SimpleNamespace(device="cpu")
    t0, t1 = batch(0, [0, 1], [0, 0]), batch(1, list(range(6)), [1, 1, 2, 2, 3, 3])

    def out(b, hits):
        return {"pred": torch.where(torch.tensor(hits).bool(), b["y"], b["y"] + 10), "target": b["y"]}

    run_pass(cb, module, -1, [(t0, out(t0, [0, 0])), (t1, out(t1, [0] * 6))])
    run_pass(cb, module, 0, [(t0, out(t0, [1, 1])), (t1, out(t1, [0] * 6))])  # R[0] = [1, 0]
    run_pass(cb, module, 1, [(t0, out(t0, [1, 0])), (t1, out(t1, [1, 1, 1, 1, 1, 0]))])  # R[1] = [1/2, 5/6]
    r = cb.results()
    assert r["accuracy_matrix"] == [[1.0, 0.0], [0.5, 5 / 6]] and r["counts"]["total"] == [[2, 6], [2, 6]]
    assert r["acc"] == pytest.approx((0.5 + 5 / 6) / 2)  # not the pooled 6/8
    assert r["forgetting"] == [0.5, None] and r["avg_forgetting"] == 0.5
    assert r["per_class"]["accuracy_matrix"][1] == [0.5, 1.0, 1.0, 0.5]
    assert r["base_classes"] == 1 and r["acc_incremental"] == pytest.approx(5 / 6)
    assert Forgetting.final_scalars(r) == {"final/acc_incremental": r["acc_incremental"]}  # logged beside final/acc


@pytest.mark.parametrize("case", CASES)
def test_every_method_runs_on_unequal_tasks(tmp_path, case):
    """Exit 0, and each task's counts are the run's own predictions counted again, over all its test samples."""
    out = tmp_path / "run"
    assert main(["fit", f"output_dir={out}", *UNEQUAL, *case_overrides(case)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    run = load_run(out)
    assert [len(c) for c in m["tasks"]] == SIZES == [len(t.classes) for t in run.stream.tasks]
    correct = []
    with torch.no_grad():
        for task in run.stream.tasks:
            y = task.y_test
            batch = {"x": task.x_test, "y": y, "task": torch.full_like(y, task.id), "index": torch.arange(len(y)),
                     "probe": torch.zeros(len(y), dtype=torch.bool)}
            pred = run.module.evaluate(batch)
            correct.append(int((pred["pred"] == pred["target"]).sum()))
    assert m["counts"]["correct"][-1] == correct
    assert m["counts"]["total"][-1] == [len(t.y_test) for t in run.stream.tasks]
    assert m["accuracy_matrix"][-1] == [c / len(t.y_test) for c, t in zip(correct, run.stream.tasks)]
    assert m["acc"] == pytest.approx(sum(m["accuracy_matrix"][-1]) / 3)
    per_class = m["per_class"]["counts"]["total"][-1]
    assert [sum(per_class[c] for c in classes) for classes in m["tasks"]] == m["counts"]["total"][-1]


def test_compare_over_an_unequal_stream(tmp_path):
    grid = {"base": "split_digits.yaml", "out": str(tmp_path / "grid"), "methods": {"ncm": ["method=ncm"], "router": ["method=router"]},
            "scenarios": ["class"], "seeds": [0], "overrides": [*QUICK, "data.classes_per_task=[3,1,2]"]}
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(grid))
    assert main(["compare", "--config", str(tmp_path / "grid.yaml")]) == 0
    rows = {r["method"]: r for r in csv.DictReader((tmp_path / "grid" / "compare.csv").open())}
    for name in ("ncm", "router"):
        m = json.loads((tmp_path / "grid" / f"{name}__class__s0" / "metrics.json").read_text())
        assert m["tasks"] == [[0, 1, 2], [3], [4, 5]]
        assert float(rows[name]["acc_mean"]) == m["acc"] and rows[name]["failed"] == "0"


def test_a_list_of_classes_per_task_on_a_stream_that_does_not_cut_classes_is_refused(mnist_root, tmp_path, capsys):
    """permuted_mnist ignored the list and trained its own tasks (found by tests/probe.py)."""
    run = tmp_path / "run"
    code = main(["fit", "data.stream=permuted_mnist", "data.classes_per_task=[5,5]", "data.n_tasks=2", f"data.root={mnist_root}",
                 f"output_dir={run}", *QUIET])
    assert code == 2 and not run.exists()
    assert capsys.readouterr().err.strip() == (
        "continual: error: data.classes_per_task=[5, 5] sizes the tasks of class-split streams (split_*), but "
        "permuted_mnist does not cut classes; drop data.classes_per_task")
