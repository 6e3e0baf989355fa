"""`continual config keys [prefix]`: every config key with its type, default and meaning.

Everything comes from the schema's dataclasses (`Config` and each method's `Config`): the
meaning of a field is its comment (on its line, else the comment lines right above it; the
metric registry's switches carry theirs as `help`), followed by its valid values (its field's
choices or range, `continual.config.fields.describe`), so the schema's source stays the one
place a key is described and this list never drifts from it.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import textwrap
import tokenize

from continual.config.fields import describe
from continual.config.schema import Config
from continual.errors import ConfigError


def field_comments(cls: type) -> dict[str, str]:
    """Field name -> its comment in the source of `cls` or of the dataclass it inherits it from."""
    out = {}
    for base in reversed(cls.__mro__):
        if dataclasses.is_dataclass(base) and "__dataclass_fields__" in vars(base):
            out.update(_own_comments(base))
    return out


def _own_comments(cls: type) -> dict[str, str]:
    source = textwrap.dedent(inspect.getsource(cls))
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
    lines = source.splitlines()
    out = {}
    for node in ast.parse(source).body[0].body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above, n = [], node.lineno - 1
        while n >= 1 and lines[n - 1].strip().startswith("#"):
            above.insert(0, comments[n])
            n -= 1
        out[node.target.id] = comments.get(node.end_lineno) or " ".join(above)
    return out


def _type(f: dataclasses.Field) -> str:
    return f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))


def _default(f: dataclasses.Field):
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _rows(cls: type, prefix: str) -> list[tuple[str, str, str, str]]:
    """(key, type, default, meaning) of every leaf field of `cls` and its nested sections; the
    meaning is a field's `help` (a section built by the metric registry) or its comment."""
    helps = {f.name: f.metadata["help"] for f in dataclasses.fields(cls) if "help" in f.metadata}
    meaning = helps if len(helps) == len(dataclasses.fields(cls)) else {**field_comments(cls), **helps}
    rows = []
    for f in dataclasses.fields(cls):
        value = _default(f)
        if dataclasses.is_dataclass(value):
            rows += _rows(type(value), f"{prefix}{f.name}.")
        elif isinstance(value, dict):  # trainer: free-form lightning.Trainer arguments, with our defaults
            rows.append((f"{prefix}{f.name}.<argument>", "Any", "", meaning[f.name]))
            rows += [(f"{prefix}{f.name}.{k}", type(v).__name__, repr(v), "lightning.Trainer argument") for k, v in value.items()]
        else:
            rows.append((f"{prefix}{f.name}", _type(f), repr(value), meaning[f.name] + describe(f)))
    return rows


def key_rows(prefix: str = "") -> list[tuple[str, str, str, str]]:
    """Every key of the schema and of each built-in method's section (`<method>.<key>`), under
    `prefix`; a prefix `<module>:<Class>` lists the keys of your own method."""
    from continual.methods import builtin, method_class

    if ":" in prefix:
        cls = method_class(prefix)
        own = _rows(cls.Config, f"{cls.name}.") if cls.Config is not None else []
        if not own:
            raise ConfigError(f"method={prefix} has no keys of its own (no nested Config dataclass)")
        return [(key, typ, default, f"[method={prefix}] {meaning}") for key, typ, default, meaning in own]
    rows = _rows(Config, "")
    for name, cls in builtin().items():
        if cls.Config is not None:
            rows += [(key, typ, default, f"[method={name}] {meaning}") for key, typ, default, meaning in _rows(cls.Config, f"{name}.")]
    picked = [r for r in rows if not prefix or r[0] == prefix or r[0].startswith(prefix.rstrip(".") + ".")]
    if not picked:
        sections = sorted({r[0].split(".")[0] for r in rows})
        raise ConfigError(f"no config key is or starts with '{prefix}'; give a key or a section: {', '.join(sections)}, "
                          "or <module>:<Class> for your own method's keys")
    return picked


def format_keys(rows: list[tuple[str, str, str, str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{k:<{widths[0]}}  {t:<{widths[1]}}  {d:<{widths[2]}}  {m}".rstrip() for k, t, d, m in rows)
