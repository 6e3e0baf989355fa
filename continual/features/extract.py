"""The stream a method sees: each split of every task run once through the frozen extractor,
in batches on the accelerator, under inference mode, as float32 [N, D] features; with
`data.features=true`, read from the cache without building the raw stream when every split is there."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Callable

import torch
from omegaconf import DictConfig
from torch import nn

from continual.data import cache_root, check_cache_folder
from continual.data.identity import stream_key
from continual.data.streams import Stream, build_stream
from continual.data.streams.cutting import check_task
from continual.errors import ConfigError
from continual.features import cache
from continual.features.cache import SPLITS
from continual.models.backbones import build_extractor, extract


def device_for(cfg: DictConfig) -> torch.device:
    """Where extraction runs: this process's GPU when the run may use one, else the CPU."""
    wanted = str(cfg.trainer.get("accelerator", "auto")).lower()
    if wanted in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def load_stream(cfg: DictConfig, check: Callable[[Stream], None] | None = None, progress: bool = False) -> Stream:
    """The stream `cfg` gives a method (the task loop, `load_run`, `continual features`): every
    split found in the feature cache, or `build_stream`, `check`ed (before any extraction), then
    `extract_features`. `check` also sees a cached stream: it holds the same labels, classes and meta."""
    check = check or (lambda stream: None)
    found = _cached(cfg) if cfg.data.features and _extracts(cfg) else {}
    if found and all(found.values()):
        stream = cache.assemble(found)
        for task in stream.tasks:  # as building it would: data.eval_split is not in the key
            check_task(stream.name, task, cfg.data)
        check(stream)
        return stream
    stream = build_stream(cfg.data, cfg.seed)
    check(stream)
    return extract_features(cfg, stream, progress, found)


def extract_features(cfg: DictConfig, stream: Stream, progress: bool = False, found: dict | None = None) -> Stream:
    """The flat feature stream of `stream` (`build_stream(cfg.data, cfg.seed)`) under `backbone.name`:
    for `mlp`, the inputs themselves (flattened views, no copy); otherwise `features_stream` of the
    built extractor - under `data.base_classes`, the one trained on the base task (`found`: the
    cache entries `load_stream` already read, by split)."""
    from continual.models import base_task

    base_task.check(cfg, stream)
    if not _extracts(cfg):
        return _with_inputs(stream, [{s: t.split(s)[0].flatten(1) for s in SPLITS} for t in stream.tasks])
    return features_stream(stream, extractor_for(cfg, stream.input_shape, stream), cfg, progress, found)


def extractor_for(cfg: DictConfig, input_shape: tuple[int, ...], stream: Stream | None = None) -> nn.Module | None:
    """The run's frozen extractor; under `data.base_classes` the base task's, trained on `stream` if
    not cached (None when it is not and no stream is given)."""
    from continual.models import base_task

    if cfg.data.get("base_classes") is None:
        return build_extractor(cfg, input_shape)
    state = base_task.read_base(cfg) if stream is None else base_task.base_backbone(cfg, stream)
    return None if state is None else base_task.base_extractor(cfg, input_shape, state)


