"""Statistics of a compare grid: per (method row, scenario), the mean and std over seeds of each metric."""

from __future__ import annotations

import statistics

from continual.compare.spec import Grid

def columns():
    """The compare columns, each as <key>_mean and <key>_std in the table, csv and W&B alike: the
    metrics declare them (`continual.metrics.registry`)."""
    from continual.metrics.registry import compare_columns

    return compare_columns()


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """The mean and the spread over seeds; one seed has no spread (None, not 0.0)."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def summarize(grid: Grid, results: dict) -> list[dict]:
    """One row per (method row, scenario): mean and std over seeds of each metric."""
    rows = []
    for row in grid.methods:
        for sc in grid.scenarios:
            if not grid.selected(row, sc) and not any((row, sc, s) in results for s in grid.seeds):
                continue  # left out by --only, and no cell of it finished earlier
            got = [results.get((row, sc, s)) for s in grid.seeds]
            ok = [m for m in got if isinstance(m, dict)]
            errors = [m for m in got if isinstance(m, str)]
            entry = {"method": row, "scenario": sc, "seeds": len(ok), "failed": len(errors), "error": errors[0] if errors else "",
                     "eval_split": "/".join(sorted({m.get("eval_split") or "test" for m in ok}))}  # the split its numbers are on
            for col in columns():
                entry[f"{col.key}_mean"], entry[f"{col.key}_std"] = _mean_std([col.read(m) for m in ok])
            entry["reference_acc"] = grid.reference_of(row, sc)
            for col in grid.referenced_columns():  # every row has every key: one csv header
                entry[f"reference_{col}"] = grid.reference_of(row, sc, col)
            rows.append(entry)
    return rows

