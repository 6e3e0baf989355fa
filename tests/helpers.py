"""What tests share: the settings of a quick run, the part of a run's metrics that must be
reproduced exactly (by a rerun, a resumed run, a DDP run), and runs made once per session."""

import contextlib
import fcntl
import json
import os
from pathlib import Path

# A run that prints and logs only its results (for a run that stops before training: a bad input)
QUIET = ["logger.kind=none", "trainer.enable_progress_bar=false"]
# A quiet run in a second or two: one epoch of three tasks on a small MLP. A test that needs more
# (epochs to learn, all five tasks) overrides after QUICK and says why.
QUICK = [*QUIET, "trainer.max_epochs=1", "data.n_tasks=3", "backbone.hidden=[64,64]"]


def comparable(run: Path | dict) -> dict:
    """A run's metrics (its run directory's metrics.json, or the dict `run()` returned) without
    what differs between identical runs: wall time and provenance."""
    m = run if isinstance(run, dict) else json.loads((Path(run) / "metrics.json").read_text())
    return {k: v for k, v in m.items() if k not in ("wall_time_s", "provenance")}


@contextlib.contextmanager
def shared_once(tmp_path_factory, name: str):
    """A folder this test session's xdist workers share, and whether it must still be made: the
    first worker to get here makes it (yields True) while the others wait on its lock and then
    find it done (yield False). Without xdist, a folder of this process's own."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / name
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = root / ".done"
        yield root, not done.is_file()
        root.mkdir(parents=True, exist_ok=True)
        done.touch()


@contextlib.contextmanager
def read_only_folder(path: Path):
    """An empty folder marked read-only for everyone (mode 0555), as a shared data set is: root
    could write it, the platform must not."""
    path.mkdir()
    path.chmod(0o555)
    try:
        yield path
    finally:
        path.chmod(0o755)


def broken_stream(cfg, seed):
    """`data.stream=helpers:broken_stream`: a valid config whose data cannot be read once its cell
    runs, as a corrupt data set's (a missing one is refused before a grid runs any cell)."""
    from continual.errors import DataError

    raise DataError("no data in this stream (tests/helpers.py:broken_stream)")
