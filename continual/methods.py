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

from continual.registry import Registry


def _is_method(obj) -> bool:
    from continual.models.continual_module import ContinualModule

    return isinstance(obj, type) and issubclass(obj, ContinualModule)


def _name_class(name: str, cls: type) -> None:
    cls.name = name  # the method's config section


METHODS = Registry("method", "method", ("continual.baselines", "continual.routers"), "continual.methods",
                   user="<module>:<Class>", what="a ContinualModule subclass", accepts=_is_method, on_add=_name_class)


def register(name: str):
    """Class decorator: make `method=<name>` build this ContinualModule."""
    return METHODS.register(name)


def builtin() -> dict[str, type]:
    """Every built-in (and entry-point) method by name."""
    return METHODS.builtin()


def method_class(spec: str) -> type:
    """The ContinualModule class `method=spec` selects; a one-line ConfigError if there is none."""
    cls = METHODS.get(spec)
    if "name" not in cls.__dict__:  # user code, not registered: its config section is named after the class
        cls.name = spec.partition(":")[2].lower()
    return cls
