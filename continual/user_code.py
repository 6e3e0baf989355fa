"""Your own code, named by `<module>:<attr>` in a config value (`method=mymod:MyMethod`,
`data.stream=mystreams:kmnist`, `backbone.name=mynets:wide`): imported with one-line errors."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import Any, Callable

from continual.errors import ConfigError


def _with_current_folder() -> None:
    """Let user code import from the current folder, as `python -m` would: a console script such
    as `continual` puts only its own bin folder on sys.path. Appended, so a file there never
    shadows an installed package."""
    here = os.getcwd()
    if not any(os.path.abspath(p or ".") == here for p in sys.path):
        sys.path.append(here)


def import_user_module(module_name: str, setting: str):
    """Import the user's module that `setting` (e.g. "method='m:C'") names, from PYTHONPATH or the
    current folder; a one-line ConfigError if it is missing or fails to import (a syntax error in
    it included)."""
    _with_current_folder()
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise ConfigError(f"{setting}: module '{err.name}' not found; put {module_name}.py on PYTHONPATH (or run from its folder)") from None
    except Exception as err:
        first = (str(err).splitlines() or [""])[0]
        where = f" at line {err.lineno}" if isinstance(err, SyntaxError) and err.lineno else ""
        raise ConfigError(f"{setting}: importing '{module_name}' failed ({type(err).__name__}{where}: {first}); fix that module") from None


def resolve(spec: str, setting: str, accepts: Callable[[Any], bool], what: str, takes: int | None = None) -> Any:
    """The attribute `spec` ("module:attr", the value of `setting`) names, if `accepts` it and (a
    function the platform calls with `takes` positional arguments) its signature takes them; else a
    one-line ConfigError saying it must be `what` (the call would fail later in a bare traceback)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"{setting}='{spec}' is not <module>:<attr>; name {what} as module:name")
    obj = getattr(import_user_module(module_name, f"{setting}='{spec}'"), attr, None)
    if not accepts(obj):
        found = "nothing" if obj is None else type(obj).__name__
        raise ConfigError(f"{setting}='{spec}': '{attr}' in {module_name} is {found}, not {what}")
    if takes is not None:
        try:
            signature = inspect.signature(obj)
        except (TypeError, ValueError):  # no signature to read (a builtin): the call decides
            return obj
        try:
            signature.bind(*range(takes))
        except TypeError:
            raise ConfigError(f"{setting}='{spec}': {attr}{signature} cannot be called as {what}; give it those arguments") from None
    return obj
