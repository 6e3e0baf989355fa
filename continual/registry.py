"""One registry for every kind of plug-in (methods, streams, backbones): a name -> its entry.

A built-in is one module of the registry's packages whose `@register("name")` adds it when the
module is imported: a new file registers itself, nothing else lists it. Installed packages add
theirs under the registry's entry-point group (`name = "package.module:attr"`); your own is
selected by `<module>:<attr>` and needs no registering. Built-ins are imported on the first
lookup, so `continual --help` stays fast.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from importlib.metadata import entry_points
from typing import Any, Callable, Iterable

from continual.errors import ConfigError
from continual.user_code import resolve


def did_you_mean(word: str, options: Iterable[str], prefix: str = "") -> str:
    """" (did you mean '<prefix>x'?)" for the option closest to a mistyped `word`, "" if none is
    close: the one hint every error about a name gives."""
    close = difflib.get_close_matches(str(word), list(options), n=1, cutoff=0.5)
    return f" (did you mean '{prefix}{close[0]}'?)" if close else ""


class Registry:
    """Entries of one kind, looked up by the config value `setting` names.

    `accepts(obj)` tells whether user code `<module>:<attr>` names a usable entry (described by
    `what`, e.g. "a function (cfg, seed) -> Stream", and called with `takes` positional arguments
    when it is a function); `on_add(name, obj)` runs for each entry registered (the method
    registry names its classes with it)."""

    def __init__(self, kind: str, setting: str, packages: tuple[str, ...], group: str, user: str, what: str,
                 accepts: Callable[[Any], bool] = callable, on_add: Callable[[str, Any], None] | None = None,
                 takes: int | None = None):
        self.kind, self.setting, self.packages, self.group = kind, setting, packages, group
        self.user, self.what, self.accepts, self.on_add, self.takes = user, what, accepts, on_add, takes
        self._entries: dict[str, Any] = {}
        self._facts: dict[str, dict] = {}
        self._scanned = False

    def register(self, name: str, **facts):
        """Decorator: make `<setting>=<name>` select this entry; `facts` are what other code needs to know about it."""

        def add(obj):
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} '{name}' is registered twice ({self._entries[name].__module__} and {obj.__module__})")
            if self.on_add is not None:
                self.on_add(name, obj)
            self._entries[name], self._facts[name] = obj, facts
            return obj

        return add

    def builtin(self) -> dict[str, Any]:
        """Every built-in (and entry-point) entry by name, in name order (the order they registered
        depends on what was imported first: listings would differ between processes). The packages
        and entry points are scanned once per process: a sweep validates its config many times."""
        if not self._scanned:
            for package in self.packages:
                for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
                    if not info.ispkg:  # a sub-package holds an entry's parts (continual.routers.parts), not entries
                        importlib.import_module(f"{package}.{info.name}")
            for ep in entry_points(group=self.group):
                if ep.name not in self._entries:
                    self.register(ep.name)(ep.load())
            self._scanned = True
        return dict(sorted(self._entries.items()))

    def facts(self, name: str) -> dict:
        """What the entry `name` registered about itself ({} for user code or an unknown name)."""
        self.builtin()
        return self._facts.get(name, {})

    def help(self) -> dict[str, str]:
        """Each built-in's one-line help: the first line of its docstring."""
        return {name: ((obj.__doc__ or "").strip().splitlines() or [""])[0] for name, obj in self.builtin().items()}

    def get(self, spec: str, setting: str | None = None) -> Any:
        """The entry `<setting>=spec` selects; a one-line ConfigError if there is none."""
        setting = setting or self.setting
        if ":" in spec:
            return resolve(spec, setting, self.accepts, self.what, self.takes)
        entries = self.builtin()
        if spec not in entries:
            raise ConfigError(
                f"{setting}='{spec}' is not valid{did_you_mean(spec, entries)}; choose one of: {', '.join(entries)}, "
                f"or {self.user} for your own {self.kind}"
            )
        return entries[spec]


def registry_at(path: str) -> Registry:
    """The registry `path` ("module:attribute") names: how the config schema points a key at one
    without importing it."""
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)
