"""The compare tables: markdown (a result per row and scenario, then every metric) and csv (every column)."""

from __future__ import annotations

import csv
import io

from continual.compare.spec import Grid
from continual.compare.stats import columns


def _fmt(mean, std, scale: float = 100.0, digits: int = 1) -> str:
    """mean ± std; a spread of one seed is `n/a` (a `± 0.0` would claim a measured spread)."""
    if mean is None:
        return "n/a"
    return f"{scale * mean:.{digits}f} ± " + ("n/a" if std is None else f"{scale * std:.{digits}f}")


def _count(v) -> str:
    """A parameter or float count: 512k, 1.2M."""
    if v is None:
        return "n/a"
    return f"{v / 1e6:.2f}M" if v >= 1e6 else f"{v / 1e3:.1f}k" if v >= 1e3 else f"{v:.0f}"


def _cell(col, mean, std) -> str:
    """A column's mean ± std as its format says: a percentage, a count, or seconds."""
    if col.format == "count":
        return _count(mean)
    return _fmt(mean, std, 1.0, 0) if col.format == "seconds" else _fmt(mean, std)


def _split_note(rows: list[dict]) -> str:
    """Numbers on the validation split (data.eval_split=val, for choosing settings) said as such:
    they must not be read, or cited, as test numbers."""
    measured = [r for r in rows if r["eval_split"]]
    on_val = [f"{r['method']}/{r['scenario']}" for r in measured if "val" in r["eval_split"].split("/")]
    if not on_val:
        return ""
    if len(on_val) == len(measured):
        return " **Measured on the validation split** (data.eval_split=val), not on the test split."
    return f" **Measured on the validation split** (data.eval_split=val): {', '.join(on_val)}; the other rows on test."


def to_markdown(grid: Grid, rows: list[dict]) -> str:
    seeds = ", ".join(map(str, grid.seeds))
    percent = ", ".join(c.title for c in columns() if c.format == "percent")
    lines = [f"# compare: {grid.out.name}", "", f"Mean ± std over seeds [{seeds}]. {percent} in %, "
             "wall time in s; memory: trainable parameters per task and the floats the method keeps besides its "
             "frozen backbone (stored floats, continual/metrics/memory.py)." + _split_note(rows), ""]
    by = {(r["method"], r["scenario"]): r for r in rows}
    titles = {c.key: c.title for c in columns()}
    # per scenario: ACC, then the columns a reference names for it (`<scenario>/<column>`)
    shown = [(sc, col) for sc in grid.scenarios for col in ("acc", *grid.referenced_columns(sc))]
    head = ["method"]
    for sc, col in shown:
        head += [f"{sc}-IL {titles[col]}", *([f"{sc}-IL paper" if col == "acc" else "paper"] if grid.reference else [])]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in grid.methods:
        cells = [row]
        for sc, col in shown:
            r = by.get((row, sc))
            if r is None:  # left out by --only
                cells += ["—", ""] if grid.reference else ["—"]
                continue
            cells.append(_fmt(r[f"{col}_mean"], r[f"{col}_std"]) if r["seeds"] else ("FAILED" if r["failed"] else "n/a"))
            if grid.reference:
                ref = r[f"reference_{col}"]
                cells.append("" if ref is None else f"{ref:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    cols = columns()
    lines += ["", "| method | scenario | seeds | " + " | ".join(c.title for c in cols) + " | status |", "|---|---|---|" + "---|" * (len(cols) + 1)]
    for r in rows:
        status = f"{r['failed']} failed: {r['error']}" if r["failed"] else "ok" if r["seeds"] else "not run"
        cells = [_cell(c, r[f"{c.key}_mean"], r[f"{c.key}_std"]) for c in cols]
        lines.append(f"| {r['method']} | {r['scenario']} | {r['seeds']} | " + " | ".join(cells) + f" | {status} |")
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()
