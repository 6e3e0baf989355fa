"""Each continual-learning metric callback against a hand-worked example, fed through a fake
stream of test passes (the hooks Lightning calls, one process)."""

from types import SimpleNamespace

import pytest
import torch

from continual.config import load_config
from continual.data.streams import build_stream
from continual.features import extract_features
from continual.build import build_method
from continual.metrics.forgetting import Forgetting
from continual.metrics.padded import padded_counts, rates
from continual.metrics.protocol import Padded, Probe
from continual.metrics.stability import MaskStability, compare
from continual.metrics.stream import forgetting_of
from continual.metrics.task_given import TaskGiven
from continual.metrics.task_inference import TaskInference

TRAINER = SimpleNamespace(world_size=1)


def batch(task: int, index: list[int], y: list[int]) -> dict:
    n = len(index)
    return {"x": torch.zeros(n, 1), "y": torch.tensor(y), "task": torch.full((n,), task), "index": torch.tensor(index)}


def run_pass(cb, module, after: int, batches: list[tuple[dict, dict]]) -> None:
    """One test pass: `batches` are (batch, test_step output) pairs, dataloader index = task."""
    cb.begin(after)
    cb.on_test_epoch_start(TRAINER, module)
    for k, (b, out) in enumerate(batches):
        cb.on_test_batch_end(TRAINER, module, out, b, k, int(b["task"][0]))
    cb.on_test_epoch_end(TRAINER, module)


def test_forgetting_per_task_and_per_class_by_hand():
    # two tasks: task 0 = classes {0, 1}, task 1 = classes {2, 3}; 4 test samples per task
    cb, module = Forgetting([[0, 1], [2, 3]], 4), SimpleNamespace(device="cpu")
    t0, t1 = batch(0, [0, 1, 2, 3], [0, 0, 1, 1]), batch(1, [0, 1, 2, 3], [2, 2, 3, 3])

    def out(b, hits):  # prediction = target where hit, else a wrong class
        return {"pred": torch.where(torch.tensor(hits).bool(), b["y"], b["y"] + 10), "target": b["y"]}

    run_pass(cb, module, -1, [(t0, out(t0, [1, 0, 0, 0])), (t1, out(t1, [0, 0, 1, 1]))])  # b = [1/4, 2/4]
    run_pass(cb, module, 0, [(t0, out(t0, [1, 1, 1, 1])), (t1, out(t1, [0, 0, 0, 1]))])  # R[0] = [1, 1/4]
    run_pass(cb, module, 1, [(t0, out(t0, [1, 1, 0, 1])), (t1, out(t1, [1, 1, 1, 1]))])  # R[1] = [3/4, 1]
    r = cb.results()
    assert r["accuracy_matrix"] == [[1.0, 0.25], [0.75, 1.0]]
    assert r["counts"] == {"correct": [[4, 1], [3, 4]], "total": [[4, 4], [4, 4]]}
    assert r["bwt"] == pytest.approx(-0.25) and r["forgetting"] == [pytest.approx(0.25), None]
    assert r["fwt"] == pytest.approx(0.25 - 0.5)  # R[0][1] - b[1]
    # per class after task 1: class 0 2/2, class 1 1/2 -> class 1 forgot 2/2 - 1/2
    pc = r["per_class"]
    assert pc["accuracy_matrix"][1] == [1.0, 0.5, 1.0, 1.0]
    assert pc["forgetting"] == [0.0, 0.5, None, None]


def test_forgetting_of_a_column_counts_only_rows_after_learning():
    assert forgetting_of([0.1, 0.9, 0.7, 0.4], 1) == pytest.approx(0.5)  # max(0.9, 0.7) - 0.4, row 0 ignored
    assert forgetting_of([0.1, 0.9], 1) is None  # learned in the last task


def test_hamming_and_jaccard_by_hand():
    learned = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0], [1, 0, 1, 0]], dtype=torch.bool)
    now = torch.tensor([[1, 0, 0, 1], [0, 0, 0, 0], [1, 0, 1, 0]], dtype=torch.bool)
    hamming, jaccard = compare(learned, now)
    assert hamming == [2, 0, 0]
    assert jaccard == pytest.approx([1 / 3, 1.0, 1.0])  # |{0}| / |{0, 1, 3}|; two empty masks agree


