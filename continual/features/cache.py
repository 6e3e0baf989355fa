"""The feature cache: one file per (stream split, extractor), named by a content hash of what
decides the features: the split's input tensors, the extractor's architecture (its input transform
included) and weights (its state), the device kind and torch's version. Any change is a new key,
so a stale file is never read; the same inputs and extractor in any later run, compare cell or
sweep trial find it. Files are written atomically; an unreadable one is rebuilt with a warning."""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from pathlib import Path

import torch
from torch import nn

from continual.models.backbones import state_hash
from continual.rundir.files import atomic_write

FOLDER = "features"
VERSION = 1  # of the file's layout


def key(inputs: list[torch.Tensor], extractor: nn.Module, device: torch.device) -> str:
    h = hashlib.sha256(f"v{VERSION} torch {torch.__version__} {device.type}\n{extractor!r}\n{state_hash(extractor)}\n".encode())
    for x in inputs:
        h.update(f"{tuple(x.shape)} {x.dtype}\n".encode())
        h.update(x.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())  # the buffer itself, any dtype: no copy
    return h.hexdigest()


def path(root: str, stream: str, split: str, backbone: str, digest: str) -> Path:
    """`<root>/features/<stream>-<split>-<backbone>-<hash>.pt` (names made file-safe)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{stream}-{split}-{backbone}")
    return Path(root) / FOLDER / f"{safe}-{digest[:20]}.pt"


def read(file: Path, digest: str, rows: list[int]) -> list[torch.Tensor] | None:
    """The cached features of each task (`rows[t]` samples each), or None: no file, or a corrupt
    one (then a one-line warning: it is rebuilt)."""
    if not file.is_file():
        return None
    try:
        data = torch.load(file, map_location="cpu", weights_only=True)
        feats = data["features"]
        if data["key"] != digest or [len(f) for f in feats] != rows or any(f.ndim != 2 or f.dtype != torch.float32 for f in feats):
            raise ValueError("its contents do not match its name")
        return feats
    except Exception as err:
        warnings.warn(f"feature cache file {file} is unreadable or corrupt ({type(err).__name__}: {err}); rebuilding it", stacklevel=2)
        return None


def write(file: Path, digest: str, feats: list[torch.Tensor]) -> None:
    buf = io.BytesIO()
    torch.save({"key": digest, "features": feats}, buf)
    atomic_write(file, buf.getvalue())
