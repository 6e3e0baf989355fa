"""Run a W&B sweep file with no W&B server: propose, run `continual fit`, feed the result back.

Each trial is a cell of the grid runner (continual/grid.py): the sweep's own command (`continual
fit ... key=value`, what `wandb agent` would run; DDP settings in it work the same) in a
subprocess with W&B offline, `output_dir` inside the sweep directory and its output in a log
beside it. The sweep directory holds the run directories (each with its offline W&B run for
`wandb sync`), one log per run and `results.json`/`results.csv`, rewritten after every run;
running the same sweep again into the same directory continues it, first retrying the trials that
failed. `key=value` overrides apply to every trial; `--timeout` stops a trial (SIGTERM) that runs
too long; a sweep whose trials keep failing the same way stops with that error instead of
starting more of them. A trial another live process holds is recorded as running, and read back
by the next call once it has finished (retried if it ended unfinished). SIGINT or SIGTERM to the
sweep stops its running trial first (the grid runner passes it on), then the sweep.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

from continual.errors import ConfigError, SweepError
from continual.grid import Cell, Runner
from continual.rundir.lock import holder
from continual.rundir.results import finished_metrics
from continual.rundir.files import atomic_write
from continual.sweep import search, spec as sweep_spec


def _load_history(sweep_dir: Path) -> list[dict]:
    path = sweep_dir / "results.json"
    return json.loads(path.read_text())["runs"] if path.is_file() else []


def _write_results(sweep_dir: Path, spec: dict, history: list[dict]) -> None:
    atomic_write(sweep_dir / "results.json", json.dumps({"sweep": spec, "runs": history}, indent=2) + "\n")
    names = list(spec["parameters"])
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["run", *names, sweep_spec.ranked_column(spec), "status", "run_dir"])
    for h in history:
        w.writerow([h["run"], *(h["params"].get(n) for n in names), h["metric"], h["status"], h["run_dir"]])
    atomic_write(sweep_dir / "results.csv", buf.getvalue())


def format_table(spec: dict, history: list[dict]) -> str:
    names = list(spec["parameters"])
    goal = spec["metric"]["goal"]
    done = [h for h in history if h["metric"] is not None]
    best = (max if goal == "maximize" else min)(done, key=lambda h: h["metric"]) if done else None
    rows = [["run", *names, sweep_spec.ranked_column(spec), "status"]]
    for h in history:
        value = "" if h["metric"] is None else f"{h['metric']:.4f}" + (" *" if h is best else "")
        rows.append([h["run"], *(sweep_spec.format_value(h["params"].get(n)) for n in names), value, h["status"]])
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows) + f"\n* best ({goal} {sweep_spec.ranked_column(spec)})"


def trial(spec: dict, params: dict, run_dir: Path, overrides: list[str] = ()) -> Cell:
    """The trial with parameters `params`: the sweep command's config, `overrides` and the parameters on top."""
    config, fixed = sweep_spec.fit_config(spec, list(overrides))
    name = f"sweep_{spec['name']}"
    return Cell(label=f"[{run_dir.name}]", run_dir=run_dir, config=config, overrides=[*fixed, *sweep_spec.overrides(params)],
                group=name, job_type="sweep", tags=[name])


def is_running(h: dict) -> bool:
    return h["status"].startswith("running")


STOPPED = "stopped by a signal (continues from its checkpoint when the sweep is run again)"


def is_stopped(h: dict) -> bool:
    return h["status"] == STOPPED


def _settle(spec: dict, history: list[dict]) -> bool:
    """Trials recorded as running in another process: finished since (their metric is read), still
    running, or ended unfinished (then failed, so retried). True if any was running."""
    running = list(filter(is_running, history))
    for h in running:
        metrics = finished_metrics(Path(h["run_dir"]))
        if metrics is not None:
            h["metric"], h["status"] = sweep_spec.metric_value(spec, metrics), "finished"
        elif holder(Path(h["run_dir"])) is None:
            h["status"] = "failed (its process ended before it finished)"
    return bool(running)


def _retries(history: list[dict]) -> list[dict]:
    """Parameters of earlier trials that failed and never finished since: a continued sweep runs them first."""
    finished = [h["params"] for h in history if h["metric"] is not None or is_running(h) or is_stopped(h)]
    out = []
    for h in history:
        if h["metric"] is None and not is_running(h) and not is_stopped(h) and h["params"] not in finished and h["params"] not in out:
            out.append(h["params"])
    return out


def _figure(out: Path, spec: dict, history: list[dict], overrides: list[str]) -> None:
    """sweep.png beside results.csv, and in W&B when the trials log there."""
    from continual.config import load_config
    from continual.run_logger import logger_kinds
    from continual.sweep import plot

    path = plot.write(out, spec, history)
    if path is None:
        return
    config, fixed = sweep_spec.fit_config(spec, list(overrides))
    logger = load_config(config, fixed).logger
    if "wandb" in logger_kinds(logger):
        plot.log_wandb(path, spec, logger.project, logger.mode)
    print(f"sweep figure: {path}")


