"""The base-task protocol (`data.base_classes=K`): the backbone is trained on the stream's base task
(task 0, its first K classes) before the continual loop, then frozen.

This is the exemplar-free class-incremental standard (FeTrIL, FeCAM, PASS "B50") and the honest
"frozen pretrained" setting: the backbone has seen data of the stream's domain, never a class still
to come. It trains the extractor and the MLP on task 0's training split (`train_supervised`, with
`backbone.pretrain.epochs/lr/batch_size`), keeps the epoch of the best accuracy on task 0's own
validation split, and caches the result under `<data.cache_dir or data.root>/base/<key>.pt`, keyed by a hash
of everything that decides those weights (the stream's identity, `continual.data.identity`, and the
backbone section), so later runs, compare cells and sweep trials reuse it; a run reads the file once.
The method is then built on those weights and the loop runs over every task, task 0 included.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from continual.data import cache_root, check_cache_folder
from continual.data.identity import file_identity, stream_identity
from continual.errors import ConfigError
from continual.models.backbones import build_extractor
from continual.models.backbones import mlp as mlp_backbone
from continual.models.mlp import MLP
from continual.rundir.files import atomic_write

VERSION = 2  # bump when the training below changes: old cache files are then not reused


def check(cfg: DictConfig, stream) -> None:
    """A one-line ConfigError for a base task that cannot be: not a class-split stream, another
    source of backbone weights, no validation split to select on. Nothing without one."""
    from continual.data.streams.check import check_class_split

    K = cfg.data.get("base_classes")
    if K is None:
        return
    check_class_split(cfg.data, stream)
    if cfg.backbone.init != "random":
        raise ConfigError(f"data.base_classes={K} trains the backbone on the base task, and backbone.init={cfg.backbone.init} "
                          f"loads other weights; drop backbone.init={cfg.backbone.init} (or data.base_classes)")
    if not len(stream.tasks[0].y_val):
        raise ConfigError(f"data.base_classes={K} selects the base backbone on the base task's validation split, which "
                          f"data.val_fraction={cfg.data.val_fraction} leaves empty; raise data.val_fraction")


def cache_key(cfg: DictConfig) -> str:
    """A hash of what decides the base backbone: the stream's identity and the backbone section."""
    what = {"version": VERSION, "stream": stream_identity(cfg.data, cfg.seed), "backbone": OmegaConf.to_container(cfg.backbone, resolve=True)}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def cache_path(cfg: DictConfig) -> Path:
    return cache_root(cfg.data) / "base" / f"{cache_key(cfg)}.pt"


def train_base(cfg: DictConfig, stream) -> tuple[nn.Module, MLP, float]:
    """The extractor and MLP (a K-class head) trained on the base task; its best val accuracy."""
    task, b = stream.tasks[0], cfg.backbone
    index = torch.full((stream.n_classes,), -1, dtype=torch.long)
    index[torch.tensor(task.classes)] = torch.arange(len(task.classes))  # global class -> base-head output
    with torch.random.fork_rng():  # the run's global RNG (the method's init) is the same with or without a cache hit
        torch.manual_seed(cfg.seed)
        extractor = build_extractor(cfg, stream.input_shape)  # frozen, in eval mode: thawed to be trained here
        with torch.no_grad():
            width = extractor(task.x_train[:1]).shape[1]  # the MLP reads the extractor's features
        extractor.requires_grad_(True).train()
        net = MLP(width, list(b.hidden), len(task.classes), b.activation)
        acc = mlp_backbone.train_supervised(extractor, net, (task.x_train, index[task.y_train]), b.pretrain, cfg.seed,
                                            val=(task.x_val, index[task.y_val]))
    return extractor, net, acc


def read_base(cfg: DictConfig) -> dict | None:
    """The cached base backbone's state ({"extractor", "mlp", "val_accuracy"}), or None if not cached."""
    path = cache_path(cfg)
    identity = file_identity(path)
    return None if identity is None else _load(str(path), tuple(identity))


@functools.lru_cache(maxsize=1)
def _load(path: str, identity: tuple) -> dict:
    """One read per file version (`identity`): the features and the method's MLP both take from it."""
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def base_backbone(cfg: DictConfig, stream) -> dict:
    """`read_base`, or on a miss the base backbone trained on `stream` (the raw stream) and written."""
    state = read_base(cfg)
    if state is not None:
        return state
    check_cache_folder(cache_path(cfg).parent, "the base task's backbone")
    extractor, net, acc = train_base(cfg, stream)
    state = {"extractor": extractor.state_dict(), "mlp": net.state_dict(), "val_accuracy": acc}
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write(cache_path(cfg), buf.getvalue(), elsewhere="data.cache_dir")
    return state


def base_extractor(cfg: DictConfig, input_shape: tuple[int, ...], state: dict) -> nn.Module:
    """The frozen extractor of the base backbone `state`, for samples of `input_shape` (images as
    images), for the features every method then sees (`continual.features`)."""
    extractor = build_extractor(cfg, input_shape)
    extractor.load_state_dict(state["extractor"])
    return extractor


def apply_base(cfg: DictConfig, stream, net: nn.Module) -> nn.Module:
    """`net` (the method's network) with the base backbone's hidden layers, under `data.base_classes`
    (`check` first); its head stays as built: it is `n_out` wide, the base head K wide."""
    if cfg.data.get("base_classes") is None:
        return net
    hidden = {k[len("hidden."):]: v for k, v in base_backbone(cfg, stream)["mlp"].items() if k.startswith("hidden.")}
    net.hidden.load_state_dict(hidden)
    return net
