"""`backbone.name=mlp`: no extractor (raw inputs, flattened, reach the MLP as they are); and the MLP
every backbone ends in: Linear -> activation blocks (`backbone.hidden`, `backbone.activation`) and a
linear head, its weights random, pretrained (`backbone.pretrain.*`) or from a checkpoint.
"""

from __future__ import annotations

import copy
import warnings

import torch
from omegaconf import DictConfig
from torch import nn

from continual.data import sources
from continual.data.streams import STREAMS, Stream
from continual.errors import CheckpointError, ConfigError
from continual.models.backbones import build_extractor, extract, read_state_dict, register
from continual.models.mlp import MLP


def _pretrain_data(cfg: DictConfig, stream: Stream, seed: int):
    p = cfg.backbone.pretrain
    if p.dataset in ("digits", "digits28"):
        x, y, _, _ = sources.load_digits(0.2, seed)
        if p.dataset == "digits28":
            x = sources.at_mnist_layout(x)
    else:
        x, y, _, _ = sources.load_mnist(cfg.data.root, cfg.data.download)
    x = extract(build_extractor(cfg, tuple(x.shape[1:])), x, cfg.data.eval_batch_size)  # the stream's extractor: the MLP sees its features
    if x.shape[1] != stream.n_features:
        raise ConfigError(
            f"backbone.pretrain.dataset={p.dataset} has {x.shape[1]} features (after backbone.name={cfg.backbone.name}) but stream "
            f"{stream.name} has {stream.n_features}; pretrain on a data set of the same input size"
        )
    classes = sorted(set(p.classes)) if p.classes is not None else sorted(y.unique().tolist())
    keep = torch.isin(y, torch.tensor(classes))
    x, y = x[keep], y[keep]
    if STREAMS.facts(stream.name).get("source") == p.dataset:  # the stream's own data
        # the first task's classes are fair game (its data is there before anything is frozen:
        # "first-task pretraining"); any later task's classes mean the backbone saw the future
        later = {c for task in stream.tasks[1:] for c in task.labels}
        overlap = sorted(later & set(classes))
        if overlap:
            warnings.warn(
                f"backbone pretraining on {p.dataset} classes {overlap} overlaps the stream's own "
                f"later-task classes: the backbone has seen future tasks, so forgetting and transfer are "
                f"optimistic (backbone.pretrain.classes={sorted(stream.tasks[0].labels)} pretrains on the first task only)",
                stacklevel=2,
            )
    remap = torch.full((int(y.max()) + 1,), -1, dtype=torch.long)
    remap[torch.tensor(classes)] = torch.arange(len(classes))
    return x, remap[y], len(classes)


def train_supervised(extractor: nn.Module, net: MLP, train, p, seed: int, val=None) -> float | None:
    """A plain supervised loop over `extractor` then `net` on `train` = (x, y) (Adam, `p.lr`,
    `p.epochs` epochs of shuffled `p.batch_size` batches: a setup stage, not part of the continual
    experiment). With `val` = (x, y), the epoch of the best validation accuracy (the first, on
    ties) is kept and its accuracy returned: model selection on held-out data, never on test."""
    x, y = train
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(extractor, net)
    opt = torch.optim.Adam(model.parameters(), lr=p.lr)
    best, kept = None, None
    for _ in range(p.epochs):
        for idx in torch.randperm(len(y), generator=gen).split(p.batch_size):
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if val is not None:
            acc = _accuracy(model, *val)
            if best is None or acc > best:
                best, kept = acc, copy.deepcopy(model.state_dict())
    if kept is not None:
        model.load_state_dict(kept)
    return best


@torch.no_grad()
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 8192) -> float:
    model.eval()
    correct = sum(int((model(xb).argmax(1) == yb).sum()) for xb, yb in zip(x.split(batch), y.split(batch)))
    model.train()
    return correct / len(y)


def pretrain(cfg: DictConfig, stream: Stream, seed: int) -> MLP:
    """Supervised pretraining of the whole MLP on `backbone.pretrain.dataset` (`train_supervised`)."""
    x, y, n_classes = _pretrain_data(cfg, stream, seed)
    b = cfg.backbone
    torch.manual_seed(seed)
    net = MLP(stream.n_features, list(b.hidden), n_classes, b.activation)
    train_supervised(nn.Flatten(), net, (x, y), b.pretrain, seed)
    return net


def load_checkpoint(path: str, net: MLP) -> None:
    """Load hidden layers from a state_dict file (`weights_only`); the head is kept if it fits."""
    state = read_state_dict(path, "backbone.checkpoint", "the path of a saved backbone.pt")
    own = net.state_dict()
    hidden = {k: v for k, v in state.items() if k.startswith("hidden.")}
    for k, v in own.items():
        if k.startswith("hidden.") and (k not in hidden or hidden[k].shape != v.shape):
            got = tuple(hidden[k].shape) if k in hidden else "missing"
            raise CheckpointError(
                f"backbone.checkpoint '{path}' does not fit backbone.hidden={net.widths} "
                f"(input {net.n_in}): '{k}' is {got}, expected {tuple(v.shape)}"
            )
    head = {k: v for k, v in state.items() if k.startswith("head.") and k in own and own[k].shape == v.shape}
    net.load_state_dict({**own, **hidden, **head})


@register("mlp")
def mlp(cfg: DictConfig, input_shape: tuple[int, ...]) -> nn.Module:
    """no extractor: the raw inputs, flattened, are the MLP's (backbone.hidden) inputs"""
    return nn.Flatten()


def build_mlp(cfg: DictConfig, stream: Stream, n_out: int) -> MLP:
    """The MLP (backbone.hidden, backbone.activation) on the stream's features; weights: backbone.init=random|pretrain|checkpoint."""
    b = cfg.backbone
    net = MLP(stream.n_features, list(b.hidden), n_out, b.activation)
    if b.init == "pretrain":
        trained = pretrain(cfg, stream, cfg.seed)
        net.hidden.load_state_dict(trained.hidden.state_dict())
    elif b.init == "checkpoint":
        load_checkpoint(b.checkpoint, net)
    return net
