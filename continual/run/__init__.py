"""A run's folder: its files, written atomically, and the one reading of its results."""

from continual.run.files import atomic_write, storage_error
from continual.run.results import finished_metrics, read_metrics

__all__ = ["atomic_write", "finished_metrics", "read_metrics", "storage_error"]
