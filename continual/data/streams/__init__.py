"""The stream registry: `data.stream=<name>` for the built-ins, `data.stream=<module>:<function>`
for your own (docs/streams.md).

A stream is one file of this package: a function `(cfg, seed) -> Stream` (cfg: the run's `data`
section) decorated with `@register("name")`. Its docstring's first line is its help in
`continual fit --help`; `source=` names the `backbone.pretrain.dataset` that is the stream's own
data (pretraining on it can show the backbone later tasks); `files=` a function of the data section
giving the files its data is read from (`continual.data.identity`: cache keys that never read them);
`requires=` one that raises the stream's own DataError when they are not there, reading none
(`require_files`). Installed packages add streams under
the entry-point group `continual.streams`. How a data set is cut into tasks is shared:
`continual.data.streams.cutting`.
"""

from __future__ import annotations

from omegaconf import DictConfig

from continual.data.streams.cutting import Stream, Task
from continual.errors import ConfigError
from continual.registry import Registry

STREAMS = Registry("stream", "data.stream", ("continual.data.streams",), "continual.streams",
                   user="<module>:<function>", what="a function (cfg, seed) -> Stream", takes=2)
register = STREAMS.register

__all__ = ["STREAMS", "Stream", "Task", "build_stream", "register", "require_files"]


def require_files(cfg: DictConfig) -> None:
    """The stream's one-line DataError when its source files are not there, read from none (the
    check it registered with `requires=`): a grid runs it before any cell, whose every cell would
    fail alike. Nothing for a stream that registered none (shipped or generated data, your own)
    or may fetch them (`data.download=true`)."""
    requires = STREAMS.facts(cfg.stream).get("requires")
    if requires is not None and not cfg.download:
        requires(cfg)


def build_stream(cfg: DictConfig, seed: int) -> Stream:
    """The stream `cfg.stream` selects (cfg: a `DataConfig`)."""
    stream = STREAMS.get(cfg.stream)(cfg, seed)
    if not isinstance(stream, Stream):
        raise ConfigError(f"data.stream='{cfg.stream}' returned {type(stream).__name__}, not a continual Stream")
    return stream
