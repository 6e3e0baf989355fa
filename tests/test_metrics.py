"""Stream metrics against a hand-worked 3x3 accuracy matrix."""

import pytest

from continual.metrics.stream import (
    average_accuracy,
    average_forgetting,
    backward_transfer,
    forgetting,
    forward_transfer,
    summarize,
)

# Row i: after training task i; column j: accuracy on task j.
R = [
    [0.90, 0.20, 0.10],
    [0.60, 0.80, 0.30],
    [0.50, 0.70, 0.95],
]
B = [0.10, 0.25, 0.05]  # random-init accuracy per task


def test_acc_is_mean_of_last_row():
    # (0.50 + 0.70 + 0.95) / 3 = 2.15 / 3
    assert average_accuracy(R) == pytest.approx(0.716666, abs=1e-6)


def test_bwt_by_hand():
    # ((0.50 - 0.90) + (0.70 - 0.80)) / 2 = (-0.40 - 0.10) / 2 = -0.25
    assert backward_transfer(R) == pytest.approx(-0.25)


def test_fwt_by_hand():
    # ((R[0][1] - b1) + (R[1][2] - b2)) / 2 = ((0.20 - 0.25) + (0.30 - 0.05)) / 2 = 0.10
    assert forward_transfer(R, B) == pytest.approx(0.10)
    assert forward_transfer(R, None) is None


def test_forgetting_by_hand():
    # task 0: max(0.90, 0.60) - 0.50 = 0.40; task 1: max(0.80) - 0.70 = 0.10; task 2: undefined
    f = forgetting(R)
    assert f[0] == pytest.approx(0.40) and f[1] == pytest.approx(0.10) and f[2] is None
    assert average_forgetting(R) == pytest.approx(0.25)


def test_forgetting_uses_best_earlier_accuracy_not_the_first():
    # task 0 peaks after task 1 (0.95), then falls to 0.5: forgetting is 0.45, not 0.9 - 0.5
    R2 = [[0.90, 0.0, 0.0], [0.95, 0.9, 0.0], [0.50, 0.9, 0.9]]
    assert forgetting(R2)[0] == pytest.approx(0.45)
    assert forgetting(R2)[1] == pytest.approx(0.0)


def test_single_task_has_no_transfer():
    s = summarize([[0.8]], [0.1])
    assert s["acc"] == pytest.approx(0.8)
    assert s["bwt"] is None and s["fwt"] is None and s["forgetting"] == [None] and s["avg_forgetting"] is None


def test_non_square_matrix_is_rejected():
    with pytest.raises(ValueError, match="square"):
        average_accuracy([[0.1, 0.2]])
