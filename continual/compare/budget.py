"""Matched memory in a compare grid: a row whose replay buffer is sized by another row's memory.

A row's overrides may hold `budget_from=<row>` or `budget_from=<number of floats>`:

    methods:
      router64: [method=router, router.memories=64]
      er_at_router64: [method=er, budget_from=router64]

Each cell of such a row runs with `<method>.buffer_floats` (the buffer's budget in floats) set to
the `stored_floats` of the referenced row's cell with the same scenario and seed, or to the
number given. The floats are read from that cell's finished metrics.json, so referenced rows run
first (`stages`), not computed from a module built before training: `stored_floats` is counted
on the state a method holds after its last task, which for most methods grows while the stream is
learned (per-task masks and heads, prototypes, task statistics), and no method states it in
advance. A referenced cell that failed fails its dependents; one not finished here (another
shard, or left out by `--only` and never run) leaves them waiting for a later compare.
"""

from __future__ import annotations

from continual.errors import ConfigError
from continual.registry import did_you_mean
from continual.rundir.results import finished_metrics

KEY = "budget_from"


def split(row: str, overrides: list[str]) -> tuple[list[str], str | float | None]:
    """A row's overrides without its `budget_from=`, and the budget: a row's name or a number of floats."""
    own = [o for o in overrides if o.startswith(f"{KEY}=")]
    if len(own) > 1:
        raise ConfigError(f"row '{row}' sets {KEY} {len(own)} times; keep one")
    if not own:
        return overrides, None
    value = own[0].partition("=")[2].strip()
    try:
        floats = float(value)
    except ValueError:
        return [o for o in overrides if o not in own], value
    if not floats > 0:
        raise ConfigError(f"row '{row}': {KEY}={value} must be a row name or a positive number of floats")
    return [o for o in overrides if o not in own], floats


def stages(budgets: dict[str, str | float], rows: list[str]) -> list[list[str]]:
    """The rows in the order they can run: a stage's rows reference only rows of earlier stages."""
    refs = {row: ref for row, ref in budgets.items() if isinstance(ref, str)}
    for row, ref in refs.items():
        if ref not in rows:
            raise ConfigError(f"row '{row}': {KEY}={ref} names no row of this grid{did_you_mean(ref, rows)}; "
                              "give a row's name or a number of floats")
    for row in refs:  # follow each chain: back to itself is a cycle
        chain = [row]
        while chain[-1] in refs:
            chain.append(refs[chain[-1]])
            if chain[-1] in chain[:-1]:
                raise ConfigError(f"{KEY} goes round in a cycle ({' -> '.join(chain)}); a row cannot be sized by a row it sizes")
    done: set[str] = set()
    out = []
    while len(done) < len(rows):
        stage = [r for r in rows if r not in done and (r not in refs or refs[r] in done)]
        out.append(stage)
        done.update(stage)
    return out


def buffer_key(cfg, row: str) -> str:
    """The key a budget sets in a cell of `row` (its config `cfg`): `<method>.buffer_floats`."""
    section = cfg.get(cfg.method) if cfg.method in cfg else None
    if section is None or "buffer_floats" not in section:
        raise ConfigError(f"row '{row}': {KEY} sets <method>.buffer_floats, which method={cfg.method} has not; "
                          "use it on a replay method's row (e.g. method=er)")
    return f"{cfg.method}.buffer_floats"


def floats(grid, row: str, scenario: str, seed: int, results: dict) -> float | str | None:
    """The buffer budget of a cell of `row`: floats; an error (the referenced cell failed); or
    None while the referenced cell is not finished."""
    ref = grid.budget_from[row]
    if not isinstance(ref, str):
        return ref
    got = results.get((ref, scenario, seed))
    if isinstance(got, str):
        return f"{KEY}={ref}: its cell {scenario}/s{seed} failed ({got})"
    metrics = got if isinstance(got, dict) else finished_metrics(grid.cell_dir(ref, scenario, seed))
    if metrics is None:
        return None
    if metrics.get("stored_floats") is None:
        return f"{KEY}={ref}: its cell {scenario}/s{seed} reports no stored_floats"
    return float(metrics["stored_floats"])
