"""Load a YAML config, apply `key=value` overrides and validate against the schema.

Every problem becomes a one-line `ConfigError` naming the key, what is wrong and the fix
(the nearest valid key or the valid choices), never an OmegaConf traceback.

The schema is `Config` plus the selected method's section (its class's `Config`, under its
name): only that section is part of a run's config. A file may carry sections of other built-in
methods (a stored run's config.yaml of an earlier version, a base for several methods): they
are dropped. An override of another method's key is refused: it would do nothing.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import re
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import yaml
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from continual.config.fields import check_fields
from continual.config.kinds import expect_kind
from continual.config.schema import Config
from continual.errors import ConfigError
from continual.registry import did_you_mean
from continual.run_logger import logger_kinds

DEFAULT_CONFIG = "split_digits.yaml"
# Trainer arguments the platform owns: it builds them per task.
_RESERVED_TRAINER_KEYS = {"logger": "logger.kind (wandb, tensorboard, csv, mlflow, none, or a list)", "callbacks": "the method and its callbacks"}


def _packaged_configs() -> Path:
    """The shipped configs: installed, `continual/configs` (package data, see setup.py); in a
    source checkout, the repository's top-level `configs/`."""
    package = Path(__file__).resolve().parents[1]
    return package / "configs" if (package / "configs").is_dir() else package.parent / "configs"


PACKAGED_CONFIGS = _packaged_configs()


def config_dirs() -> list[Path]:
    """Where config names are looked up: ./configs (your own), then the configs shipped in the package."""
    return [Path.cwd() / "configs", PACKAGED_CONFIGS]


def resolve_config_path(path: str | None, what: str = "config file") -> Path:
    """A file path wins; otherwise a name (e.g. `split_mnist.yaml`, `compare/<name>.yaml`) in `config_dirs()`."""
    if path is None:
        path = DEFAULT_CONFIG
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    for folder in config_dirs():
        if (folder / path).is_file():
            return folder / path
    pattern = "compare/*.yaml" if what == "compare config" else "*.yaml"
    available = sorted({p.relative_to(d).as_posix() for d in config_dirs() if d.is_dir() for p in d.glob(pattern)})
    raise ConfigError(
        f"{what} '{path}' not found; give a path to a YAML file"
        + (f" or one of: {', '.join(available)}" if available else "")
    )


def _suggest(word: str, options: Iterable[str]) -> str:
    options = list(options)
    return f"{did_you_mean(word, options)}; valid keys: {', '.join(sorted(options))}"


def _sections(method) -> dict[str, type]:
    """Top-level config sections -> their dataclass, the method's own included."""
    out = {f.name: type(f.default_factory()) for f in dataclasses.fields(Config)
           if f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory())}
    if method is not None and method.Config is not None:
        out[method.name] = method.Config
    return out


def _keys_at(full_key: str, method) -> tuple[str, list[str]]:
    """The parent path of a dotted key and the valid field names there."""
    parts = full_key.split(".")
    if len(parts) == 1:
        return "", [f.name for f in dataclasses.fields(Config)] + ([method.name] if method is not None and method.Config else [])
    node = _sections(method).get(parts[0])
    for part in parts[1:-1]:
        fields = {f.name: f for f in dataclasses.fields(node)} if node else {}
        sub = fields[part].default_factory() if part in fields and fields[part].default_factory is not dataclasses.MISSING else None
        node = type(sub) if dataclasses.is_dataclass(sub) else None
    return ".".join(parts[:-1]), [f.name for f in dataclasses.fields(node)] if node else []


def _leaf_keys(node: type, prefix: str = "") -> list[str]:
    """Every dotted key below the dataclass `node`."""
    out = []
    for f in dataclasses.fields(node):
        sub = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        out += _leaf_keys(type(sub), f"{prefix}{f.name}.") if dataclasses.is_dataclass(sub) else [prefix + f.name]
    return out