def features_stream(stream: Stream, extractor: nn.Module, cfg: DictConfig, progress: bool = False, found: dict | None = None) -> Stream:
    """`stream` with every split's inputs replaced by `extractor`'s features (with `data.features=true`
    read from, or written to, the cache; `found`: the entries already read, by split); labels,
    classes and tasks unchanged. Non-finite features are refused before anything is cached."""
    from tqdm import tqdm

    device = device_for(cfg)
    mark = cache.fingerprint(extractor) if cfg.data.features else None
    stream_id = (stream_key(cfg.data, cfg.seed) or cache.contents_key(stream)) if cfg.data.features else None
    new = [{} for _ in stream.tasks]
    total = sum(len(t.split(s)[0]) for t in stream.tasks for s in SPLITS)
    with tqdm(total=total, desc=f"features ({cfg.backbone.name})", unit="sample", file=sys.stderr, disable=not progress) as bar:
        for split in SPLITS:
            inputs = [t.split(split)[0] for t in stream.tasks]
            feats = None
            if stream_id is not None:
                digest, file = _file(cfg, stream_id, split, device)
                entry = found[split] if found and split in found else cache.read(file, digest)
                if entry is not None and entry["extractor"] == mark and [len(f) for f in entry["features"]] == [len(x) for x in inputs]:
                    feats = entry["features"]
            if feats is None:
                if stream_id is not None:
                    check_cache_folder(file.parent, f"the {split} features")
                feats = []
                for t, x in enumerate(inputs):
                    feats.append(_finite(extract(extractor, x, cfg.data.eval_batch_size, device), cfg, t, split))
                    bar.update(len(x))
                if stream_id is not None:
                    cache.write(file, digest, mark, stream, split, feats)
            else:
                bar.update(sum(len(x) for x in inputs))
            for t, f in enumerate(feats):
                new[t][split] = f
    return _with_inputs(stream, new)


def _cached(cfg: DictConfig) -> dict:
    """Each split's cache entry (None where missing, corrupt or of another extractor), read without
    building the raw stream; {} for a stream that names no source files."""
    sid = stream_key(cfg.data, cfg.seed)
    if sid is None:
        return {}
    device = device_for(cfg)
    found = {split: cache.read(*reversed(_file(cfg, sid, split, device))) for split in SPLITS}
    if all(found.values()):  # the extractor's fingerprint: built for the raw samples' shape the files recorded
        extractor = extractor_for(cfg, tuple(found["train"]["stream"]["input_shape"]))
        mark = cache.fingerprint(extractor) if extractor is not None else None
        found = {s: e if e["extractor"] == mark else None for s, e in found.items()}
    return found


def _file(cfg: DictConfig, stream_id: str, split: str, device: torch.device) -> tuple[str, Path]:
    """`split`'s cache key and file."""
    digest = cache.key(cfg, stream_id, split, device)
    return digest, cache.path(cache_root(cfg.data), cfg.data.stream, split, cfg.backbone.name, digest)


def _extracts(cfg: DictConfig) -> bool:
    """Whether the run has an extractor to run: not the bare `mlp` (the inputs are its features)."""
    return cfg.backbone.name != "mlp" or bool(cfg.backbone.get("weights"))


def _finite(f: torch.Tensor, cfg: DictConfig, task: int, split: str) -> torch.Tensor:
    if not torch.isfinite(f).all():
        b, K = cfg.backbone, cfg.data.get("base_classes")
        weights = f"the base task's backbone (data.base_classes={K})" if K is not None else f"backbone.weights={b.get('weights') or 'none (random)'}"
        raise ConfigError(f"backbone.name={b.name} with {weights} gives non-finite features (NaN or inf) on task {task + 1}'s {split} split; "
                          f"fix the extractor or give other backbone.weights (nothing was cached)")
    return f


def _with_inputs(stream: Stream, inputs: list[dict[str, torch.Tensor]]) -> Stream:
    """`stream` with task t's split s inputs `inputs[t][s]` ([N, D]); labels and classes kept."""
    tasks = [dataclasses.replace(t, **{f"x_{s}": x for s, x in split.items()}) for t, split in zip(stream.tasks, inputs)]
    width = tasks[0].x_train.shape[1]
    return dataclasses.replace(stream, tasks=tasks, n_features=width, input_shape=(width,))


def precompute(cfg: DictConfig) -> Path:
    """`continual features`: the stream's features of every split cached (`data.features=true`), with a
    progress bar on stderr; returns the cache folder."""
    from omegaconf import OmegaConf

    from continual.data.streams.check import check_stream

    cfg = OmegaConf.merge(cfg, {"data": {"features": True}})
    load_stream(cfg, lambda stream: check_stream(stream, cfg.data.eval_split), progress=True)
    return cache_root(cfg.data) / cache.FOLDER
