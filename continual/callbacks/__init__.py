"""Lightning callbacks the stream driver attaches to every task's Trainer."""

from continual.callbacks.checkpointing import TaskCheckpoint
from continual.callbacks.frozen_guard import FrozenBackboneGuard
from continual.callbacks.loss_guard import FiniteLossGuard
from continual.callbacks.progress import TaskProgressBar

__all__ = ["FiniteLossGuard", "FrozenBackboneGuard", "TaskCheckpoint", "TaskProgressBar"]