def probe_out(b: dict, masks: dict, routed: dict, K: int = 2) -> dict:
    """A test step's `probe` output: the masks and routed tasks of the batch's probe rows (index < K)."""
    rows = [(int(b["task"][0]), int(i)) for i in b["index"] if i < K]
    return {"probe": Probe(torch.stack([masks[r] for r in rows]), torch.tensor([routed[r] for r in rows]))}


def test_mask_stability_by_hand():
    cb, module = MaskStability(2, probe_per_task=2), SimpleNamespace(device="cpu")
    t0, t1 = batch(0, [0, 1, 2], [0, 0, 1]), batch(1, [0, 1, 2], [2, 3, 3])  # index 2 is not in the probe
    for b in (t0, t1):
        b["probe"] = b["index"] < 2
    masks = {(0, 0): torch.tensor([0.9, 0.8, 0.1]), (0, 1): torch.tensor([0.9, 0.2, 0.2]),
             (1, 0): torch.tensor([0.0, 0.0, 0.0]), (1, 1): torch.tensor([0.0, 0.0, 0.0])}
    routed = {(0, 0): 0, (0, 1): 0, (1, 0): 1, (1, 1): 1}
    run_pass(cb, module, -1, [(t0, probe_out(t0, masks, routed)), (t1, probe_out(t1, masks, routed))])  # nothing learned
    run_pass(cb, module, 0, [(t0, probe_out(t0, masks, routed)), (t1, probe_out(t1, masks, routed))])
    # after task 1: sample 0 of task 0 keeps its binarized mask (0.6 > 0.5); sample 1 gains unit 2
    # and is now routed to task 1
    masks.update({(0, 0): torch.tensor([0.6, 0.7, 0.4]), (0, 1): torch.tensor([0.9, 0.2, 0.7]),
                  (1, 0): torch.tensor([1.0, 1.0, 1.0]), (1, 1): torch.tensor([0.0, 0.0, 1.0])})
    routed[(0, 1)] = 1
    run_pass(cb, module, 1, [(t0, probe_out(t0, masks, routed)), (t1, probe_out(t1, masks, routed))])
    assert cb.rows == [
        [0, 0, 0, 0, 1.0, 1, 0], [0, 0, 1, 0, 1.0, 1, 0],
        [1, 0, 0, 0, 1.0, 1, 0], [1, 0, 1, 1, 0.5, 0, 1],  # {0} vs {0, 2}: Hamming 1, Jaccard 1/2, rerouted
        [1, 1, 0, 0, 1.0, 1, 0], [1, 1, 1, 0, 1.0, 1, 0],
    ]
    r = cb.results()
    assert (r["unchanged_fraction"], r["mean_hamming"], r["mean_jaccard"], r["rerouted_fraction"]) == (0.5, 0.5, 0.75, 0.5)
    # cells on: after task 0, 3 of task 0's 6; after task 1, 4 of task 0's 6 + 4 of task 1's 6
    assert r["density_curve"] == pytest.approx([3 / 6, 8 / 12]) and r["mask_density"] == pytest.approx(8 / 12)
    assert r["unchanged_curve"] == [None, 0.5] and r["threshold"] == 0.5


def test_padded_counts_and_win_rates_by_hand():
    # 3 slots; task 0 has 2 classes (slot 2 padded), task 1 has 3
    unmasked = torch.tensor([[1.0, 2.0, 5.0], [3.0, 1.0, 0.0], [0.0, 1.0, 2.0]])
    valid = torch.tensor([[True, True, False], [True, True, False], [True, True, True]])
    target, task = torch.tensor([1, 0, 2]), torch.tensor([0, 0, 1])
    # without masking the padded slot wins sample 0: counted as a win and a would-win, and wrong
    no_mask = padded_counts(Padded(unmasked, unmasked, valid, target), task, 2)
    assert no_mask.tolist() == [[1, 2, 1, 1], [1, 1, 0, 0]]
    assert rates(no_mask.tolist())["win_rate"] == pytest.approx(1 / 3)
    # with masking it can never win, but it would have
    masked = padded_counts(Padded(unmasked.masked_fill(~valid, float("-inf")), unmasked, valid, target), task, 2)
    assert masked.tolist() == [[2, 2, 0, 1], [1, 1, 0, 0]]
    assert rates(masked.tolist()) == {"accuracy": 1.0, "win_rate": 0.0, "would_win_rate": pytest.approx(1 / 3)}


