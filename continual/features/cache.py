"""The feature cache: one file per (stream, split, extractor) holding the split's features, its
labels and the stream's outline (tasks, classes, meta), so a run that finds every split cached
never builds the raw stream.

A file is named by a key that reads no data: the stream's identity (`continual.data.identity`:
data keys, seed, source files' path, size and mtime, the cutting code; for a stream that names no
files, a hash of its contents), the split, the extractor's name and weights file (its identity),
the base-task backbone's key, the device kind and torch's version. Inside it is the extractor's
fingerprint (architecture, input transform included, and whole state), checked against the run's
extractor before the file is used, so a file of other weights is never read as this one's. Files
are written atomically and read memory-mapped; an unreadable one is rebuilt with a warning."""

from __future__ import annotations

import hashlib
import io
import json
import re
import warnings
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from continual.data.identity import file_identity
from continual.data.streams import Stream, Task
from continual.models.backbones import state_hash
from continual.rundir.files import atomic_write

FOLDER = "features"
VERSION = 2  # of the file's layout and key
SPLITS = ("train", "val", "test")


def key(cfg: DictConfig, stream_id: str, split: str, device: torch.device) -> str:
    """The name of `split`'s file for the stream `stream_id` under the run's extractor."""
    from continual.models import base_task

    weights = cfg.backbone.get("weights")
    base = cfg.data.get("base_classes") is not None
    what = {"version": VERSION, "torch": torch.__version__, "device": device.type, "stream": stream_id, "split": split,
            "backbone": cfg.backbone.name, "weights": weights, "weights_file": file_identity(weights) if weights else None,
            "base": base_task.cache_key(cfg) if base else None}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def contents_key(stream: Stream) -> str:
    """A hash of everything in `stream`: the identity of a stream that names no source files."""
    h = hashlib.sha256(json.dumps(outline(stream), sort_keys=True, default=repr).encode())
    for task in stream.tasks:
        for split in SPLITS:
            for x in task.split(split):
                h.update(f"{tuple(x.shape)} {x.dtype}\n".encode())
                h.update(x.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())  # the buffer itself, any dtype
    return h.hexdigest()


def fingerprint(extractor: nn.Module) -> str:
    return hashlib.sha256(f"{extractor!r}\n{state_hash(extractor)}".encode()).hexdigest()


def outline(stream: Stream) -> dict:
    """What a stream is besides its tensors."""
    return {"name": stream.name, "n_classes": stream.n_classes, "meta": stream.meta, "input_shape": list(stream.input_shape),
            "tasks": [{"id": t.id, "classes": t.classes, "labels": t.labels} for t in stream.tasks]}


def path(root: str, stream: str, split: str, backbone: str, digest: str) -> Path:
    """`<root>/features/<stream>-<split>-<backbone>-<hash>.pt` (names made file-safe)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{stream}-{split}-{backbone}")
    return Path(root) / FOLDER / f"{safe}-{digest[:20]}.pt"


def read(file: Path, digest: str) -> dict | None:
    """The file's entry ({key, extractor, stream, features, labels}; tensors memory-mapped), or None:
    no file, or a corrupt one (then a one-line warning: it is rebuilt)."""
    if not file.is_file():
        return None
    try:
        entry = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        feats, labels = entry["features"], entry["labels"]
        if (entry["key"] != digest or not len(feats) == len(labels) == len(entry["stream"]["tasks"])
                or any(f.ndim != 2 or f.dtype != torch.float32 or y.shape != (len(f),) or y.dtype != torch.long for f, y in zip(feats, labels))):
            raise ValueError("its contents do not match its name")
        return entry
    except Exception as err:
        warnings.warn(f"feature cache file {file} is unreadable or corrupt ({type(err).__name__}: {err}); rebuilding it", stacklevel=2)
        return None


def write(file: Path, digest: str, extractor: str, stream: Stream, split: str, feats: list[torch.Tensor]) -> None:
    labels = [t.split(split)[1].clone() for t in stream.tasks]  # a view would save its whole storage
    buf = io.BytesIO()
    torch.save({"key": digest, "extractor": extractor, "stream": outline(stream), "features": feats, "labels": labels}, buf)
    atomic_write(file, buf.getvalue(), elsewhere="data.cache_dir")


def assemble(entries: dict[str, dict]) -> Stream:
    """The feature stream of cached `entries` (one per split)."""
    shape = entries["train"]["stream"]
    tasks = [Task(t["id"], t["classes"], t["labels"], *(entries[s][k][i] for s in SPLITS for k in ("features", "labels")))
             for i, t in enumerate(shape["tasks"])]
    width = tasks[0].x_train.shape[1]
    return Stream(shape["name"], tasks, width, shape["n_classes"], shape["meta"], input_shape=(width,))
