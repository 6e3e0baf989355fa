"""What decides a stream's samples, known without reading them: the data keys that cut it, the
seed, the code that cuts it and its source files' identity (path, size, modification time, as the
stream registered them with `files=`). It keys every cache of something computed from a stream
(its features, the base-task backbone), so a cache hit never builds the stream, and a changed data
file or cutting code is a new key."""

from __future__ import annotations

import hashlib
import inspect
import json
import stat
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

# data keys that cannot change a stream's samples: where data and caches live, batching, which split is scored
SAMPLE_FREE = ("root", "cache_dir", "download", "batch_size", "eval_batch_size", "eval_split", "features")


def file_identity(path: str | Path) -> list | None:
    """[resolved path, size, mtime in ns] of a regular file (links followed), or None if there is none."""
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return [str(Path(path).resolve()), st.st_size, st.st_mtime_ns] if stat.S_ISREG(st.st_mode) else None


def stream_identity(data: DictConfig, seed: int) -> dict:
    """The data keys, the seed, a hash of the code that builds the stream (its function's file, the
    cutting and the sources) and its files' identities; `files` is None for a stream that names no
    files (your own) or whose files are not all there (building it then says what is missing)."""
    from continual.data import sources
    from continual.data.streams import STREAMS, cutting

    code = hashlib.sha256()
    for module in (_source_file(STREAMS.get(data.stream)), cutting.__file__, sources.__file__):
        code.update(Path(module).read_bytes() if module else b"?")
    named = STREAMS.facts(data.stream).get("files")
    files = [file_identity(f) for f in named(data)] if named else None
    keys = {k: v for k, v in OmegaConf.to_container(data, resolve=True).items() if k not in SAMPLE_FREE}
    return {"data": keys, "seed": seed, "code": code.hexdigest(), "files": None if files is None or None in files else files}


def stream_key(data: DictConfig, seed: int) -> str | None:
    """A hash of `stream_identity`, or None when its files are unknown: then only the stream's contents can key it."""
    identity = stream_identity(data, seed)
    return None if identity["files"] is None else hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def _source_file(fn) -> str | None:
    try:
        return inspect.getsourcefile(inspect.unwrap(fn))
    except TypeError:  # a callable without Python source
        return None
