"""Targets and allowed outputs per scenario, on a hand-written 3-task stream."""

import torch

from continual.scenarios import LabelSpace

TASKS = [[0, 1], [2, 3, 4], [5, 6]]


def test_task_incremental_allows_only_own_classes():
    ls = LabelSpace("task", TASKS, 7)
    assert ls.n_out == 7
    assert torch.equal(ls.targets(torch.tensor([4, 6])), torch.tensor([4, 6]))
    allowed = ls.allowed(torch.tensor([1, 2]), current=0)
    assert allowed[0].nonzero().squeeze(1).tolist() == [2, 3, 4]
    assert allowed[1].nonzero().squeeze(1).tolist() == [5, 6]


def test_class_incremental_allows_classes_learned_so_far():
    ls = LabelSpace("class", TASKS, 7)
    allowed = ls.allowed(torch.tensor([0, 1, 2]), current=1)
    assert allowed[0].nonzero().squeeze(1).tolist() == [0, 1, 2, 3, 4]  # tasks 0..1
    assert allowed[1].nonzero().squeeze(1).tolist() == [0, 1, 2, 3, 4]
    # a future task is not offered its own classes: its task id is not given in class-IL
    assert allowed[2].nonzero().squeeze(1).tolist() == [0, 1, 2, 3, 4]


def test_domain_incremental_shares_within_task_outputs():
    ls = LabelSpace("domain", TASKS, 7)
    assert ls.n_out == 3
    assert ls.targets(torch.tensor([0, 1, 2, 3, 4, 5, 6])).tolist() == [0, 1, 0, 1, 2, 0, 1]
    assert ls.allowed(torch.tensor([0, 2]), current=0).all()
