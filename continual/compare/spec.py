"""A compare config: the grid of methods x scenarios x seeds that `continual compare` runs, and its cells.

A compare config (YAML) names a base run config and the grid:

    base: split_mnist.yaml            # any config `continual fit --config` accepts
    out: runs/compare/my_grid         # one sub-folder per cell, plus the tables
    methods:                          # row name -> overrides that make it
      finetune: [method=finetune]
      online_ewc: [method=ewc, ewc.online=true]
    scenarios: [task, class]
    seeds: [0, 1]
    overrides: [trainer.max_epochs=1] # applied to every cell
    per_cell:                         # "<row>/<scenario>", "<row>" or "<scenario>" -> overrides
      online_ewc/class: [ewc.lambda_=1e9]
    reference:                        # optional published numbers (%), shown beside ours
      finetune: {task: 87.2, class: 19.9}
      der: {class: 84.5, class/task_given_acc: 98.8}  # <scenario>/<column>: beside another column

A reference keyed by a scenario is set beside that scenario's ACC; one keyed `<scenario>/<column>`
beside that compare column of the scenario's cells (a column key of `continual.metrics`, e.g.
`task_given_acc`: the task-given accuracy of class-IL cells, which a paper may call task-IL).

A row may size its replay buffer by another row's memory: `budget_from=<row>` (or a number of
floats) among its overrides sets `<method>.buffer_floats` (continual/compare/budget.py).

Each cell is an ordinary `continual fit` run into `<out>/<row>__<scenario>__s<seed>/`, run by the
grid runner (continual/grid.py): a finished cell is not run again, a finished cell whose config
the grid has changed stops the compare before anything runs, and a failed cell is reported in the
table and the exit code while the others still run. W&B groups a row's seeds (`<out name>/<row>`,
job type: the scenario).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from continual.compare import budget
from continual.errors import ConfigError
from continual.grid import Cell
from continual.rundir.results import finished_metrics

_KEYS = {"base", "out", "methods", "scenarios", "seeds", "overrides", "per_cell", "reference"}


@dataclass
class Grid:
    base: str | None
    out: Path
    methods: dict[str, list[str]]
    scenarios: list[str]
    seeds: list[int]
    overrides: list[str] = field(default_factory=list)
    per_cell: dict[str, list[str]] = field(default_factory=dict)
    reference: dict[str, dict[str, float]] = field(default_factory=dict)
    only: list[str] = field(default_factory=list)  # "row", "scenario" or "row/scenario"; empty: all
    read_back: set = field(default_factory=set)  # with `only`: the other cells finished when it was set (`select`)
    budget_from: dict[str, str | float] = field(default_factory=dict)  # row -> the row (or floats) its buffer is sized by

    def reference_of(self, row: str, scenario: str, column: str = "acc") -> float | None:
        """The published number set beside `column` of the row's `scenario` cells, if any."""
        return self.reference.get(row, {}).get(scenario if column == "acc" else f"{scenario}/{column}")

    def referenced_columns(self, scenario: str | None = None) -> list[str]:
        """The columns besides ACC that a reference names (`<scenario>/<column>`), of one scenario or all."""
        keys = (k.split("/", 1) for ref in self.reference.values() for k in ref if "/" in k)
        return list(dict.fromkeys(col for sc, col in keys if scenario in (None, sc)))

    def selected(self, row: str, scenario: str) -> bool:
        return not self.only or bool({row, scenario, f"{row}/{scenario}"} & set(self.only))

    def cells(self):
        """The cells `--only` selects (all, without it), and `read_back`: the runner reads those
        (checked against the config the grid gives them, as any finished cell), so an `--only`
        run's tables are still the whole grid's."""
        for row in self.methods:
            for sc in self.scenarios:
                for seed in self.seeds:
                    if self.selected(row, sc) or (row, sc, seed) in self.read_back:
                        yield row, sc, seed

    def cell_dir(self, row: str, scenario: str, seed: int) -> Path:
        return self.out / f"{row}__{scenario}__s{seed}"

    def cell_overrides(self, row: str, scenario: str, seed: int) -> list[str]:
        extra = [*self.per_cell.get(scenario, []), *self.per_cell.get(row, []), *self.per_cell.get(f"{row}/{scenario}", [])]
        return [*self.overrides, *self.methods[row], f"scenario={scenario}", f"seed={seed}", *extra]

    def run_cells(self, budgets: dict | None = None) -> list[Cell]:
        """The selected cells for the grid runner, in table order; `budgets`: (row, scenario, seed)
        -> the `<method>.buffer_floats=` override a `budget_from` row's cell runs with."""
        keys, budgets = list(self.cells()), budgets or {}
        return [
            Cell(label=f"[{i + 1}/{len(keys)}] {row} / {sc}-IL / seed {seed}", run_dir=self.cell_dir(row, sc, seed), config=self.base,
                 overrides=[*self.cell_overrides(row, sc, seed), *budgets.get((row, sc, seed), [])],
                 group=f"{self.out.name}/{row}", job_type=sc)
            for i, (row, sc, seed) in enumerate(keys)
        ]


