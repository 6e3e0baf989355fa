"""`continual compare`: run a grid of methods x scenarios x seeds and tabulate it.

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

Each cell is an ordinary `continual fit` run into `<out>/<row>__<scenario>__s<seed>/`. A cell
whose metrics.json says `complete` is not run again; if its config.yaml differs from what the
grid now gives, the compare stops before running anything rather than mix two settings in one
table. A cell that fails is reported in the table and the exit code while the others still run.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from continual.errors import ConfigError, Interrupted, KeyboardInterrupted
from continual.run.results import finished_metrics

METRICS = ("acc", "bwt", "avg_forgetting", "wall_time_s", "trainable_per_task", "stored_floats", "mask_density")


def metric(m: dict, key: str):
    """A cell's value of `key` (trainable_per_task: the mean over its tasks); None where a run has none."""
    if key == "trainable_per_task":
        per_task = m.get("trainable_params_per_task")
        return statistics.fmean(per_task) if per_task else None
    return m.get(key)
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

    def selected(self, row: str, scenario: str) -> bool:
        return not self.only or bool({row, scenario, f"{row}/{scenario}"} & set(self.only))

    def cells(self):
        for row in self.methods:
            for sc in self.scenarios:
                if self.selected(row, sc):
                    for seed in self.seeds:
                        yield row, sc, seed

    def cell_dir(self, row: str, scenario: str, seed: int) -> Path:
        return self.out / f"{row}__{scenario}__s{seed}"

    def cell_overrides(self, row: str, scenario: str, seed: int) -> list[str]:
        extra = [*self.per_cell.get(scenario, []), *self.per_cell.get(row, []), *self.per_cell.get(f"{row}/{scenario}", [])]
        out = self.cell_dir(row, scenario, seed)
        grouping = [f"logger.group={self.out.name}/{row}", f"logger.job_type={scenario}"]  # W&B: a row's seeds together
        return [*grouping, *self.overrides, *self.methods[row], f"scenario={scenario}", f"seed={seed}", *extra, f"output_dir={out}", "overwrite=true"]


def _str_list(value, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
        raise ConfigError(f"{where} must be a list of key=value strings, e.g. [method=ewc, ewc.online=true]")
    return [str(v) for v in value]


def load_grid(path: str, out: str | None = None) -> Grid:
    from continual.config.load import resolve_config_path

    file = resolve_config_path(path, "compare config")
    try:
        raw = yaml.safe_load(file.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError):
        raise ConfigError(f"compare config '{path}' is not valid YAML; fix the syntax") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"compare config '{path}' must hold a mapping with keys {sorted(_KEYS)}")
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
    base = raw.get("base")
    if base is not None and not Path(base).is_file() and (file.parent.parent / base).is_file():
        base = str(file.parent.parent / base)  # <folder>/compare/x.yaml names <folder>/<base>
    return Grid(
        base=base,
        out=Path(out or raw.get("out") or Path("runs") / "compare" / file.stem),
        methods={str(k): _str_list(v, f"methods.{k}") for k, v in methods.items()},
        scenarios=[str(s) for s in raw["scenarios"]],
        seeds=list(raw["seeds"]),
        overrides=_str_list(raw.get("overrides", []), "overrides"),
        per_cell={str(k): _str_list(v, f"per_cell.{k}") for k, v in (raw.get("per_cell") or {}).items()},
        reference={str(k): dict(v) for k, v in reference.items()},
    )