def test_router_padded_slots_never_win():
    cfg = load_config(None, ["method=router", "router.n_v=4", "router.h=16", "logger.kind=none"])
    stream = extract_features(cfg, build_stream(cfg.data, cfg.seed))
    module = build_method(cfg, stream).eval()
    for t in range(len(stream)):
        module.memories[t].gates[0].data.normal_(0, 3)  # an untrained, arbitrary network
        module.memories[t].values.data.normal_(0, 3)
    b = {"x": torch.cat([t.x_test for t in stream.tasks]), "y": torch.cat([t.y_test for t in stream.tasks])}
    b["task"] = torch.cat([torch.full((len(t.y_test),), t.id) for t in stream.tasks])
    b["probe"] = torch.zeros(len(b["y"]), dtype=torch.bool)
    with torch.no_grad():
        p = module.evaluate(b)["padded"]
    counts = padded_counts(p, b["task"], len(stream)).sum(0).tolist()
    assert (~p.valid).any(1).all()  # every task has 2 classes in 4 slots
    assert counts[2] == 0 and counts[3] > 0  # padded slots would win, masked they never do


def test_task_inference_confusion_by_hand():
    cb, module = TaskInference(2), SimpleNamespace(device="cpu")
    t0, t1 = batch(0, [0, 1, 2], [0, 0, 1]), batch(1, [0, 1, 2], [2, 3, 3])
    inferred = [(t0, {"task": torch.tensor([0, 0, 1])}), (t1, {"task": torch.tensor([1, 0, 1])})]
    run_pass(cb, module, -1, inferred)
    run_pass(cb, module, 0, inferred)  # only task 0 is learned: task 1 is not counted
    run_pass(cb, module, 1, inferred)
    r = cb.results()
    assert r["confusion_matrix"] == [[2, 1], [1, 2]]
    assert r["accuracy"] == pytest.approx(4 / 6) and r["per_task"] == pytest.approx([2 / 3, 2 / 3])
    assert r["accuracy_curve"] == pytest.approx([2 / 3, 4 / 6])


def test_task_given_accuracy_matrix_by_hand():
    """Two tasks of 4 test samples: the task-given prediction is counted, not the class-IL one."""
    cb, module = TaskGiven(2), SimpleNamespace(device="cpu")
    t0, t1 = batch(0, [0, 1, 2, 3], [0, 0, 1, 1]), batch(1, [0, 1, 2, 3], [2, 2, 3, 3])

    def out(b, hits):  # class-IL prediction always wrong; task-given right where hit
        return {"pred": b["y"] + 10, "task_given": torch.where(torch.tensor(hits).bool(), b["y"], b["y"] + 1), "target": b["y"]}

    run_pass(cb, module, 0, [(t0, out(t0, [1, 1, 1, 0])), (t1, out(t1, [1, 0, 0, 0]))])  # R[0] = [3/4, 1/4]
    assert cb.results()["acc"] is None and cb.scalars() == {"task_given/acc": 0.75}  # the tasks learned so far
    run_pass(cb, module, 1, [(t0, out(t0, [1, 1, 0, 0])), (t1, out(t1, [1, 1, 1, 1]))])  # R[1] = [2/4, 1]
    r = cb.results()
    assert r == {"acc": 0.75, "accuracy_matrix": [[0.75, 0.25], [0.5, 1.0]], "counts": {"correct": [[3, 1], [2, 4]], "total": [[4, 4], [4, 4]]}}
    assert TaskGiven.active(SimpleNamespace(eval_outputs=("task_given",), labels=SimpleNamespace(scenario="class")))
    assert not TaskGiven.active(SimpleNamespace(eval_outputs=("task_given",), labels=SimpleNamespace(scenario="task")))