def _explain(err: OmegaConfBaseException, source: str, method=None) -> ConfigError:
    key = getattr(err, "full_key", None) or ""
    if isinstance(err, ConfigKeyError) and key:
        parent, valid = _keys_at(key, method)
        name = key.split(".")[-1]
        where = f" under '{parent}'" if parent else ""
        leaves = [f"{s}.{k}" for s, node in _sections(method).items() for k in _leaf_keys(node)]
        elsewhere = sorted((k for k in leaves if k.split(".")[-1] == name), key=lambda k: k.count("."))
        if elsewhere:  # `lr=` means optim.lr, not the nearest top-level spelling
            # under a section, the key may be another section's (`data.name`: backbone.name) or a
            # wrong name for one of this section's (the dataset is data.stream): show both
            here = f"; valid keys under '{parent}': {', '.join(sorted(valid))}" if parent else ""
            return ConfigError(f"unknown config key '{key}' in {source}{where}{did_you_mean(elsewhere[0], elsewhere[:1])}{here}")
        return ConfigError(f"unknown config key '{key}' in {source}{where}" + _suggest(name, valid))
    msg = str(err).splitlines()[0]
    if key:
        return ConfigError(f"bad value for '{key}' in {source}: {msg}")
    return ConfigError(f"bad config in {source}: {msg}")


def _merge(base: DictConfig, other, source: str, method=None) -> DictConfig:
    for name, node in _sections(method).items():
        value = other.get(name) if name in other else None
        if value is not None and not isinstance(value, (dict, DictConfig)):
            example = dataclasses.fields(node)[0].name
            raise ConfigError(
                f"'{name}' in {source} is {value!r}, but it is a section of keys; set its keys instead, "
                f"e.g. {name}.{example}=... (keys: {', '.join(f.name for f in dataclasses.fields(node))})"
            )
    try:
        return OmegaConf.merge(base, other)
    except OmegaConfBaseException as err:
        raise _explain(err, source, method) from None


_NONE = re.compile(r"(?<![\w'\"])None(?![\w'\"])")  # Python's None, as `wandb agent` writes a null value


def parse_overrides(overrides: Sequence[str]) -> DictConfig:
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override '{item}' is not of the form key=value (e.g. seed=3)")
    items = [key + "=" + _NONE.sub("null", value) for key, value in (item.split("=", 1) for item in overrides)]
    try:
        return OmegaConf.from_dotlist(items)
    except OmegaConfBaseException as err:
        raise ConfigError(f"cannot parse overrides {list(overrides)}: {str(err).splitlines()[0]}") from None


_PLAIN = {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "null"}


def _accepts(hint, value) -> tuple[bool, list[str]]:
    """Whether a value fits a Trainer argument's type hint, and the hint in words. A hint with
    types a YAML value cannot be (an Accelerator, a timedelta) accepts anything: Lightning checks."""
    from typing import Literal, Union, get_args, get_origin

    parts = get_args(hint) if get_origin(hint) is Union else (hint,)
    words = []
    for part in parts:
        if get_origin(part) is Literal:
            if value in get_args(part):
                return True, words
            words += [repr(v) for v in get_args(part)]
        elif part in _PLAIN:
            if part is float and isinstance(value, int) and not isinstance(value, bool):
                return True, words
            if type(value) is part:
                return True, words
            words.append(_PLAIN[part])
        else:
            return True, words
    return False, words


@functools.cache
def _trainer_arguments() -> tuple[list[str], dict]:
    """lightning.Trainer's argument names and type hints (read once: reading them costs a sweep's
    validation more than the rest of `load_config`)."""
    import inspect
    import typing

    from lightning import Trainer

    return [p for p in inspect.signature(Trainer.__init__).parameters if p != "self"], typing.get_type_hints(Trainer.__init__)


