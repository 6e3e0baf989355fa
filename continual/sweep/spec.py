"""A W&B sweep file: load it, check it, and turn a parameter set into the command it runs.

The file is exactly what `wandb sweep` takes. Checks go further than W&B's: the metric must be
one `continual fit` logs (`final/<key>`, or `final/<metric>/<number>` of a registered metric such
as `final/padded_class/accuracy`), the command must be `continual fit ... ${args_no_hyphens}`,
every parameter value (or range end) must pass the config schema and the search must be able to
start, so a typo fails before the first run (and before the sweep folder exists) rather than in
the fortieth.

Trials are ranked on the split the command evaluates (`data.eval_split`): the shipped sweeps set
`val`, so hyperparameters are chosen without the test set. A sweep ranked on `test` still runs
(`wandb agent` would run the same file) but is warned about, and the results name the split.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from continual.errors import ConfigError, DataError

METHODS = ("grid", "random", "bayes")
GOALS = ("maximize", "minimize")
ARGS = "${args_no_hyphens}"


def load_spec(path: str | Path) -> dict:
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"sweep file '{path}' not found; give the path of a W&B sweep YAML, e.g. sweeps/router_grid_h_nv.yaml")
    try:
        spec = yaml.safe_load(file.read_text())
    except (yaml.YAMLError, UnicodeDecodeError):
        raise ConfigError(f"sweep file '{path}' is not valid YAML; fix the syntax") from None
    if not isinstance(spec, dict):
        raise ConfigError(f"sweep file '{path}' must hold a mapping (method, metric, parameters, command)")
    from continual.config.kinds import expect_kind

    expect_kind(spec, path, "sweep")
    spec.setdefault("name", file.stem)
    return spec


def format_value(value) -> str:
    """How W&B's agent writes a value into `${args_no_hyphens}`: Python's `str` (None, True, [16, 32]),
    so a sweep runs the same command offline and under `wandb agent`; the config loader reads None as null."""
    return str(value)


def overrides(params: dict) -> list[str]:
    return [f"{k}={format_value(v)}" for k, v in params.items()]


def fit_args(spec: dict) -> list[str]:
    """The arguments after `continual fit` in the sweep's command, without the parameter macro."""
    cmd = [c for c in spec["command"] if c not in ("${env}", "${interpreter}")]
    return [c for c in cmd[2:] if c != ARGS]


def fit_config(spec: dict, extra: list[str] = ()) -> tuple[str | None, list[str]]:
    """The config file of the sweep's command (`--config`; None: the default) and its fixed
    key=value overrides, with `extra` after them: a trial is that config with its parameters on top."""
    args = fit_args(spec)
    config = args[args.index("--config") + 1] if "--config" in args else None
    fixed = [a for i, a in enumerate(args) if "=" in a and (i == 0 or args[i - 1] != "--config")]
    return config, [*fixed, *extra]


def command(spec: dict, params: dict, extra: list[str] = ()) -> list[str]:
    """The command line `wandb agent` would run for `params` (with `continual` as the program), with
    `extra` overrides (`continual sweep FILE key=value ...`) after the sweep file's own."""
    return ["continual", "fit", *fit_args(spec), *extra, *overrides(params)]


def metric_value(spec: dict, metrics: dict):
    """The sweep metric `final/<key>` (metrics.json's `key`) or `final/<metric>/<number>` (the
    number in a metric's entry) of a finished run's metrics; None if the run has none."""
    value = metrics
    for part in spec["metric"]["name"].split("/")[1:]:
        value = value.get(part) if isinstance(value, dict) else None
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def logged_metrics() -> list[str]:
    """The sweep metrics `continual fit` logs: `final/<key>`, and `final/<metric>/<number>` of
    every registered metric (which numbers a metric's entry holds shows once a run has it)."""
    from continual.metrics.registry import metrics
    from continual.run_logger import FINAL_KEYS

    own_entry = [m for m in metrics() if m.key in m.entries({})]  # an entry of its own, not spread over the top level
    return [f"final/{k}" for k in FINAL_KEYS] + [f"final/{m.key}/<number>" for m in own_entry]


def _is_logged(name) -> bool:
    parts = name.split("/") if isinstance(name, str) else []
    if not parts or parts[0] != "final":
        return False
    return (len(parts) == 2 and name in logged_metrics()) or (
        len(parts) == 3 and f"final/{parts[1]}/<number>" in logged_metrics() and bool(parts[2]))


def ranked_split(spec: dict, extra: list[str] = ()) -> str:
    """The split the trials are ranked on: `data.eval_split` of the sweep's command (with `extra`)."""
    from continual.config import load_config

    config, fixed = fit_config(spec, list(extra))
    return load_config(config, fixed).data.eval_split