# -- the registry: what each metric declares, read by the suite, the loggers and compare ----------
def test_the_registry_gives_metrics_json_order_and_the_metrics_section():
    from continual.metrics import registry

    assert [m.key for m in registry.metrics()] == ["forgetting", "memory", "mask_stability", "padded_class", "task_given", "task_inference"]
    cfg = load_config(None, ["metrics.padded_class=false", "logger.kind=none"])
    assert dict(cfg.metrics) == {"mask_stability": True, "padded_class": False, "task_given": True, "task_inference": True,
                                 "probe_per_task": 64}


def test_a_metric_that_is_off_or_unread_is_null_in_metrics_json():
    from continual.metrics.suite import MetricSuite

    cfg = load_config(None, ["method=router", "router.h=16", "metrics.task_inference=false", "logger.kind=none"])
    stream = build_stream(cfg.data, cfg.seed)
    suite = MetricSuite(cfg, stream, build_method(cfg, stream))
    assert [cb.key for cb in suite.callbacks] == ["forgetting", "memory", "mask_stability", "padded_class"]
    cfg = load_config(None, ["method=ewc", "logger.kind=none"])  # ewc returns none of task, probe, padded
    suite = MetricSuite(cfg, stream, build_method(cfg, stream))
    assert [cb.key for cb in suite.callbacks] == ["forgetting", "memory"]
    assert suite.state_dict().keys() == {"forgetting", "memory"}


def test_final_scalars_are_the_numbers_of_each_switchable_metrics_entry():
    from continual.metrics.registry import final_scalars

    m = {
        "forgetting": [0.1, None], "acc": 0.5, "stored_floats": 3.0, "mask_density": 0.25,
        "mask_stability": {"threshold": 0.5, "samples": 4, "per_task": [{"samples": 2}], "mask_size": None},
        "padded_class": None,
        "task_inference": {"accuracy": 0.75, "confusion_matrix": [[1]], "flag": True},
    }
    assert final_scalars(m) == {
        "final/mask_stability/threshold": 0.5, "final/mask_stability/samples": 4, "final/task_inference/accuracy": 0.75,
    }


def test_compare_columns_read_a_runs_metrics_json():
    from continual.metrics.registry import compare_columns

    m = {"acc": 0.9, "bwt": -0.1, "avg_forgetting": 0.2, "wall_time_s": 12.5, "trainable_params_per_task": [10, 20, 30],
         "stored_floats": 7.0, "mask_density": None}
    cols = compare_columns()
    assert [c.key for c in cols] == ["acc", "acc_incremental", "bwt", "avg_forgetting", "wall_time_s", "trainable_per_task",
                                     "stored_floats", "mask_density", "task_given_acc"]
    # acc_incremental: a base-task run's; task_given_acc: a class-IL run's
    assert [c.read(m) for c in cols] == [0.9, None, -0.1, 0.2, 12.5, 20.0, 7.0, None, None]
    assert cols[8].read({**m, "task_given": {"acc": 0.95}}) == 0.95
    assert [c.format for c in cols] == ["percent"] * 4 + ["seconds", "count", "count", "percent", "percent"]
    assert cols[5].read({"trainable_params_per_task": []}) is None


def test_a_repeated_pass_replaces_its_row_and_state_round_trips():
    """The base class's one structure: counts -> sum over processes -> one row per pass -> state."""
    cb, module = TaskInference(2), SimpleNamespace(device="cpu")
    t0, t1 = batch(0, [0, 1], [0, 1]), batch(1, [0, 1], [2, 3])
    after_1 = [(t0, {"task": torch.tensor([0, 0])}), (t1, {"task": torch.tensor([1, 1])})]
    run_pass(cb, module, 0, [(t0, {"task": torch.tensor([0, 1])}), (t1, {"task": torch.tensor([0, 0])})])
    assert cb.state_dict() == {"confusions": [[[1, 1], [0, 0]]]}  # task 1 is not learned yet: not counted
    resumed = TaskInference(2)
    resumed.load_state_dict(cb.state_dict())
    run_pass(cb, module, 1, after_1)
    run_pass(resumed, module, 1, after_1)
    run_pass(resumed, module, 1, after_1)  # killed after the pass, resumed: the pass is repeated
    assert resumed.state_dict() == cb.state_dict() == {"confusions": [[[1, 1], [0, 0]], [[2, 0], [0, 2]]]}
