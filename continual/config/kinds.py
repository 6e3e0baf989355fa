"""Which of the platform's three YAML files a mapping is: a run config, a compare grid or a W&B sweep.

A file given to the wrong command would otherwise fail on its first foreign key ("unknown key
'backbone' in compare config", "method='grid' is not valid"), which names a symptom, not the
mistake; each loader asks here first and names the command that runs the file.
"""

from __future__ import annotations

import dataclasses

from continual.errors import ConfigError

KINDS = {
    "run": ("a run config", "continual fit --config {}"),
    "compare": ("a compare grid", "continual compare --config {}"),
    "sweep": ("a W&B sweep file", "continual sweep {}"),
}


def kind_of(raw: dict) -> str | None:
    """The kind of a loaded YAML mapping, or None when it shows none of their marks. A sweep is
    told by its search method (its `method` key is also a run key) or by `parameters` with W&B's
    `metric` or `command` (one stray key is more likely a run config's typo: `metric` for
    `metrics`), a compare grid by its `methods` table, a run config by any top-level run key."""
    from continual.config.schema import Config

    if raw.get("method") in ("grid", "random", "bayes") or ("parameters" in raw and {"metric", "command"} & set(raw)):
        return "sweep"
    if isinstance(raw.get("methods"), dict):
        return "compare"
    if set(raw) & {f.name for f in dataclasses.fields(Config)}:
        return "run"
    return None


def expect_kind(raw: dict, path, expected: str) -> None:
    """A one-line ConfigError when `raw` (read from `path`) is another kind of file than `expected`."""
    kind = kind_of(raw)
    if kind is not None and kind != expected:
        what, command = KINDS[kind]
        raise ConfigError(f"'{path}' is {what}, not {KINDS[expected][0]}; run it with `{command.format(path)}`")
