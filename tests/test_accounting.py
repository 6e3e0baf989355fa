"""Memory and compute accounting (metrics.json: trainable_params_per_task, stored_floats,
mask_density) against hand counts; the class-IL FWT protocol; evaluation on the validation split."""

import json

import pytest

from continual.cli.main import main

QUIET = ["logger.kind=none", "trainer.enable_progress_bar=false", "trainer.max_epochs=1"]
NET = 64 * 100 + 100 + 100 * 100 + 100 + 100 * 10 + 10  # Split-Digits, hidden [100, 100], 10 outputs


def fit(tmp_path, name, *overrides):
    out = tmp_path / name
    assert main(["fit", f"output_dir={out}", *QUIET, *overrides]) == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.parametrize("method, stored", [
    ("finetune", NET),  # no frozen backbone: the network is what it keeps
    ("ewc", NET + 5 * 2 * NET),  # + one (Fisher, theta*) pair per task
    ("lwf", 2 * NET + 1 / 32),  # + the teacher copy and its one-bit "has a teacher" flag
])
def test_baselines_memory_by_hand(tmp_path, method, stored):
    m = fit(tmp_path, method, f"method={method}")
    assert m["trainable_params_per_task"] == [NET] * 5
    assert m["stored_floats"] == stored and m["mask_density"] is None


@pytest.mark.parametrize("gate", ["units", "none", "connections"])
def test_router_memory_by_hand(tmp_path, gate):
    S, n_v, width = (2 if gate == "connections" else 8), 2, 100  # a connection gate per slot is 16k cells: 2 slots keep it short
    m = fit(tmp_path, gate, "method=router", "scenario=class", f"router.gate={gate}", f"router.memories={S}", "router.h=16",
            "router.attention=learned")
    gates = S * 200 if gate == "units" else 0  # one gate per hidden unit (2 x 100) per slot
    # keys: S x d with d = heads x h = 16 for learned attention over the 2 layer tokens
    memory = S * 16 + gates + S * n_v * width + S * n_v
    # hard connection masks: the learning task's gate logits as floats (64 x 100 + 100 x 100 weights
    # per slot), every task's masks as bits, and each task's one-bit "finished"
    cells = S * (64 * 100 + 100 * 100) if gate == "connections" else 0
    bits = 5 * cells / 32 + 5 / 32 if gate == "connections" else 0
    encoder = m["trainable_params_per_task"][0] - memory - cells  # trained with task 1 only, then frozen
    assert encoder > 0 and m["trainable_params_per_task"][1:] == [memory + cells] * 4
    assert m["stored_floats"] == 5 * memory + encoder + cells + bits + 5 / 32  # + each memory's one-bit "initialized"
    if gate == "none":
        assert m["mask_density"] is None and m["mask_stability"] is None
    else:
        assert m["mask_density"] == m["mask_stability"]["mask_density"] and 0 < m["mask_density"] <= 1


def test_class_il_does_not_offer_an_unlearned_tasks_classes(tmp_path):
    m = fit(tmp_path, "ft", "scenario=class")
    R = m["accuracy_matrix"]
    assert all(R[i][j] == 0.0 for i in range(5) for j in range(i + 1, 5))  # never told the task
    assert m["initial_accuracy"][1:] == [0.0] * 4 and m["fwt"] == 0.0


def test_eval_split_val_evaluates_the_validation_split(tmp_path, capsys):
    val = fit(tmp_path, "val", "data.eval_split=val")
    test = fit(tmp_path, "test")
    assert val["eval_split"] == "val" and test["eval_split"] == "test"
    # Split-Digits: 20% test, then 10% of the rest held out for validation
    assert sum(val["counts"]["total"][-1]) < sum(test["counts"]["total"][-1])
    assert main(["fit", "data.eval_split=val", "data.val_fraction=0", *QUIET]) == 2
    assert "needs a validation split" in capsys.readouterr().err
