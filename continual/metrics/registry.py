"""The metric registry: every `Metric` a run measures, one file each in continual/metrics/.

A metric is a `Metric` subclass decorated with `@register`; its class declares everything the
platform needs (docs/metrics.md): its config switch and options (this module builds the
`metrics` config section from them), the `evaluate` output it reads, its metrics.json entries,
its logged scalars, its files and W&B tables, and its `continual compare` columns. The suite,
the printed summary and the loggers read them from here; nothing else names a metric.

Built-in metrics are the modules of `continual.metrics` (a new file there registers itself).
Order: the always-measured metrics first, then the switchable ones, each by key: the order of
metrics.json's entries.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import pkgutil

from continual.metrics.base import Column, Metric

_REGISTRY: dict[str, type[Metric]] = {}


def register(cls: type[Metric]) -> type[Metric]:
    """Class decorator: measure this metric in every run (when its switch is on)."""
    if cls.key in _REGISTRY and _REGISTRY[cls.key] is not cls:
        raise ValueError(f"metric '{cls.key}' is registered twice ({_REGISTRY[cls.key].__module__} and {cls.__module__})")
    _REGISTRY[cls.key] = cls
    return cls


def metrics() -> list[type[Metric]]:
    """Every metric, in metrics.json order."""
    _import_metric_modules()
    return sorted(_REGISTRY.values(), key=lambda m: (m.switch is not None, m.key))


@functools.cache
def _import_metric_modules() -> None:
    """Import every module of continual.metrics once: each registers its metric (scanning the folder
    on every call cost a sweep's validation a tenth of its time)."""
    import continual.metrics

    for info in pkgutil.iter_modules(continual.metrics.__path__):
        importlib.import_module(f"continual.metrics.{info.name}")


def config_class() -> type:
    """The `metrics` config section: each metric's switch (`metrics.<key>`), then their options."""
    return _config_class(tuple(metrics()))


@functools.lru_cache(maxsize=None)
def _config_class(registered: tuple[type[Metric], ...]) -> type:
    switches = [(m.key, bool, dataclasses.field(default=m.switch.default, metadata={"help": m.switch.help}))
                for m in registered if m.switch is not None]
    cls = dataclasses.make_dataclass("MetricsConfig", switches + [o for m in registered for o in m.options])
    cls.__doc__ = "Continual-learning metric callbacks (continual/metrics/); the accuracy matrix is always on."
    return cls


def build(cfg, stream, module) -> dict[str, Metric | None]:
    """Key -> the run's callback of each metric; None where its switch is off or the method does
    not return what it reads (its metrics.json entry is then null)."""
    out = {}
    for m in metrics():
        wanted = m.switch is None or cfg.metrics[m.key]
        out[m.key] = m.build(cfg, stream, module) if wanted and m.active(module) else None
    return out


def final_scalars(metrics_json: dict) -> dict:
    """Every metric's `final/...` numbers of a finished stream."""
    return {k: v for m in metrics() for k, v in m.final_scalars(metrics_json).items()}


def summary_lines(metrics_json: dict) -> list[str]:
    """Every metric's lines of the summary printed at the end of a run."""
    return [line for m in metrics() for line in m.summary(metrics_json)]


def compare_columns() -> list[Column]:
    """The `continual compare` table's columns, metric by metric."""
    return [c for m in metrics() for c in m.columns]
