"""The stream a method sees: each split of every task run once through the frozen extractor,
in batches on the accelerator, under inference mode, as float32 [N, D] features."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from continual.data import cache_root
from continual.data.streams import Stream
from continual.features import cache
from continual.models.backbones import build_extractor, extract

SPLITS = ("train", "val", "test")


def device_for(cfg: DictConfig) -> torch.device:
    """Where extraction runs: this process's GPU when the run may use one, else the CPU."""
    wanted = str(cfg.trainer.get("accelerator", "auto")).lower()
    if wanted in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def extract_features(cfg: DictConfig, stream: Stream, progress: bool = False) -> Stream:
    """The flat feature stream of `stream` under `backbone.name`: for `mlp`, the inputs themselves
    (flattened views, no copy); otherwise `features_stream` of the built extractor - under
    `data.base_classes`, the one trained on the base task (`continual.models.base_task`)."""
    from continual.models import base_task

    base_task.check(cfg, stream)
    if cfg.backbone.name == "mlp" and not cfg.backbone.get("weights"):
        return _with_inputs(stream, [{s: t.split(s)[0].flatten(1) for s in SPLITS} for t in stream.tasks])
    if cfg.data.get("base_classes") is not None:
        extractor = base_task.base_extractor(cfg, stream)
    else:
        extractor = build_extractor(cfg, stream.input_shape)
    return features_stream(stream, extractor, cfg, progress)


def features_stream(stream: Stream, extractor: nn.Module, cfg: DictConfig, progress: bool = False) -> Stream:
    """`stream` with every split's inputs replaced by `extractor`'s features (read from, or
    written to, the cache when `data.features=true`); labels, classes and tasks unchanged."""
    from tqdm import tqdm

    device = device_for(cfg)
    new = [{} for _ in stream.tasks]
    total = sum(len(t.split(s)[0]) for t in stream.tasks for s in SPLITS)
    with tqdm(total=total, desc=f"features ({cfg.backbone.name})", unit="sample", file=sys.stderr, disable=not progress) as bar:
        for split in SPLITS:
            inputs = [t.split(split)[0] for t in stream.tasks]
            feats, file = None, None
            if cfg.data.features:
                digest = cache.key(inputs, extractor, device)
                file = cache.path(cache_root(cfg.data), stream.name, split, cfg.backbone.name, digest)
                feats = cache.read(file, digest, [len(x) for x in inputs])
            if feats is None:
                feats = []
                for x in inputs:
                    feats.append(extract(extractor, x, cfg.data.eval_batch_size, device))
                    bar.update(len(x))
                if file is not None:
                    cache.write(file, digest, feats)
            else:
                bar.update(sum(len(x) for x in inputs))
            for t, f in enumerate(feats):
                new[t][split] = f
    return _with_inputs(stream, new)


def _with_inputs(stream: Stream, inputs: list[dict[str, torch.Tensor]]) -> Stream:
    """`stream` with task t's split s inputs `inputs[t][s]` ([N, D]); labels and classes kept."""
    tasks = [dataclasses.replace(t, **{f"x_{s}": x for s, x in split.items()}) for t, split in zip(stream.tasks, inputs)]
    width = tasks[0].x_train.shape[1]
    return dataclasses.replace(stream, tasks=tasks, n_features=width, input_shape=(width,))


def precompute(cfg: DictConfig) -> Path:
    """`continual features`: the stream's features of every split cached (`data.features=true`), with a
    progress bar on stderr; returns the cache folder."""
    from omegaconf import OmegaConf

    from continual.data.streams import build_stream
    from continual.data.streams.check import check_stream

    cfg = OmegaConf.merge(cfg, {"data": {"features": True}})
    stream = build_stream(cfg.data, cfg.seed)
    check_stream(stream, cfg.data.eval_split)
    extract_features(cfg, stream, progress=True)
    return cache_root(cfg.data) / cache.FOLDER