def ranked_column(spec: dict) -> str:
    """The results table's name for the ranked metric with its split (`ranked_on`, set by the
    runner from `ranked_split`): `final/acc (val)`."""
    return f"{spec['metric']['name']} ({spec.get('ranked_on', 'test')})"


def split_warning(spec: dict, split: str) -> str | None:
    """The one-line warning for a sweep that ranks its trials on the test split, else None."""
    if split != "test":
        return None
    return (f"continual: warning: sweep '{spec.get('name', 'sweep')}' ranks its trials on the test split; "
            "choose hyperparameters with data.eval_split=val in its command and report test once")


def candidate_values(name: str, p: dict) -> list:
    """Values that stand for a parameter when checking it: every listed value, or its range ends."""
    if "value" in p:
        return [p["value"]]
    if "values" in p:
        if not isinstance(p["values"], list) or not p["values"]:
            raise ConfigError(f"sweep parameter '{name}': values must be a non-empty list")
        return p["values"]
    if "min" in p and "max" in p:
        return [p["min"], p["max"]]
    if p.get("distribution") == "normal":
        return [p.get("mu", 0.0)]
    raise ConfigError(f"sweep parameter '{name}' needs value, values, or min and max")


def validate(spec: dict, check_schema: bool = True, extra: list[str] = (), check_start: bool = True) -> None:
    """Raise a one-line ConfigError for the first problem in `spec` (run with the overrides
    `extra`); `check_start`: also that the search can propose its first trial."""
    name = spec.get("name", "sweep")
    if spec.get("method") not in METHODS:
        raise ConfigError(f"sweep '{name}': method={spec.get('method')!r} is not valid; choose one of: {', '.join(METHODS)}")
    metric = spec.get("metric") or {}
    if not isinstance(metric, dict):
        raise ConfigError(f"sweep '{name}': metric must be a mapping such as {{name: final/acc, goal: maximize}}, not {metric!r}")
    if not _is_logged(metric.get("name")):
        raise ConfigError(f"sweep '{name}': metric.name={metric.get('name')!r} is not logged by continual fit; use one of: {', '.join(logged_metrics())}")
    if metric.get("goal") not in GOALS:
        raise ConfigError(f"sweep '{name}': metric.goal={metric.get('goal')!r} must be maximize or minimize")
    cmd = [c for c in spec.get("command") or [] if c not in ("${env}", "${interpreter}")]
    if cmd[:2] != ["continual", "fit"] or ARGS not in cmd:
        raise ConfigError(f"sweep '{name}': command must run `continual fit ... {ARGS}` so wandb agent passes key=value overrides; got {spec.get('command')}")
    params = spec.get("parameters")
    if not isinstance(params, dict) or not params:
        raise ConfigError(f"sweep '{name}': parameters must map config keys to their values or distributions")
    for key, p in params.items():
        if not isinstance(p, dict):
            raise ConfigError(f"sweep '{name}': parameter '{key}' must be a mapping such as {{values: [...]}}")
    for item in extra:
        if item.split("=", 1)[0] in params:
            raise ConfigError(f"sweep '{name}': override '{item}' sets a swept parameter; drop it, or drop {item.split('=', 1)[0]} from the sweep's parameters")
    if check_schema:
        _check_schema(spec, extra)
    if check_start:
        from continual.sweep.search import check_search

        check_search(spec)


def require_data(spec: dict, extra: list[str] = ()) -> None:
    """The data set the sweep's command reads is there (`require_files`): checked before a sweep
    folder is made, since every trial would fail alike (a swept data.root is checked per trial)."""
    from continual.config import load_config
    from continual.data.streams import require_files

    config, fixed = fit_config(spec, list(extra))
    try:
        require_files(load_config(config, fixed).data)
    except DataError as err:
        raise DataError(f"sweep '{spec.get('name', 'sweep')}': {err}") from None


def _check_schema(spec: dict, extra: list[str]) -> None:
    """The sweep's command, and it with each parameter value (or range end), pass the config schema."""
    from continual.config import load_config

    name = spec.get("name", "sweep")
    config, fixed = fit_config(spec, list(extra))
    try:
        load_config(config, fixed)
    except ConfigError as err:
        raise ConfigError(f"sweep '{name}': its command {' '.join(command(spec, {}, extra))} is refused: {err}") from None
    for key, p in spec["parameters"].items():
        for value in candidate_values(key, p):
            try:
                load_config(config, [*fixed, *overrides({key: value})])
            except ConfigError as err:
                raise ConfigError(f"sweep '{name}': parameter {key}={format_value(value)} is refused: {err}") from None
