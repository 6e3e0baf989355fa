"""A run's folder, owned here alone: where each file lives (`layout`), its writer and lock
(`folder.RunDirectory`), what its state holds and when a config may continue it (`state`),
the one reading of its results (`results`) and atomic writing (`files`).

Nothing here imports the layers above (experiment, build, methods, data, models): they pass
in what the run folder needs, e.g. the method's config schema.
"""

from continual.rundir.files import atomic_write, storage_error
from continual.rundir.results import finished_metrics, read_metrics

__all__ = ["atomic_write", "finished_metrics", "read_metrics", "storage_error"]
