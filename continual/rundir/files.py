"""Atomic file writing: every file of a run, a grid or a sweep is the old file or the whole new one.

A kill or a full disk while writing never leaves a torn result behind; a kill may leave the
temporary file, which the next run in that folder removes (`remove_stale_temps`).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from continual.errors import StorageError

# `atomic_write`'s temporary files: ".<name>." plus mkstemp's eight random characters
_TEMP = re.compile(r"\..+\.[a-z0-9_]{8}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def storage_error(path: Path, err: OSError, elsewhere: str = "output_dir") -> StorageError:
    """A failed write as one line: what could not be written, why, and what to do (`elsewhere`: the
    key that puts the file in another folder)."""
    return StorageError(
        f"cannot write '{path}' ({err.strerror or err}); free space or make the folder writable "
        f"(or choose another {elsewhere}), then run the same command again; files written before are intact"
    )


def atomic_write(path: Path, data: bytes | str, elsewhere: str = "output_dir") -> None:
    """Write `path` so that it is either the old file or the whole new one, never torn: a
    temporary file in the same folder (a rename across file systems would be a copy), fsync,
    rename, fsync of the folder. Created with the usual permissions (0666 less the umask).
    `elsewhere`: the key a failed write's message offers to move the file (`storage_error`)."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp creates 0600: colleagues could not read results
        with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)  # the rename itself survives a crash
        finally:
            os.close(folder)
    except OSError as err:
        raise storage_error(path, err, elsewhere) from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def remove_stale_temps(folder: Path) -> list[Path]:
    """Remove the temporary files that killed `atomic_write`s left in `folder` (not its subfolders);
    returns them. Only for a folder whose writer holds its lock: no write is in progress there."""
    stale = sorted(p for p in Path(folder).glob(".*") if _TEMP.fullmatch(p.name) and p.is_file())
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