def _str_list(value, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
        raise ConfigError(f"{where} must be a list of key=value strings, e.g. [method=ewc, ewc.online=true]")
    return [str(v) for v in value]


def load_grid(path: str, out: str | None = None) -> Grid:
    from continual.config.kinds import expect_kind
    from continual.config.load import resolve_config_path

    file = resolve_config_path(path, "compare config")
    try:
        raw = yaml.safe_load(file.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError):
        raise ConfigError(f"compare config '{path}' is not valid YAML; fix the syntax") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"compare config '{path}' must hold a mapping with keys {sorted(_KEYS)}")
    expect_kind(raw, path, "compare")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ConfigError(f"unknown key '{unknown[0]}' in compare config '{path}'; valid keys: {', '.join(sorted(_KEYS))}")
    for key in ("methods", "scenarios", "seeds"):
        if not raw.get(key):
            raise ConfigError(f"compare config '{path}' needs a non-empty '{key}'")
    methods = raw["methods"]
    if isinstance(methods, list):  # plain method names
        methods = {str(m): [f"method={m}"] for m in methods}
    if not isinstance(methods, dict):
        raise ConfigError(f"'methods' in '{path}' must be a list of method names or a mapping row -> overrides")
    if not isinstance(raw["scenarios"], list) or not isinstance(raw["seeds"], list) or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in raw["seeds"]
    ):
        raise ConfigError(f"compare config '{path}': scenarios and seeds must be lists, seeds of integers >= 0, e.g. seeds: [0, 1, 2]")
    reference = raw.get("reference") or {}
    if not isinstance(reference, dict) or not all(
        isinstance(v, dict) and all(isinstance(x, (int, float)) for x in v.values()) for v in reference.values()
    ):
        raise ConfigError(f"'reference' in compare config '{path}' must map rows to {{scenario: ACC %}}, e.g. finetune: {{task: 87.2}}")
    _check_reference_columns(reference, path)
    rows = {str(k): budget.split(str(k), _str_list(v, f"methods.{k}")) for k, v in methods.items()}
    budgets = {row: b for row, (_, b) in rows.items() if b is not None}
    budget.stages(budgets, list(rows))  # an unknown row or a cycle: refused now
    base = raw.get("base")
    if base is not None and not Path(base).is_file() and (file.parent.parent / base).is_file():
        base = str(file.parent.parent / base)  # <folder>/compare/x.yaml names <folder>/<base>
    return Grid(
        base=base,
        out=Path(out or raw.get("out") or Path("runs") / "compare" / file.stem),
        methods={row: overrides for row, (overrides, _) in rows.items()},
        scenarios=[str(s) for s in raw["scenarios"]],
        seeds=list(raw["seeds"]),
        overrides=_str_list(raw.get("overrides", []), "overrides"),
        per_cell={str(k): _str_list(v, f"per_cell.{k}") for k, v in (raw.get("per_cell") or {}).items()},
        reference={str(k): dict(v) for k, v in reference.items()},
        budget_from=budgets,
    )


def _check_reference_columns(reference: dict, path: str) -> None:
    """A `<scenario>/<column>` reference names a compare column (`continual.metrics`)."""
    from continual.compare.stats import columns

    known = [c.key for c in columns()]
    for row, ref in reference.items():
        for key in ref:
            column = str(key).partition("/")[2]
            if "/" in str(key) and column not in known:
                raise ConfigError(f"reference {row}: '{key}' in compare config '{path}' names no compare column '{column}'; "
                                  f"give <scenario> or <scenario>/<column>, a column of: {', '.join(known)}")


def parse_seeds(text: str) -> list[int]:
    """'0-4,9' -> [0, 1, 2, 3, 4, 9]."""
    seeds = []
    try:
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            seeds += range(int(lo), int(hi or lo) + 1)
    except ValueError:
        seeds = []
    if not seeds:
        raise ConfigError(f"--seeds '{text}' is not a list of seeds; e.g. --seeds 0-19 or --seeds 0,3,5")
    return seeds


def select(grid: Grid, only: str | None) -> None:
    """Restrict the grid to the cells `only` names (comma-separated rows, scenarios or row/scenario)."""
    if only is None:
        return
    grid.only = [k.strip() for k in only.split(",") if k.strip()]
    known = {*grid.methods, *grid.scenarios, *(f"{r}/{s}" for r in grid.methods for s in grid.scenarios)}
    unknown = [k for k in grid.only if k not in known]
    if unknown or not grid.only:
        raise ConfigError(
            f"--only '{only}' names no cell of this grid ('{(unknown or [only])[0]}'); use rows "
            f"({', '.join(grid.methods)}), scenarios ({', '.join(grid.scenarios)}) or row/scenario"
        )
    # fixed once: `cells` is listed again at each stage, and another compare into the same folder
    # may finish a cell meanwhile (the lists of one run must agree)
    grid.read_back = {(row, sc, seed) for row in grid.methods for sc in grid.scenarios for seed in grid.seeds
                      if not grid.selected(row, sc) and finished_metrics(grid.cell_dir(row, sc, seed)) is not None}