def _check_trainer(cfg: DictConfig) -> None:
    valid, hints = _trainer_arguments()
    for key in cfg.trainer:
        if key in _RESERVED_TRAINER_KEYS:
            raise ConfigError(f"trainer.{key} is set by continual; use {_RESERVED_TRAINER_KEYS[key]} instead")
        if key not in valid:
            raise ConfigError(f"unknown config key 'trainer.{key}': not a lightning.Trainer argument{did_you_mean(key, valid, 'trainer.')}")
        ok, words = _accepts(hints.get(key), cfg.trainer[key])
        if not ok:
            raise ConfigError(f"trainer.{key}={cfg.trainer[key]!r} is not valid; give {' or '.join(dict.fromkeys(words))}")
    epochs, steps = cfg.trainer.get("max_epochs", 1), cfg.trainer.get("max_steps", -1)
    if epochs is not None and epochs < 1 and not (epochs == -1 and steps > 0):
        raise ConfigError(f"trainer.max_epochs={epochs} trains nothing (or forever); set trainer.max_epochs to a positive integer (epochs per task)")
    if steps == 0 or steps < -1:
        raise ConfigError(f"trainer.max_steps={steps} must be a positive integer (or -1: no step limit)")
    # limits that leave no training step: each task's fit would be a no-op and the run would look
    # complete, every row equal to the untrained one
    limit = cfg.trainer.get("limit_train_batches")
    if limit is not None and (limit < 0 or (isinstance(limit, float) and limit > 1)):
        raise ConfigError(f"trainer.limit_train_batches={limit} is not valid; give a fraction in (0, 1] or a positive integer (batches per epoch)")
    if limit == 0:
        raise ConfigError(f"trainer.limit_train_batches={limit} trains nothing (no batch of any task); give a fraction in (0, 1] or a positive integer (batches per epoch), or leave it out")
    if cfg.trainer.get("max_time") is not None:
        from lightning.pytorch.callbacks import Timer

        value = OmegaConf.to_container(cfg.trainer, resolve=True)["max_time"]
        try:
            left = Timer(duration=value).time_remaining()  # Lightning's own reading of the value
        except Exception:
            raise ConfigError(f"trainer.max_time={value!r} is not valid; give a duration as DD:HH:MM:SS (e.g. 00:01:00:00)") from None
        if left is not None and left <= 0:
            raise ConfigError(f"trainer.max_time={value!r} trains nothing (every task stops before its first step); give a positive duration as DD:HH:MM:SS, or leave it out")


def _check_values(cfg: DictConfig) -> None:
    """The checks that span keys (each key's own range is its field's, `check_fields`)."""
    if cfg.data.eval_split == "val" and cfg.data.val_fraction == 0:
        raise ConfigError("data.eval_split=val needs a validation split: set data.val_fraction>0 (e.g. 0.1)")
    if cfg.backbone.init == "checkpoint" and not cfg.backbone.checkpoint:
        raise ConfigError("backbone.init=checkpoint needs backbone.checkpoint=<path to a state_dict file>")
    logger_kinds(cfg.logger)
    from continual.models.schedules import check as check_schedule

    check_schedule(cfg.optim)


def schema(method) -> DictConfig:
    """The typed defaults of a run of `method` (a ContinualModule class): a copy of one built once
    per method and set of registered metrics, since building it from the dataclasses costs five
    times the copy."""
    from continual.metrics.registry import config_class

    return copy.deepcopy(_schema(method, config_class()))


@functools.cache
def _schema(method, metrics_section: type) -> DictConfig:
    cfg = OmegaConf.structured(Config)
    if method.Config is not None:
        with open_dict(cfg):
            cfg[method.name] = OmegaConf.structured(method.Config)
    return cfg


def _method_spec(raw: dict, overrides: DictConfig) -> str:
    spec = overrides.get("method", raw.get("method", Config.method))
    if not isinstance(spec, str):
        raise ConfigError(f"method={spec!r} is not a method name; give a built-in name or <module>:<Class>")
    return spec


def _other_sections(data, method, names: Iterable[str]) -> list[str]:
    """Keys of `data` that are another method's section (a method name that is not a schema section)."""
    own = method.name if method.Config is not None else None
    schema_sections = _sections(None)
    return [k for k in data if k in names and k != own and k not in schema_sections]


_ABSENT = object()
_WARNED: dict = {}  # the warnings registry of the retired switch: each warning once per process


def _pop_wandb_switch(logger) -> object:
    """Remove the retired `logger.wandb` from a file's or the overrides' logger section; its value, or _ABSENT."""
    if not isinstance(logger, (dict, DictConfig)) or "wandb" not in logger:
        return _ABSENT
    value = logger.pop("wandb")
    if value is not None and not isinstance(value, bool):
        raise ConfigError(f"logger.wandb={value!r} must be true, false or null; it is retired: set logger.kind instead, e.g. logger.kind=none")
    return value


