"""Stream metrics from an accuracy matrix.

`R[i][j]` is the accuracy on task j's test set after training on tasks 0..i (T x T; the
columns j > i are evaluated too, for forward transfer). `b[j]` is the accuracy on task j of
the model before any training (random init), the FWT reference.

* ACC  = 1/T sum_j R[T-1][j]                                      (Lopez-Paz & Ranzato 2017)
* ACC incremental = 1/(T-1) sum_{j>0} R[T-1][j]: with a base task (data.base_classes), the
  tasks after it, which the backbone never saw
* BWT  = 1/(T-1) sum_{j<T-1} (R[T-1][j] - R[j][j])                (Lopez-Paz & Ranzato 2017)
* FWT  = 1/(T-1) sum_{j>0} (R[j-1][j] - b[j])                     (Lopez-Paz & Ranzato 2017)
* forgetting_j = max_{l<T-1} R[l][j] - R[T-1][j], for j < T-1     (Chaudhry et al. 2018)
  (only rows l >= j count: before task j is learned it has nothing to forget)

Undefined quantities (BWT/FWT with one task, forgetting of the last task) are None.
"""

from __future__ import annotations

from typing import Optional, Sequence

Matrix = Sequence[Sequence[float]]


def _check(R: Matrix) -> int:
    T = len(R)
    if T == 0 or any(len(row) != T for row in R):
        raise ValueError(f"accuracy matrix must be square and non-empty, got {[len(r) for r in R]}")
    return T


def average_accuracy(R: Matrix) -> float:
    T = _check(R)
    return sum(R[T - 1]) / T


def incremental_accuracy(R: Matrix) -> Optional[float]:
    """ACC over the incremental tasks (every task after the base task 0)."""
    T = _check(R)
    return sum(R[T - 1][1:]) / (T - 1) if T > 1 else None


def backward_transfer(R: Matrix) -> Optional[float]:
    T = _check(R)
    if T < 2:
        return None
    return sum(R[T - 1][j] - R[j][j] for j in range(T - 1)) / (T - 1)


def forward_transfer(R: Matrix, b: Optional[Sequence[float]]) -> Optional[float]:
    T = _check(R)
    if T < 2 or b is None:
        return None
    return sum(R[j - 1][j] - b[j] for j in range(1, T)) / (T - 1)


def forgetting_of(column: Sequence[Optional[float]], learned: int) -> Optional[float]:
    """Forgetting of one column over the stream (a task's, or a class's learned in task `learned`)."""
    T = len(column)
    if learned >= T - 1 or column[T - 1] is None:
        return None
    return max(column[l] for l in range(learned, T - 1)) - column[T - 1]


def forgetting(R: Matrix) -> list[Optional[float]]:
    T = _check(R)
    return [forgetting_of([row[j] for row in R], j) for j in range(T)]


def average_forgetting(R: Matrix) -> Optional[float]:
    f = [v for v in forgetting(R) if v is not None]
    return sum(f) / len(f) if f else None


def summarize(R: Matrix, b: Optional[Sequence[float]] = None) -> dict:
    return {
        "acc": average_accuracy(R),
        "bwt": backward_transfer(R),
        "fwt": forward_transfer(R, b),
        "forgetting": forgetting(R),
        "avg_forgetting": average_forgetting(R),
    }
