"""The next parameter set of a sweep, given the runs so far.

Grid and random search need no model of past runs, so they are computed here, with W&B's
semantics (grid: every combination once, in order; random: each run draws independently,
seeded by `seed` and the run's index, so a sweep continued later draws what it would have).
Bayesian search fits a Gaussian process to past results; for it we ask W&B's open-source
engine (`pip install sweeps`), an optional dependency because it pins numpy<2.
"""

from __future__ import annotations

import itertools
import math
import random

from continual.errors import ConfigError

RANDOM_DISTRIBUTIONS = ("constant", "categorical", "uniform", "int_uniform", "log_uniform_values", "q_uniform", "normal")


def _distribution(p: dict) -> str:
    if "distribution" in p:
        return p["distribution"]
    if "value" in p:
        return "constant"
    if "values" in p:
        return "categorical"
    return "int_uniform" if isinstance(p["min"], int) and isinstance(p["max"], int) else "uniform"


def _draw(name: str, p: dict, rng: random.Random):
    kind = _distribution(p)
    if kind == "constant":
        return p["value"]
    if kind == "categorical":
        return rng.choices(p["values"], weights=p.get("probabilities"))[0]
    if kind == "uniform":
        return rng.uniform(p["min"], p["max"])
    if kind == "int_uniform":
        return rng.randint(p["min"], p["max"])
    if kind == "log_uniform_values":
        return math.exp(rng.uniform(math.log(p["min"]), math.log(p["max"])))
    if kind == "q_uniform":
        q = p.get("q", 1.0)
        return round(rng.uniform(p["min"], p["max"]) / q) * q
    if kind == "normal":
        return rng.gauss(p.get("mu", 0.0), p.get("sigma", 1.0))
    raise ConfigError(f"sweep parameter '{name}': distribution '{kind}' is not supported offline; use one of: {', '.join(RANDOM_DISTRIBUTIONS)}")


def _grid(spec: dict, done: list[dict]):
    names = list(spec["parameters"])
    axes = []
    for name in names:
        p = spec["parameters"][name]
        if _distribution(p) not in ("constant", "categorical"):
            raise ConfigError(f"sweep parameter '{name}': a grid needs `values` (or `value`); use method random or bayes for ranges")
        axes.append([p["value"]] if "value" in p else p["values"])
    for combo in itertools.product(*axes):
        params = dict(zip(names, combo))
        if params not in done:
            return params
    return None  # every grid point has run


def engine():
    """W&B's sweep engine, or None. (A checkout's own `sweeps/` folder imports as an empty
    namespace package when the engine is not installed, hence the attribute check.)"""
    try:
        import sweeps
    except ImportError:
        return None
    return sweeps if hasattr(sweeps, "next_run") else None


def engine_state(h: dict) -> str:
    """A trial's state as W&B's engine names it. One running now (in a worker of this sweep or in
    another process) or stopped to resume is "running": the engine then proposes away from it
    instead of taking it for failed and proposing its parameters again."""
    from continual.sweep.runner import is_running, is_stopped

    if h["metric"] is not None:
        return "finished"
    return "running" if is_running(h) or is_stopped(h) else "failed"


def _bayes(spec: dict, history: list[dict]) -> dict:
    sweeps = engine()
    if sweeps is None:
        raise ConfigError(
            "method: bayes needs W&B's sweep engine, an optional dependency: pip install sweeps "
            "(it pins numpy<2; with numpy 2 use: pip install --no-deps sweeps jsonschema jsonref)"
        )
    metric = spec["metric"]["name"]
    runs = [
        sweeps.SweepRun(
            config={k: {"value": v} for k, v in h["params"].items()},
            state=sweeps.RunState(engine_state(h)),
            summary_metrics={metric: h["metric"]} if h["metric"] is not None else {},
        )
        for h in history
    ]
    engine_spec = {k: spec[k] for k in ("method", "metric", "parameters")}
    proposal = sweeps.next_run(engine_spec, runs, validate=True)
    return {k: v["value"].item() if hasattr(v["value"], "item") else v["value"] for k, v in proposal.config.items()}


def check_search(spec: dict) -> None:
    """A one-line ConfigError if the search cannot propose its first trial (a grid over a range,
    an unknown distribution, bayes without W&B's engine): raised before the sweep folder is made."""
    if spec["method"] == "bayes":
        if engine() is None:
            _bayes(spec, [])  # the error that names the install
        return
    next_params(spec, [])


def next_params(spec: dict, history: list[dict], seed: int = 0) -> dict | None:
    """The parameters of run number len(history), or None when the search is exhausted."""
    if spec["method"] == "grid":
        return _grid(spec, [h["params"] for h in history])
    if spec["method"] == "random":
        rng = random.Random(f"{seed}/{len(history)}")
        return {name: _draw(name, p, rng) for name, p in spec["parameters"].items()}
    return _bayes(spec, history)