def run_sweep(path: str, count: int | None, sweep_dir: str | None, seed: int = 0, overrides: list[str] = (),
              timeout: float | None = None, max_failures: int = 3, workers: int = 1) -> list[dict]:
    """Run the sweep `path` with `overrides` on every trial, `workers` trials at once; stop once
    `max_failures` trials in a row failed with the same error (0: never). Returns the records of
    the trials this call ran."""
    spec = sweep_spec.load_spec(path)
    with Runner("sweep", "trial", "--dir", subprocess=True, timeout=timeout, workers=workers) as runner:
        runner.start_workers()  # they import while this process validates
        return _run(runner, spec, count, sweep_dir, seed, list(overrides), max_failures)


def _run(runner: Runner, spec: dict, count: int | None, sweep_dir: str | None, seed: int, overrides: list[str],
         max_failures: int) -> list[dict]:
    """`run_sweep` with its runner, whose workers may already be starting."""
    workers = runner.workers
    sweep_spec.validate(spec, extra=list(overrides))
    sweep_spec.require_data(spec, overrides)
    spec["ranked_on"] = sweep_spec.ranked_split(spec, list(overrides))  # named in results.json and the table
    warning = sweep_spec.split_warning(spec, spec["ranked_on"])
    if warning:
        print(warning, file=sys.stderr, flush=True)
    if count is None and spec["method"] != "grid":
        raise ConfigError(f"a {spec['method']} search never ends by itself; pass --count N")
    out = Path(sweep_dir or Path("runs") / f"sweep_{spec['name']}")
    out.mkdir(parents=True, exist_ok=True)
    history = _load_history(out)
    if _settle(spec, history):
        _write_results(out, spec, history)
    retry, resume = _retries(history), list(filter(is_stopped, history))  # stopped trials continue in their folders
    ran: list[dict] = []
    failures: list[tuple[str, str]] = []  # (run, error) of the failures in a row
    records: dict[Path, dict] = {}  # the record of each trial started, by its folder

    def trials():
        """The next trial, proposed once a worker is free: a running trial is in `history` (its
        metric None), so a grid does not repeat it and a random draw takes the next index."""
        for _ in range(count if count is not None else sys.maxsize):
            record = resume.pop(0) if resume else None
            params = record["params"] if record else retry.pop(0) if retry else search.next_params(spec, history, seed)
            if params is None:
                return
            name = record["run"] if record else f"run-{len(history):03d}"
            cell = trial(spec, params, out / name, overrides)
            (cfg,) = runner.check([cell])
            if record is None:
                record = {"run": name, "params": params, "metric": None, "run_dir": str(cell.run_dir)}
                history.append(record)
            records[cell.run_dir] = record
            record["status"] = "running (this sweep)"
            if workers > 1:
                _write_results(out, spec, history)
            yield cell, cfg

    def finished(cell: Cell, outcome) -> None:
        nonlocal failures
        record = records[cell.run_dir]
        value, error = None if outcome.metrics is None else sweep_spec.metric_value(spec, outcome.metrics), outcome.error
        if error is None and value is None and not outcome.stopped:
            error = f"no {spec['metric']['name']} in {cell.run_dir}/metrics.json"
        if outcome.running is not None:
            error, status = None, f"running in another process ({outcome.running})"
        elif outcome.stopped:
            error, status = None, STOPPED
        else:
            status = "finished" if error is None else f"failed ({error if outcome.rc is None else f'exit {outcome.rc}'}, see {cell.log.name})"
        record.update(metric=value, status=status)
        ran.append(record)
        _write_results(out, spec, history)
        print(f"[{record['run']}] {spec['metric']['name']} = {value}  {status}", flush=True)
        failures = [] if error is None else [f for f in failures if f[1] == error] + [(record["run"], error)]
        if max_failures and len(failures) >= max_failures:
            first, first_error = failures[0]
            raise SweepError(
                f"sweep stopped: {len(failures)} trials in a row failed the same way, the first ({out / first}.log): {first_error}; "
                f"fix that and run the same command again (it retries the failed trials)"
            )

    try:
        runner.run_many(trials(), finished)
    finally:  # a trial stopped in turn (one worker) is not kept: the sweep run again proposes it again
        runner.close()
        started = [h for h in history if h["status"] != "running (this sweep)"]
        if len(started) != len(history) and workers > 1:  # only a pool writes a running trial
            history[:] = started
            _write_results(out, spec, history)
    _figure(out, spec, history, overrides)
    print(format_table(spec, history))
    offline = "run-*/wandb/offline-run-*"  # only where the trials logged to W&B offline (not logger.kind=none)
    upload = f"   (upload the offline W&B runs with: wandb sync {out}/{offline})" if any(out.glob(offline)) else ""
    print(f"sweep directory: {out}{upload}")
    return [h for h in ran if not is_running(h) and not is_stopped(h)]