def changed_since(run_dir: Path, cfg) -> str | None:
    """How `cfg` differs from the config a finished cell was run with (None: unchanged or unfinished).

    Skipping a finished cell is only right if it would be run the same way again; otherwise the
    table would silently mix results of two settings. Keys added to the schema after the cell ran
    take their defaults, which keep the earlier behaviour (`continual.run.state.config_diff`, the resume rule)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from continual.build import method_schema
    from continual.run.state import config_diff, fingerprint

    if finished_metrics(run_dir) is None:
        return None
    try:
        saved = OmegaConf.load(run_dir / "config.yaml")
    except (OSError, yaml.YAMLError, OmegaConfBaseException) as err:
        return f"its config.yaml cannot be read as a config: {str(err).splitlines()[0]}"
    return config_diff(fingerprint(saved), cfg, method_schema(cfg))


def run_grid(grid: Grid, shard: tuple[int, int] = (1, 1)) -> dict:
    """Run every unfinished cell in turn; returns {(row, scenario, seed): metrics or error string}.

    `shard=(i, n)` runs only every n-th cell, starting at the i-th, so n processes (or machines
    sharing the folder) split the grid; other shards' cells are read from disk once this shard is
    done, so the last shard to finish tabulates every finished cell."""
    from continual.config import load_config
    from continual.experiment import run

    grid.out.mkdir(parents=True, exist_ok=True)
    # validate every cell's config before running any, so a typo costs nothing
    configs = {cell: load_config(grid.base, grid.cell_overrides(*cell)) for cell in grid.cells()}
    stale = [f"{grid.cell_dir(*cell)} ({diff})" for cell, cfg in configs.items() if (diff := changed_since(grid.cell_dir(*cell), cfg))]
    if stale:
        raise ConfigError(
            f"{len(stale)} finished cell(s) were run with another config than this grid now gives, e.g. {stale[0]}; "
            "delete those cell folders to rerun them, or pass --out <new folder>"
        )
    results: dict = {}
    for i, (cell, cfg) in enumerate(configs.items()):
        done = finished_metrics(grid.cell_dir(*cell))
        label = f"[{i + 1}/{len(configs)}] {cell[0]} / {cell[1]}-IL / seed {cell[2]}"
        if done is not None:
            print(f"{label}: done earlier, skipped")
            results[cell] = done
            continue
        if i % shard[1] != shard[0] - 1:
            continue  # another shard's cell, not finished yet
        print(f"{label}: running")
        try:
            results[cell] = run(cfg)
        except (Interrupted, KeyboardInterrupted) as err:  # SIGTERM or Ctrl-C: stop the grid, not just this cell
            why = "Ctrl-C" if isinstance(err, KeyboardInterrupted) else "SIGTERM"
            raise type(err)(
                f"stopped by {why} in cell {grid.cell_dir(*cell)}; run the same compare command again to "
                "continue (finished cells are kept, this one starts over)"
            ) from None
        except Exception as err:  # one broken cell must not stop the grid
            grid.cell_dir(*cell).mkdir(parents=True, exist_ok=True)
            (grid.cell_dir(*cell) / "error.txt").write_text(traceback.format_exc())
            results[cell] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            print(f"{label}: FAILED ({results[cell]})")
    for cell in configs.keys() - results.keys():  # other shards' cells that finished meanwhile
        done = finished_metrics(grid.cell_dir(*cell))
        if done is not None:
            results[cell] = done
    return results


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(grid: Grid, results: dict) -> list[dict]:
    """One row per (method row, scenario): mean and std over seeds of each metric."""
    rows = []
    for row in grid.methods:
        for sc in grid.scenarios:
            if not grid.selected(row, sc):
                continue
            got = [results.get((row, sc, s)) for s in grid.seeds]
            ok = [m for m in got if isinstance(m, dict)]
            errors = [m for m in got if isinstance(m, str)]
            entry = {"method": row, "scenario": sc, "seeds": len(ok), "failed": len(errors), "error": errors[0] if errors else ""}
            for key in METRICS:
                entry[f"{key}_mean"], entry[f"{key}_std"] = _mean_std([metric(m, key) for m in ok])
            entry["reference_acc"] = grid.reference.get(row, {}).get(sc)
            rows.append(entry)
    return rows


def _fmt(mean, std, scale: float = 100.0, digits: int = 1) -> str:
    if mean is None:
        return "n/a"
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"


def _count(v) -> str:
    """A parameter or float count: 512k, 1.2M."""
    if v is None:
        return "n/a"
    return f"{v / 1e6:.2f}M" if v >= 1e6 else f"{v / 1e3:.1f}k" if v >= 1e3 else f"{v:.0f}"


def to_markdown(grid: Grid, rows: list[dict]) -> str:
    seeds = ", ".join(map(str, grid.seeds))
    lines = [f"# compare: {grid.out.name}", "", f"Mean ± std over seeds [{seeds}]. ACC, BWT, forgetting and mask density in %, "
             "wall time in s; memory: trainable parameters per task and the floats the method keeps besides its "
             "frozen backbone (stored floats, continual/metrics/memory.py).", ""]
    by = {(r["method"], r["scenario"]): r for r in rows}
    head = ["method", *[f"{sc}-IL ACC" for sc in grid.scenarios]]
    if grid.reference:
        head = ["method", *[h for sc in grid.scenarios for h in (f"{sc}-IL ACC", f"{sc}-IL paper")]]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in grid.methods:
        cells = [row]
        for sc in grid.scenarios:
            r = by.get((row, sc))
            if r is None:  # left out by --only
                cells += ["—", ""] if grid.reference else ["—"]
                continue
            cells.append(_fmt(r["acc_mean"], r["acc_std"]) if r["seeds"] else ("FAILED" if r["failed"] else "n/a"))
            if grid.reference:
                ref = r["reference_acc"]
                cells.append("" if ref is None else f"{ref:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| method | scenario | seeds | ACC | BWT | forgetting | trainable/task | stored floats | mask density | wall time (s) | status |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        status = f"{r['failed']} failed: {r['error']}" if r["failed"] else "ok"
        lines.append(
            f"| {r['method']} | {r['scenario']} | {r['seeds']} | {_fmt(r['acc_mean'], r['acc_std'])} | "
            f"{_fmt(r['bwt_mean'], r['bwt_std'])} | {_fmt(r['avg_forgetting_mean'], r['avg_forgetting_std'])} | "
            f"{_count(r['trainable_per_task_mean'])} | {_count(r['stored_floats_mean'])} | "
            f"{_fmt(r['mask_density_mean'], r['mask_density_std'])} | "
            f"{_fmt(r['wall_time_s_mean'], r['wall_time_s_std'], 1.0, 0)} | {status} |"
        )
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def plot(grid: Grid, rows: list[dict]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = {(r["method"], r["scenario"]): r for r in rows}
    names, n_sc = list(grid.methods), len(grid.scenarios)
    fig, ax = plt.subplots(figsize=(1.5 + 0.9 * len(names) * max(n_sc, 1) / 2, 3.5))
    width = 0.8 / n_sc
    for k, sc in enumerate(grid.scenarios):
        mean = [100 * (by.get((m, sc), {}).get("acc_mean") or math.nan) for m in names]
        std = [100 * (by.get((m, sc), {}).get("acc_std") or 0.0) for m in names]
        ax.bar([i + k * width for i in range(len(names))], mean, width, yerr=std, label=f"{sc}-IL", capsize=2)
    ax.set_xticks([i + width * (n_sc - 1) / 2 for i in range(len(names))], names, rotation=30, ha="right")
    ax.set_ylabel("ACC (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def write_reports(grid: Grid, rows: list[dict]) -> None:
    from continual.run.files import atomic_write

    atomic_write(grid.out / "compare.md", to_markdown(grid, rows))
    atomic_write(grid.out / "compare.csv", to_csv(rows))
    fig = plot(grid, rows)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    atomic_write(grid.out / "compare.png", buf.getvalue())


def log_wandb(grid: Grid, rows: list[dict], project: str, mode: str | None) -> None:
    """The summary as a W&B table, in its own run (offline unless the user chose otherwise)."""
    import os

    import wandb

    run = wandb.init(project=project, name=f"compare-{grid.out.name}", dir=str(grid.out), mode=mode or os.environ.get("WANDB_MODE", "offline"), job_type="compare")
    run.log({"compare": wandb.Table(columns=list(rows[0]), data=[list(r.values()) for r in rows])})
    run.log({"compare_plot": wandb.Image(str(grid.out / "compare.png"))})
    run.finish()


def parse_shard(text: str | None) -> tuple[int, int]:
    """'2/3' -> (2, 3): the second of three shards."""
    if text is None:
        return 1, 1
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        i = n = 0
    if not 1 <= i <= n:
        raise ConfigError(f"--shard '{text}' is not I/N with 1 <= I <= N; e.g. --shard 1/2 and --shard 2/2 in two processes")
    return i, n


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


def compare(
    path: str, out: str | None = None, overrides: list[str] = (), wandb: bool = True, shard: str | None = None,
    seeds: str | None = None, only: str | None = None,
) -> int:
    """Run the grid (`overrides` added to every cell), write the reports; 1 if any cell failed."""
    grid = load_grid(path, out)
    grid.overrides += list(overrides)
    if seeds is not None:
        grid.seeds = parse_seeds(seeds)
    select(grid, only)
    results = run_grid(grid, parse_shard(shard))
    rows = summarize(grid, results)
    write_reports(grid, rows)
    if wandb:
        from continual.config import load_config

        base = load_config(grid.base, grid.cell_overrides(*next(grid.cells())))  # grid-wide keys may be a row method's
        if base.logger.wandb:
            log_wandb(grid, rows, base.logger.project, base.logger.mode)
    print(to_markdown(grid, rows))
    print(f"compare directory: {grid.out}")
    return 1 if any(r["failed"] for r in rows) else 0
