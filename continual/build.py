"""Build a method from a config, and read a finished run back as a working method.

The one place that turns `cfg.method` into a class: the task loop (`continual.experiment`),
`load_run`, compare and the benchmarks build through it, and the run folder receives from it
the schema a resumed config is checked against, so `continual.rundir` never imports a method.
Methods, backbones and streams are imported on first use, so `continual --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

from omegaconf import DictConfig

from continual.errors import CheckpointError, ConfigError
from continual.rundir import layout
from continual.rundir.folder import read_state
from continual.rundir.results import read_metrics


def method_schema(cfg: DictConfig) -> DictConfig:
    """The typed defaults of a run of `cfg.method` (what keys a config of it has, and their defaults)."""
    from continual.config.load import schema
    from continual.methods import method_class

    return schema(method_class(cfg.method))


def build_method(cfg: DictConfig, stream):
    """The method `cfg.method` selects, over the backbone `cfg.backbone` describes."""
    from continual.methods import method_class
    from continual.models import base_task
    from continual.models.backbones import build_backbone
    from continual.scenarios import LabelSpace

    cls = method_class(cfg.method)
    n_out = LabelSpace(cfg.scenario, stream.task_classes, stream.n_classes).n_out
    common = dict(task_classes=stream.task_classes, n_classes=stream.n_classes, scenario=cfg.scenario, optim=cfg.optim,
                  class_il_train_outputs=cfg.class_il_train_outputs)
    _check_constructor(cls, cfg.method, common)
    base_task.check(cfg, stream)  # data.base_classes: refused before a backbone is built
    return cls.from_config(base_task.apply_base(cfg, stream, build_backbone(cfg, stream, n_out)), cfg, **common)


def _check_constructor(cls, spec: str, common: dict) -> None:
    """Your own method's `__init__` must take what `ContinualModule.from_config` passes (the network,
    its `hp` section when it has a Config, the common arguments): said in one line before anything
    is built, not as a TypeError traceback from inside the build. A method with its own
    `from_config` passes what it likes."""
    import inspect

    from continual.models.continual_module import ContinualModule

    if cls.from_config.__func__ is not ContinualModule.from_config.__func__:
        return
    kwargs = {**({"hp": None} if cls.Config is not None else {}), **common}
    try:
        inspect.signature(cls).bind(None, **kwargs)
    except TypeError as err:
        wanted = "net, hp, **kwargs" if cls.Config is not None else "net, **kwargs"
        raise ConfigError(f"method={spec}: {cls.__name__}{inspect.signature(cls)} cannot take what it is built with "
                          f"(net, {', '.join(kwargs)}): {err}; give its __init__ ({wanted}) and pass **kwargs on to "
                          f"super().__init__ (docs/methods.md)") from None


class LoadedRun(NamedTuple):
    cfg: DictConfig
    stream: object  # continual.data.streams.Stream: the features the method saw (continual.features)
    module: object  # the ContinualModule, in eval mode, as the run left it
    metrics: dict


def load_run(path: str | Path) -> LoadedRun:
    """A finished (or partly finished) run read back from its directory: its config, its stream
    (rebuilt from the config: the data must be where `data.root` says) and its trained module."""
    from continual.config import load_config
    from continual.features import load_stream

    path = Path(path)
    if not (path / layout.CONFIG).is_file() or not layout.state_path(path).is_file():
        raise ConfigError(
            f"'{path}' is not a run directory (no {layout.CONFIG} and {layout.CHECKPOINTS}/{layout.STATE}); "
            f"give the folder `continual fit` printed"
        )
    cfg = load_config(str(path / layout.CONFIG), ["resume=null", "output_dir=null"])
    state = read_state(path, cfg, method_schema(cfg))
    stream = load_stream(cfg)
    module = build_method(cfg, stream)
    module.load_state_dict(state["module"])
    try:
        metrics = read_metrics(path)
    except (OSError, ValueError):  # torn or missing: a finished run's state holds the text
        if not state.get("metrics_json"):
            raise CheckpointError(
                f"'{path}' has no readable {layout.METRICS}; rebuild it with `continual fit --config {path / layout.CONFIG} resume={path}`"
            ) from None
        metrics = json.loads(state["metrics_json"])
    return LoadedRun(cfg, stream, module.eval(), metrics)
