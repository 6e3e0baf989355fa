"""The method registry: `method=<name>` for the built-ins, `method=<module>:<Class>` for your own.

A method is one file: a `ContinualModule` subclass decorated with `@register("name")`. The class
carries everything the platform needs to know about it (docs/methods.md): its hyperparameters as
a nested `Config` dataclass (the config section named like the method), the `scenarios` it
supports and a `check(hp, cfg)` for value checks. Nothing else names a method.

Built-in methods are the modules of `continual.baselines` and `continual.routers` (a new file
there registers itself: nothing else to edit); installed packages can add theirs under the
entry-point group `continual.methods` (`name = "package.module:Class"`). They are imported when
a method is looked up, so `continual --help` stays fast.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from importlib.metadata import entry_points

from continual.errors import ConfigError

BUILTIN_PACKAGES = ("continual.baselines", "continual.routers")
ENTRY_POINTS = "continual.methods"
_REGISTRY: dict[str, type] = {}


def register(name: str):
    """Class decorator: make `method=<name>` build this ContinualModule."""

    def add(cls: type) -> type:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"method '{name}' is registered twice ({_REGISTRY[name].__module__} and {cls.__module__})")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return add


def builtin() -> dict[str, type]:
    """Every built-in (and entry-point) method by name."""
    for package in BUILTIN_PACKAGES:
        for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
            if not info.ispkg:  # a sub-package holds a method's parts (continual.routers.parts), not methods
                importlib.import_module(f"{package}.{info.name}")
    for ep in entry_points(group=ENTRY_POINTS):
        if ep.name not in _REGISTRY:
            register(ep.name)(ep.load())
    return dict(_REGISTRY)


def import_user_module(module_name: str, setting: str):
    """Import the user's module that `setting` (e.g. "method='m:C'") names; a one-line ConfigError
    if it is missing or fails to import (a syntax error in it included)."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise ConfigError(f"{setting}: module '{err.name}' not found; put {module_name}.py on PYTHONPATH (or run from its folder)") from None
    except Exception as err:
        first = (str(err).splitlines() or [""])[0]
        where = f" at line {err.lineno}" if isinstance(err, SyntaxError) and err.lineno else ""
        raise ConfigError(f"{setting}: importing '{module_name}' failed ({type(err).__name__}{where}: {first}); fix that module") from None


def _user_class(spec: str) -> type:
    from continual.models.continual_module import ContinualModule

    module_name, _, attr = spec.partition(":")
    module = import_user_module(module_name, f"method='{spec}'")
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, ContinualModule)):
        found = "nothing" if cls is None else type(cls).__name__
        raise ConfigError(f"method='{spec}': '{attr}' in {module_name} is {found}, not a ContinualModule subclass; name your method class")
    if "name" not in cls.__dict__:  # not registered: its config section is named after the class
        cls.name = attr.lower()
    return cls


def method_class(spec: str) -> type:
    """The ContinualModule class `method=spec` selects; a one-line ConfigError if there is none."""
    if ":" in spec:
        return _user_class(spec)
    methods = builtin()
    if spec not in methods:
        close = difflib.get_close_matches(spec, list(methods), n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(
            f"method='{spec}' is not valid{hint}; choose one of: {', '.join(methods)}, or <module>:<Class> for your own method"
        )
    return methods[spec]
