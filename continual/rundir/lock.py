"""The lock a run's folder is held by (`.continual.lock`, an flock the system drops when the
process dies): one writer per folder, and who that is for a grid runner that meets a folder in use.

Apart from `continual.rundir.folder`, so a grid runner can ask without importing what a run needs."""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from continual.errors import ConfigError
from continual.rundir import layout

_HELD: dict[Path, int] = {}  # run directory -> the open, flocked lock file of this process


def hold(path: Path) -> None:
    """Hold `path/LOCK` until this process ends or releases it; refuse if another process holds it."""
    key = path.resolve()
    if key in _HELD:  # an earlier run of this process in the same folder has ended (or failed)
        os.close(_HELD.pop(key))
    lock = path / layout.LOCK
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise ConfigError(
            f"output_dir '{path}' is in use by another continual run ({holder}); wait for it to end or choose another output_dir"
        ) from None
    _HELD[key] = fd  # held from here on: a failed write below must not leave an unlisted lock behind
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())


def holder(path: Path) -> str | None:
    """Who holds `path`'s lock ("pid 12 on host"), if another live process does; None otherwise.

    A grid runner asks before it runs a cell, so a cell another process runs is "running", not failed."""
    if path.resolve() in _HELD:  # this process's own earlier run there: `hold` takes it over
        return None
    try:
        fd = os.open(path / layout.LOCK, os.O_RDONLY)
    except OSError:  # no lock file: no run has started there
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        return os.read(fd, 200).decode(errors="replace").strip() or "another process"
    finally:
        os.close(fd)


def release(path: Path) -> None:
    fd = _HELD.pop(path.resolve(), None)
    if fd is not None:
        os.close(fd)