def _apply_wandb_switch(cfg: DictConfig, value, source: str) -> None:
    """`logger.wandb`, the switch `logger.kind` replaced, as old config.yaml files and commands still
    carry it: false drops wandb from logger.kind, true adds it, null (the old default) changes nothing."""
    if value is None:
        return
    kinds = list(cfg.logger.kind) if OmegaConf.is_list(cfg.logger.kind) else [cfg.logger.kind]
    kinds = [k for k in kinds if k not in ("none", "wandb")] + (["wandb"] if value else [])
    cfg.logger.kind = kinds if len(kinds) > 1 else kinds[0] if kinds else "none"
    kind = f"[{','.join(kinds)}]" if len(kinds) > 1 else cfg.logger.kind
    warnings.warn_explicit(  # one line: at line 0 there is no source line to show under it
        f"logger.wandb={str(value).lower()} is retired; read as logger.kind={kind}. Set logger.kind instead "
        "(wandb, tensorboard, csv, mlflow, none, or a list)", FutureWarning, source, 0, registry=_WARNED)


def _check_method(cfg: DictConfig, method) -> None:
    if cfg.scenario not in method.scenarios:
        why = f" ({method.scenarios_why})" if method.scenarios_why else ""
        raise ConfigError(
            f"method={cfg.method} supports scenario={'|'.join(method.scenarios)} only{why}, not scenario={cfg.scenario}; "
            f"use scenario={method.scenarios[0]}"
        )
    if cfg.class_il_train_outputs == "all":
        if cfg.scenario != "class":
            raise ConfigError(f"class_il_train_outputs=all is a class-IL training rule, not one of scenario={cfg.scenario}; "
                              f"drop it (the default is seen) or set scenario=class")
        if method.all_outputs_refused:
            raise ConfigError(f"class_il_train_outputs=all does not apply to method={cfg.method}: {method.all_outputs_refused}; "
                              f"drop it (the default is seen)")
    method.check(cfg[method.name] if method.Config is not None else None, cfg)


def load_config(path: str | None = None, overrides: Sequence[str] = ()) -> DictConfig:
    """The validated, fully typed config: schema defaults <- YAML file <- overrides."""
    file = resolve_config_path(path)
    try:
        raw = yaml.safe_load(file.read_text())
    except UnicodeDecodeError:
        raise ConfigError(f"config file '{file}' is not a text (YAML) file; give the path of a YAML config") from None
    except yaml.YAMLError as err:
        line = getattr(getattr(err, "problem_mark", None), "line", None)
        where = f" at line {line + 1}" if line is not None else ""
        raise ConfigError(f"config file '{file}' is not valid YAML{where}; fix the syntax") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file '{file}' must hold a mapping of keys, not {type(raw).__name__}")
    expect_kind(raw, path or DEFAULT_CONFIG, "run")
    from continual.methods import builtin, method_class

    over = parse_overrides(overrides)
    method = method_class(_method_spec(raw, over))
    names = builtin()
    for key in _other_sections(over, method, names):
        raise ConfigError(
            f"override '{key}.{next(iter(over[key]), '')}' configures method={key}, but method={method.name}; "
            f"drop it or add method={key}"
        )
    raw = {k: v for k, v in raw.items() if k not in _other_sections(raw, method, names)}
    in_file, in_overrides = _pop_wandb_switch(raw.get("logger")), _pop_wandb_switch(over.get("logger"))
    cfg = _merge(schema(method), OmegaConf.create(raw), f"'{file}'", method)
    cfg = _merge(cfg, over, "overrides", method)
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as err:
        raise _explain(err, f"'{file}'", method) from None
    if in_overrides is not _ABSENT:  # an override wins over the file, as for any key
        _apply_wandb_switch(cfg, in_overrides, "overrides")
    elif in_file is not _ABSENT:
        _apply_wandb_switch(cfg, in_file, str(file))
    check_fields(cfg, Config)
    if method.Config is not None:
        check_fields(cfg[method.name], method.Config, method.name + ".")
    _check_trainer(cfg)
    _check_values(cfg)
    _check_method(cfg, method)
    return cfg
