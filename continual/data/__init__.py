"""Data: raw sources, task streams, the tensor loader and the LightningDataModule."""

import os
from pathlib import Path

from continual.errors import StorageError


def cache_root(data) -> Path:
    """Where the platform's caches live (features, base backbones, generated data): `data.cache_dir`,
    else `data.root` (`data`: the run's data section)."""
    return Path(data.get("cache_dir") or data.root)


def check_cache_folder(folder: Path, what: str) -> None:
    """Refuse, before the work whose result it would keep (an extraction, a base network's training),
    a cache folder this process may not write, or one marked read-only for everyone (no write bit:
    a shared data set), which root could write anyway. Where `folder` does not exist yet, the
    nearest folder above it decides."""
    probe = Path(folder).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        why = f"'{probe}' is not a folder"
    elif not os.access(probe, os.W_OK):
        why = f"'{probe}' is not writable here"
    elif probe.stat().st_mode & 0o222 == 0:
        why = f"'{probe}' is marked read-only"
    else:
        return
    raise StorageError(f"cannot cache {what} under '{folder}': {why}; set data.cache_dir=<a writable folder> (data.root is only read)")
