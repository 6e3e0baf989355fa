"""`continual compare`: run a compare grid's cells with the grid runner, then tabulate them.

Cells another process is running (another compare into the same --out, a shard) are left to it
and tabulated by whichever finishes last."""

from __future__ import annotations

from continual.compare import budget, plot, spec, stats, tables
from continual.grid import Runner, parse_shard
from continual.run_logger import logger_kinds


def write_reports(grid: spec.Grid, rows: list[dict]) -> None:
    from continual.rundir.files import atomic_write

    atomic_write(grid.out / "compare.md", tables.to_markdown(grid, rows))
    atomic_write(grid.out / "compare.csv", tables.to_csv(rows))
    atomic_write(grid.out / "compare.png", plot.png(grid, rows))
    atomic_write(grid.out / "compare_memory.png", plot.memory_png(grid, rows))


def run_grid(grid: spec.Grid, shard: tuple[int, int] = (1, 1), workers: int = 1) -> tuple[dict, list, list]:
    """{(row, scenario, seed): metrics, or the error of a failed cell} for every finished or failed
    cell, every cell's config (checked before any cell of its stage runs), and the folders of the
    cells still running in another process. `workers` cells run at once, each in a subprocess.

    Rows sized by another row's memory (`budget_from`, continual/compare/budget.py) run in a later
    stage than that row, once its cells' stored floats are known; that each is a replay method
    with a `buffer_floats` key is checked before anything runs."""
    with Runner("compare", "cell", "--out", workers=workers) as runner:  # its workers serve every stage
        runner.start_workers()  # they import while this process checks the cells
        return _run_stages(grid, runner, shard)


def _run_stages(grid: spec.Grid, runner: Runner, shard: tuple[int, int]) -> tuple[dict, list, list]:
    from continual.config import load_config

    keys = list(grid.cells())
    first = {}
    for key, cell in zip(keys, grid.run_cells()):
        first.setdefault(key[0], cell)
    buffer_key = {row: budget.buffer_key(load_config(first[row].config, first[row].fit_overrides()), row)
                  for row in grid.budget_from if row in first}
    results, configs, running = {}, [], []
    for rows in budget.stages(grid.budget_from, list(grid.methods)):
        sizes = {k: budget.floats(grid, *k, results) for k in keys if k[0] in rows and k[0] in grid.budget_from}
        results.update({k: v for k, v in sizes.items() if isinstance(v, str)})  # its referenced cell failed
        cells = grid.run_cells({k: [f"{buffer_key[k[0]]}={v}"] for k, v in sizes.items() if isinstance(v, float)})
        stage = [(k, c) for k, c in zip(keys, cells) if k[0] in rows and isinstance(sizes.get(k, 0.0), float)]
        for k, c in zip(keys, cells):
            if k in sizes and sizes[k] is None:
                ref = grid.budget_from[k[0]]
                then = ("run this compare again once it is" if grid.selected(ref, k[1])
                        else f"--only leaves {ref} out: add it to --only, or run it first")
                print(f"{c.label}: waits for the stored floats of {ref}'s cell {k[1]}/s{k[2]}, not finished yet; {then}", flush=True)
        stage_configs = runner.check([c for _, c in stage])
        grid.out.mkdir(parents=True, exist_ok=True)  # after the check: a refused grid leaves no folder
        outcomes = runner.run_all([c for _, c in stage], stage_configs, shard)
        results.update({k: o.metrics if o.error is None else o.error for (k, _), o in zip(stage, outcomes) if o is not None and o.running is None})
        configs += stage_configs
        running += [c.run_dir for (_, c), o in zip(stage, outcomes) if o is not None and o.running is not None]
    return results, configs, running


def compare(path: str, out: str | None = None, overrides: list[str] = (), shard: str | None = None,
            seeds: str | None = None, only: str | None = None, workers: int = 1) -> int:
    """Run the grid (`overrides` added to every cell), write the reports; 1 if any cell failed."""
    grid = spec.load_grid(path, out)
    grid.overrides += list(overrides)
    if seeds is not None:
        grid.seeds = spec.parse_seeds(seeds)
    spec.select(grid, only)
    results, configs, running = run_grid(grid, parse_shard(shard), workers)
    rows = stats.summarize(grid, results)
    write_reports(grid, rows)
    logger = configs[0].logger if configs else None  # grid-wide logger settings: the first cell's
    if logger is not None and "wandb" in logger_kinds(logger):  # the summary goes where the cells go
        from continual.compare.wandb_table import log_wandb

        log_wandb(grid, rows, logger.project, logger.mode)
    print(tables.to_markdown(grid, rows))
    print(f"compare directory: {grid.out}")
    if running:
        print(f"{len(running)} cell(s) still running in another process, e.g. {running[0]}; "
              "the process that finishes last tabulates them, or run this compare again once they end", flush=True)
    return 1 if any(r["failed"] for r in rows) else 0
