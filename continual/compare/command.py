"""`continual compare`: run a compare grid's cells with the grid runner, then tabulate them.

Cells another process is running (another compare into the same --out, a shard) are left to it
and tabulated by whichever finishes last."""

from __future__ import annotations

from continual.compare import plot, spec, stats, tables
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
    cell, every cell's config (checked before any cell runs), and the folders of the cells still
    running in another process. `workers` cells run at once, each in a subprocess."""
    grid.out.mkdir(parents=True, exist_ok=True)
    runner, keys, cells = Runner("compare", "cell", "--out", workers=workers), list(grid.cells()), grid.run_cells()
    configs = runner.check(cells)
    outcomes = runner.run_all(cells, configs, shard)
    results = {key: o.metrics if o.error is None else o.error for key, o in zip(keys, outcomes) if o is not None and o.running is None}
    return results, configs, [cell.run_dir for cell, o in zip(cells, outcomes) if o is not None and o.running is not None]


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
    logger = configs[0].logger  # grid-wide logger settings: the first cell's
    if "wandb" in logger_kinds(logger):  # the summary goes where the cells go
        from continual.compare.wandb_table import log_wandb

        log_wandb(grid, rows, logger.project, logger.mode)
    print(tables.to_markdown(grid, rows))
    print(f"compare directory: {grid.out}")
    if running:
        print(f"{len(running)} cell(s) still running in another process, e.g. {running[0]}; "
              "the process that finishes last tabulates them, or run this compare again once they end", flush=True)
    return 1 if any(r["failed"] for r in rows) else 0
