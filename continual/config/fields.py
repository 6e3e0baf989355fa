"""Config fields that carry their own rules: the valid values (`choice`), a range (`positive`,
`at_least`, `in_range`, `each`) and whether a key may change when a run resumes (`volatile`).

A rule lives in the field's metadata, next to the field's default and comment, so the schema
and each method's `Config` are the one place a key's valid values are written. `check_fields`
walks a config against its dataclass and raises the one-line `ConfigError` naming the key, the
value and the fix; `continual config keys` shows `describe(field)` beside each key, and
`continual.rundir.state` reads the volatile keys (`volatile_keys`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from continual.errors import ConfigError
from continual.registry import did_you_mean, registry_at


@dataclass(frozen=True)
class Rule:
    """A test of a value and what it asks for in words: `key=value must be <words> (<note>)`."""

    test: Callable[[Any], bool]
    words: str  # "a positive integer", "in [0, 1)", ">= 0"
    note: str = ""  # what a boundary or null means, e.g. "0: checkpoint only at task ends"
    example: bool = True  # end the error with "e.g. key=<default>"


def _field(default, rule: Rule | None = None, volatile: bool = False, help: str | None = None, **kw):
    """`help`: the key's meaning, for a field without a comment (one built by `dataclasses.make_dataclass`)."""
    metadata = {**({"rule": rule} if rule else {}), **({"volatile": True} if volatile else {}), **({"help": help} if help else {})}
    if "default_factory" in kw:
        return field(metadata=metadata, **kw)
    return field(default=default, metadata=metadata, **kw)


def choice(default, choices, **kw):
    """One of `choices`."""
    return field(default=default, metadata={"choices": tuple(choices)}, **kw)


def plugin(default: str, registry: str):
    """A key naming an entry of `registry` ("module:attribute" of a `continual.registry.Registry`,
    imported only when checked: a stream, a backbone) or your own code as <module>:<attr>."""
    return field(default=default, metadata={"registry": registry})


def volatile(default=None, **kw):
    """A key that cannot change results (where files go, what is logged): it may differ on resume."""
    return _field(default, volatile=True, **kw)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(value) -> bool:
    return _number(value) and math.isfinite(value)


def in_range(lo, hi, default, *, lo_open: bool = False, hi_open: bool = False, integer: bool = False, note: str = "", **kw):
    """`lo <= value <= hi` (`lo_open`/`hi_open`: strict); `integer` keys read it `lo..hi`."""
    def test(v):
        return _number(v) and (lo < v if lo_open else lo <= v) and (v < hi if hi_open else v <= hi)
    words = f"in {lo}..{hi}" if integer else f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    return _field(default, Rule(test, words, note, example=False), **kw)


def positive(default, *, finite: bool = False, integer: bool = False, note: str = "", **kw):
    """`value > 0`; `integer`: a whole number >= 1; `finite`: not inf."""
    if integer:
        return _field(default, Rule(lambda v: _number(v) and v >= 1, "a positive integer", note, example=False), **kw)
    ok = _finite if finite else _number
    return _field(default, Rule(lambda v: ok(v) and v > 0, f"a positive {'finite ' if finite else ''}number", note), **kw)


def at_least(lo, default, *, finite: bool = False, note: str = "", **kw):
    """`value >= lo`; `finite`: not inf."""
    ok = _finite if finite else _number
    return _field(default, Rule(lambda v: ok(v) and v >= lo, f"{'a finite number ' if finite else ''}>= {lo:g}", note), **kw)


def each(item: dataclasses.Field, words: str, *, length: int | None = None, **kw):
    """A list whose every item passes `item`'s rule (a field made by the helpers above), non-empty,
    with `length` items if given."""
    inner = item.metadata["rule"].test

    def test(v):
        return len(v) > 0 and (length is None or len(v) == length) and all(inner(x) for x in v)
    return _field(None, Rule(test, words), **kw)


def one_or_each(item: dataclasses.Field, words: str, **kw):
    """One value that passes `item`'s rule, or a non-empty list of them (a count for every task, or one per task)."""
    inner = item.metadata["rule"].test

    def test(v):
        return inner(v) or (isinstance(v, (list, tuple)) and len(v) > 0 and all(inner(x) for x in v))
    return _field(item.default, Rule(test, words, example=False), **kw)


# -- the one checker ----------------------------------------------------------------------------
def _example(value) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(map(str, value)) + "]"
    return str(value)


def _default(f: dataclasses.Field):
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _plain(value):
    """A config node's value as Python (a ListConfig as a list)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def check_value(f: dataclasses.Field, key: str, value) -> None:
    """Raise the one-line ConfigError if `value` breaks `f`'s choices or rule (null passes a rule: Optional keys)."""
    if "choices" in f.metadata and value not in f.metadata["choices"]:
        valid = [c for c in f.metadata["choices"] if c is not None]  # null, where valid, goes without saying
        raise ConfigError(f"{key}='{value}' is not valid{did_you_mean(value, valid)}; choose one of: {', '.join(valid)}")
    if "registry" in f.metadata:  # a built-in's name or user code that imports
        registry_at(f.metadata["registry"]).get(value, key)
    rule = f.metadata.get("rule")
    value = _plain(value)
    if rule is None or value is None or rule.test(value):
        return
    note = f" ({rule.note})" if rule.note else ""
    default = _default(f)
    example = f", e.g. {key}={_example(default)}" if rule.example and default is not None else ""
    raise ConfigError(f"{key}={value} must be {rule.words}{note}{example}")


def check_fields(cfg, node: type, prefix: str = "") -> None:
    """Check every field of the dataclass `node` in `cfg` (a DictConfig), nested sections included."""
    for f in dataclasses.fields(node):
        key, value = prefix + f.name, cfg[f.name]
        check_value(f, key, value)
        sub = _default(f)
        if dataclasses.is_dataclass(sub):
            check_fields(value, type(sub), key + ".")


def describe(f: dataclasses.Field) -> str:
    """A field's valid values for `continual config keys`: `(one of: a, b)` or `(a positive integer)`."""
    if "choices" in f.metadata:
        return f" (one of: {', '.join(c for c in f.metadata['choices'] if c is not None)})"
    if "registry" in f.metadata:
        registry = registry_at(f.metadata["registry"])
        return f" (one of: {', '.join(registry.builtin())}, or {registry.user} for your own)"
    rule = f.metadata.get("rule")
    return f" ({rule.words})" if rule else ""


def volatile_keys(node: type, prefix: str = "") -> tuple[str, ...]:
    """The dotted keys marked `volatile` below `node`; a marked section gives its prefix (`logger.`),
    a free-form one (trainer) the arguments named in its metadata (`trainer.devices`)."""
    out = []
    for f in dataclasses.fields(node):
        # a section's class, read without calling other factories (the metrics section imports the registry)
        sub, key = f.default_factory if dataclasses.is_dataclass(f.default_factory) else None, prefix + f.name
        if f.metadata.get("volatile"):
            out.append(key + "." if sub else key)
        elif "volatile_arguments" in f.metadata:
            out += [f"{key}.{a}" for a in f.metadata["volatile_arguments"]]
        elif sub:
            out += volatile_keys(sub, key + ".")
    return tuple(out)
