"""Within-task outputs (router, SupSup): tables, targets, padding and labels against hand-written
expectations, and `n_v` checked against the tasks."""

import pytest
import torch

from continual.errors import ConfigError
from continual.helpers.within_task import WithinTaskOutputs
from continual.scenarios import LabelSpace, max_classes_per_task

TASKS = [[3, 1], [0], [2, 4, 5]]  # uneven tasks, classes out of order


def test_tables_targets_and_padding_by_hand():
    out = WithinTaskOutputs(TASKS, 6, "class")
    assert out.n_v == 3 == max_classes_per_task(TASKS) == LabelSpace("domain", TASKS, 6).n_out
    assert out.class_table.tolist() == [[3, 1, -1], [0, -1, -1], [2, 4, 5]]
    assert out.targets(torch.tensor([0, 1, 2, 3, 4, 5])).tolist() == [0, 1, 0, 0, 1, 2]
    assert out.valid(1).tolist() == [True, False, False]
    logits = torch.tensor([[1.0, 9.0, 8.0, 7.0], [5.0, 6.0, 7.0, 8.0]])  # wider than n_v: the rest is cut
    masked = out.mask_padding(logits, torch.tensor([0, 1]))
    assert masked.tolist() == [[1.0, 9.0, float("-inf")], [5.0, float("-inf"), float("-inf")]]
    assert out.label(masked, torch.tensor([0, 1])).tolist() == [1, 0]  # task 0's output 1 is class 1
    assert WithinTaskOutputs(TASKS, 6, "domain").label(masked, torch.tensor([0, 1])).tolist() == [1, 0]
    assert out.label(torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([2])).tolist() == [5]
    assert dict(out.state_dict()) == {}  # follows from the stream: nothing in checkpoints


def test_n_v_wider_than_the_largest_task_pads_and_a_narrower_one_is_a_config_error():
    assert WithinTaskOutputs(TASKS, 6, "task", n_v=5).class_table[1].tolist() == [0, -1, -1, -1, -1]
    with pytest.raises(ConfigError) as err:
        WithinTaskOutputs(TASKS, 6, "task", n_v=2, setting="router.n_v")
    assert str(err.value) == (
        "router.n_v=2 is smaller than task 3's 3 classes [2, 4, 5]; "
        "set router.n_v>=3 (or leave it unset for the largest task's class count)"
    )
