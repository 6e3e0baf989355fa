"""The one runner of many runs: a cell of `continual compare` and a trial of `continual sweep` alike.

A cell is a config (a base config file plus overrides) and the run folder it writes. The runner
loads and checks every cell's config before running any, skips a cell whose folder already holds
a finished run of the same config (`finished_metrics`, plus the resume rule `config_diff`, so a
table never mixes two settings), and refuses a finished cell whose config has changed, or any
cell yet to run whose data set is not there (`require_files`: each would fail alike). It runs a
cell in this process or, with a log and an optional timeout, in a subprocess; either way a failed
cell's error text is kept beside its folder (`<run folder>.log`) and the other cells still run.
A subprocess cell is a `continual fit` forked from a keep-alive worker (continual/grid_worker.py),
which has imported torch and Lightning once for all its cells and holds no state of an earlier one.
A cell whose folder another live process holds (its run lock, or a subprocess cell's log lock) is
"running": skipped for now, not failed, and read back by a later run once it has finished; so two
commands into one output folder share the cells out. SIGINT and SIGTERM to this process go on to a
subprocess cell, which saves its checkpoint and stops; then the whole grid stops, with no orphan.
Run again, a stopped cell of the same config resumes from its checkpoint (`Cell.resume`). A cell
in a subprocess says where it is on stderr once a minute (its heartbeat, relayed from its log).
Every cell of one setting shares a logger group (and job type), so W&B draws its seeds together.
Cells are independent of each other, so `workers=N` runs N at once (`Runner.run_many`): N keep-alive
workers, each with its share of the machine (`worker_env`; on CPU the first imports and forks the
others), each cell in a process of its own; signals reach every running one.
"""

from __future__ import annotations

import fcntl
import glob
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from continual.errors import ConfigError, DataError, Interrupted, KeyboardInterrupted
from continual.grid_worker import CellProcess, Lost, Worker
from continual.rundir.files import atomic_write, storage_error
from continual.rundir.lock import holder
from continual.rundir.results import finished_metrics


@dataclass
class Cell:
    label: str  # how progress lines name it, e.g. "[3/8] ewc / class-IL / seed 1" or "[run-004]"
    run_dir: Path
    config: str | None  # the base config (a path or a shipped name); None: the default one
    overrides: list[str] = field(default_factory=list)
    group: str | None = None  # logger.group: the runs W&B draws together
    job_type: str | None = None  # logger.job_type: a second grouping level
    tags: list[str] = field(default_factory=list)  # logger.tags
    resume: bool = False  # continue the stopped run in run_dir (set by `Runner.check`), else start it over

    @property
    def log(self) -> Path:
        """Beside the run folder: a subprocess's whole output, or an in-process failure's traceback."""
        return self.run_dir.with_name(f"{self.run_dir.name}.log")

    def fit_overrides(self) -> list[str]:
        """The cell's overrides of its base config: grouping first (a cell's own setting wins), its folder last."""
        grouping = [f"logger.{k}={v}" for k, v in (("group", self.group), ("job_type", self.job_type)) if v is not None]
        grouping += [f"logger.tags=[{','.join(self.tags)}]"] if self.tags else []
        folder = f"resume={self.run_dir}" if self.resume else "overwrite=true"
        return [*grouping, *self.overrides, f"output_dir={self.run_dir}", folder]

    def fit_command(self) -> list[str]:
        """The `continual fit` arguments that run this cell."""
        return ["fit", *(["--config", self.config] if self.config is not None else []), *self.fit_overrides()]


@dataclass
class Outcome:
    metrics: dict | None = None  # the finished run's metrics.json
    error: str | None = None  # one line: why the cell failed
    rc: int | None = None  # a subprocess's exit code (None: in-process, or timed out)
    skipped: bool = False  # finished earlier, not run again
    running: str | None = None  # the live process that runs this cell now ("pid 12 on host"): not run here, not failed
    stopped: bool = False  # stopped by a signal with the rest of its pool: checkpointed, not failed


def changed_since(run_dir: Path, cfg) -> str | None:
    """How `cfg` differs from the config a finished cell was run with (None: unchanged or unfinished).

    Skipping a finished cell is only right if it would be run the same way again. Keys added to
    the schema after the cell ran take their defaults, which keep the earlier behaviour (the resume rule)."""
    if finished_metrics(run_dir) is None:
        return None
    return _diff(run_dir, cfg)


def stopped(run_dir: Path) -> bool:
    """An unfinished run with a checkpoint in `run_dir` (stopped by a signal, a timeout or a crash)."""
    from continual.rundir.layout import last_checkpoint_path, state_path

    return finished_metrics(run_dir) is None and (state_path(run_dir).is_file() or last_checkpoint_path(run_dir).is_file())


def _diff(run_dir: Path, cfg) -> str | None:
    """How `cfg` differs from the config.yaml in `run_dir` (None: the same run)."""
    from omegaconf.errors import OmegaConfBaseException

    from continual.build import method_schema
    from continual.rundir.results import saved_config
    from continual.rundir.state import config_diff, fingerprint

    try:
        saved = saved_config(run_dir)
    except (OSError, ValueError, yaml.YAMLError, OmegaConfBaseException) as err:
        return f"its config.yaml cannot be read as a config: {str(err).splitlines()[0]}"
    return config_diff(fingerprint(saved), cfg, method_schema(cfg))


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


def _failure(log: Path, rc: int) -> str:
    """A failed subprocess's error: its `continual: error:` line, else the log's last line, else the exit code."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line.removeprefix("continual: error: ") for line in lines if line.startswith("continual: error: ")]
    return errors[-1] if errors else lines[-1] if lines else f"exit {rc}"


def cores() -> int:
    """The CPU cores this process may run on (a container's or taskset's share, not the machine's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def visible_gpus(environ=os.environ) -> list[str]:
    """The CUDA devices a cell could use: $CUDA_VISIBLE_DEVICES's list, else every device torch counts
    (none without an NVIDIA or ROCm device file: the workers then start before this process imports torch)."""
    if "CUDA_VISIBLE_DEVICES" in environ:
        return [d for d in environ["CUDA_VISIBLE_DEVICES"].split(",") if d.strip()]
    if not (glob.glob("/dev/nvidia[0-9]*") or os.path.exists("/dev/kfd")):
        return []
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def worker_env(slot: int, workers: int, n_cores: int, gpus: list[str], environ=os.environ) -> dict[str, str]:
    """What the worker in `slot` (of `workers`) adds to its cell's environment: its share of the
    cores as torch threads (OMP_NUM_THREADS; one the caller set is kept, a pin), and one GPU: its
    own while there are as many, else shared round-robin."""
    env = {} if "OMP_NUM_THREADS" in environ else {"OMP_NUM_THREADS": str(max(1, n_cores // workers))}
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
    return env


def describe_workers(workers: int, n_cores: int, gpus: list[str], environ=os.environ) -> str:
    """The line a parallel grid starts with: how the machine is shared, and what that changes."""
    threads = environ.get("OMP_NUM_THREADS")
    how = (f"{threads} torch thread(s) each (OMP_NUM_THREADS, as set)" if threads is not None
           else f"{max(1, n_cores // workers)} torch thread(s) each ({n_cores} cores / {workers} workers)")
    if gpus:
        how += f", GPU {', '.join(gpus)} " + ("one each" if len(gpus) >= workers else "shared")
    return (f"{workers} workers: each cell in its own process with {how}; "
            "a different thread count can change the last digits of the results")


@dataclass
class Runner:
    """How the cells of one command run: `command` and `unit` name them in messages ("compare",
    "cell"), `out_option` is the command's option for another output folder."""

    command: str
    unit: str
    out_option: str
    subprocess: bool = False  # each cell a `continual fit` process of its own, W&B offline, output in its log
    timeout: float | None = None  # subprocess only: SIGTERM a cell that runs longer; it counts as failed
    workers: int = 1  # cells at once (`run_many`); more than one runs each in a subprocess

    def __post_init__(self):
        if self.workers < 1:
            raise ConfigError(f"--workers {self.workers}: give 1 or more cells to run at once")
        self.subprocess = self.subprocess or self.workers > 1
        self._workers: list[Worker] = []
        self._shares = ""  # how the workers share the machine (`describe_workers`), once they are started
        self._held = False  # in a `with` block: the workers last until it ends, not one `run_many`

    def __enter__(self) -> "Runner":
        self._held = True
        return self

    def __exit__(self, *exc) -> None:
        self._held = False
        self.close()

    def start_workers(self) -> None:
        """Start the keep-alive workers of subprocess cells now: their imports (seconds) then overlap
        this process's own checks of the cells, which import torch too."""
        if self.subprocess and not self._workers:
            if self.workers == 1:
                self._workers = [Worker(OFFLINE)]
            else:
                n_cores, gpus = cores(), visible_gpus()
                self._workers = [Worker({**OFFLINE, **worker_env(slot, self.workers, n_cores, gpus)}) for slot in range(self.workers)]
                self._shares = describe_workers(self.workers, n_cores, gpus)
            first = self._workers[0]
            first.spawn()
            for worker in self._workers[1:]:  # on CPU one import serves the pool; a GPU each needs its own environment
                if worker.env == first.env:
                    worker.fork(first)
                else:
                    worker.spawn()

    def close(self) -> None:
        """End the keep-alive workers, the forked ones before the first, which then reaps them."""
        for worker in reversed(self._workers):
            worker.close()
        self._workers = []

    def check(self, cells: list[Cell]) -> list:
        """Every cell's config, validated; a ConfigError before anything runs if one is invalid or
        a finished cell was run with another config."""
        from continual.config import load_config
        from continual.data.streams import require_files

        configs = [load_config(cell.config, cell.fit_overrides()) for cell in cells]
        stale = [f"{cell.run_dir} ({diff})" for cell, cfg in zip(cells, configs) if (diff := changed_since(cell.run_dir, cfg))]
        if stale:
            raise ConfigError(
                f"{len(stale)} finished {self.unit}(s) were run with another config than this {self.command} now gives, "
                f"e.g. {stale[0]}; delete those {self.unit} folders to rerun them, or pass {self.out_option} <new folder>"
            )
        for cell, cfg in zip(cells, configs):  # a data set that is not there would fail every cell alike: once, before any runs
            if finished_metrics(cell.run_dir) is None:
                try:
                    require_files(cfg.data)
                except DataError as err:
                    raise DataError(f"{cell.label}: {err}") from None
        for i, cell in enumerate(cells):  # a stopped cell of the same config continues from its checkpoint
            cell.resume = stopped(cell.run_dir) and _diff(cell.run_dir, configs[i]) is None
            if cell.resume:
                configs[i] = load_config(cell.config, cell.fit_overrides())
        return configs

    def run(self, cell: Cell, cfg, worker: Worker | None = None, passing: "_PassSignals | None" = None) -> Outcome:
        """Run `cell` (config `cfg`, from `check`) unless it finished earlier; a subprocess cell
        runs in `worker` (None: one of its own) and is registered with `passing` (a pool's signals)."""
        done = finished_metrics(cell.run_dir)
        if done is not None:
            print(f"{cell.label}: done earlier, skipped", flush=True)
            return Outcome(metrics=done, skipped=True)
        outcome = _held(cell)
        if outcome is None:
            outcome = self._start(cell, cfg, worker, passing)
        if outcome.stopped:
            print(f"{cell.label}: stopped by a signal, checkpoint saved", flush=True)
        elif outcome.running is not None:
            print(f"{cell.label}: running in another process ({outcome.running}), skipped for now", flush=True)
        elif outcome.error is not None:
            print(f"{cell.label}: FAILED ({outcome.error})", flush=True)
        return outcome

    def _start(self, cell: Cell, cfg, worker: Worker | None, passing: "_PassSignals | None") -> Outcome:
        print(f"{cell.label}: running" + (f" continual {' '.join(cell.fit_command())}" if self.subprocess else ""), flush=True)
        if passing is not None:  # in a pool: the pool reports a stop, for all its cells at once
            return self._subprocess(cell, worker, passing)
        try:
            outcome = self._subprocess(cell, worker) if self.subprocess else self._in_process(cell, cfg)
        except (Interrupted, KeyboardInterrupted) as err:  # SIGTERM or Ctrl-C: stop every cell, not just this one
            why = "Ctrl-C" if isinstance(err, KeyboardInterrupted) else "SIGTERM"
            raise type(err)(
                f"stopped by {why} in {self.unit} {cell.run_dir}; run the same {self.command} command again to "
                f"continue (finished {self.unit}s are kept, this one resumes from its checkpoint)"
            ) from None
        return outcome

    def run_all(self, cells: list[Cell], configs: list, shard: tuple[int, int] = (1, 1)) -> list[Outcome | None]:
        """Run every unfinished cell (configs from `check`) in turn; an Outcome per cell (None: not finished).

        `shard=(i, n)` runs only every n-th cell, starting at the i-th, so n processes (or machines
        sharing the folder) split the cells; other shards' cells are read from disk once this shard
        is done, so the last shard to finish sees every finished cell."""
        outcomes: list[Outcome | None] = [None] * len(cells)
        mine = [i for i, cell in enumerate(cells) if i % shard[1] == shard[0] - 1 or finished_metrics(cell.run_dir) is not None]
        index = {id(cells[i]): i for i in mine}
        self.run_many(((cells[i], configs[i]) for i in mine), lambda cell, o: outcomes.__setitem__(index[id(cell)], o))
        for i, cell in enumerate(cells):  # other shards' cells that finished meanwhile
            if (outcomes[i] is None or outcomes[i].running) and (done := finished_metrics(cell.run_dir)) is not None:
                outcomes[i] = Outcome(metrics=done, skipped=True)
        return outcomes

    def run_many(self, jobs: Iterator[tuple[Cell, object]], done: Callable[[Cell, Outcome], None]) -> None:
        """Run the (cell, config) pairs `jobs` yields, `workers` at once, each in a subprocess with
        its share of the machine; `done(cell, outcome)` gets each outcome as it comes, in this
        thread. `jobs` is drawn from only when a worker is free, so it may depend on the outcomes
        so far (a sweep's next trial). If `done` raises, or SIGINT or SIGTERM arrive (passed on to
        every running cell, which checkpoints and stops), no more cells start, the running ones
        are waited for, then the error is raised. One worker runs the cells in turn, as `run` does.
        Subprocess cells run in keep-alive workers that last until the jobs are done (or, in a
        `with runner:` block, until it ends)."""
        self.start_workers()
        try:
            if self.workers == 1:
                for cell, cfg in jobs:
                    done(cell, self.run(cell, cfg, self._workers[0] if self.subprocess else None))
                return
            print(self._shares, flush=True)
            self._pool(jobs, done, self._workers)
        finally:
            if not self._held:
                self.close()

    def _pool(self, jobs: Iterator[tuple[Cell, object]], done: Callable[[Cell, Outcome], None], workers: list[Worker]) -> None:
        """`run_many` with more than one worker: a thread per running cell, each waiting on its worker."""
        free, running, error, exhausted = list(range(self.workers)), {}, None, False
        with _PassSignals() as passing, ThreadPoolExecutor(self.workers) as pool:
            while True:
                while free and not exhausted and error is None and not passing.received:
                    job = next(jobs, None)
                    if job is None:
                        exhausted = True
                        break
                    slot = free.pop(0)
                    running[pool.submit(self.run, *job, workers[slot], passing)] = (job[0], slot)
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    cell, slot = running.pop(future)
                    free.append(slot)
                    try:
                        done(cell, future.result())
                    except Exception as err:  # noqa: BLE001 - raised once the running cells are done
                        error = error or err
        if passing.received:
            why = "Ctrl-C" if passing.received[0] == signal.SIGINT else "SIGTERM"
            raise (KeyboardInterrupted if why == "Ctrl-C" else Interrupted)(
                f"stopped by {why}: the running {self.unit}s saved their checkpoints; run the same {self.command} command "
                f"again to continue (finished {self.unit}s are kept, stopped ones resume from their checkpoints)"
            )
        if error is not None:
            raise error

    def _in_process(self, cell: Cell, cfg) -> Outcome:
        from continual import experiment

        cell.log.unlink(missing_ok=True)  # an earlier failure's traceback
        try:
            return Outcome(metrics=experiment.run(cfg))
        except Interrupted:
            raise
        except Exception as err:  # one broken cell must not stop the others
            if (held := _held(cell)) is not None:  # another process took the folder while this one started
                return held
            atomic_write(cell.log, traceback.format_exc())  # a full disk: one line (StorageError)
            return Outcome(error=f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")

    def _subprocess(self, cell: Cell, worker: Worker | None = None, passing: "_PassSignals | None" = None) -> Outcome:
        """The cell forked by `worker` (None: one started for this cell alone) into its own session,
        so that only this process passes signals on to it; a timed-out cell gets SIGTERM first, so
        it saves its checkpoint as any stopped run does. `passing`: a pool's signal relay (None:
        this cell's own, while it runs)."""
        try:
            cell.run_dir.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(cell.log, os.O_WRONLY | os.O_CREAT, 0o666)
        except OSError as err:
            raise storage_error(cell.log, err) from None
        try:  # the log's lock, shared with the cell: another runner's cell before its run lock is taken
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return Outcome(running=f"another {self.command}'s subprocess, output in {cell.log}")
        os.ftruncate(fd, 0)
        own, alone = passing is None, worker is None
        worker = Worker(OFFLINE) if alone else worker
        try:
            with (_PassSignals() if own else passing) as passing:
                proc = passing.start(worker.start(cell.fit_command(), fd))
                try:
                    rc = self._wait(cell, proc)
                finally:
                    passing.finish(proc)
        except Lost as err:
            return Outcome(error=str(err))
        finally:
            os.close(fd)
            if alone:
                worker.close()
        if passing.received and own:  # the cell has stopped (its log says how); now the grid stops
            raise (KeyboardInterrupted if passing.received[0] == signal.SIGINT else Interrupted)("stopped")
        if passing.received and rc != 0:  # stopped with its pool: not a failure
            return Outcome(stopped=True, rc=rc)
        if rc is None:
            return Outcome(error=f"timed out after {self.timeout:g} s")
        if proc.lost is not None:
            return Outcome(error=proc.lost, rc=rc)
        if rc != 0:
            return _held(cell) or Outcome(error=_failure(cell.log, rc), rc=rc)
        metrics = finished_metrics(cell.run_dir)
        return Outcome(metrics=metrics, rc=rc, error=None if metrics is not None else f"no complete metrics.json in {cell.run_dir}")

    def _wait(self, cell: Cell, proc: CellProcess) -> int | None:
        """The cell's exit code (None: stopped at the timeout); meanwhile a line to stderr a
        minute saying where the cell is, read from its log (its heartbeat or progress bar)."""
        from continual.callbacks.heartbeat import EVERY_S, elapsed, progress_in

        start = time.monotonic()
        while True:
            left = None if self.timeout is None else start + self.timeout - time.monotonic()
            try:
                return proc.wait(timeout=EVERY_S if left is None else max(0.0, min(EVERY_S, left)))
            except subprocess.TimeoutExpired:
                if left is not None and left <= EVERY_S:
                    _stop(proc)
                    return None
            where = progress_in(_tail(cell.log))
            at = "starting" if where is None else f"task {where[0]}/{where[1]}, epoch {where[2]}"
            print(f"{cell.label}: {at}, {elapsed(time.monotonic() - start)} elapsed", file=sys.stderr, flush=True)


def _tail(log: Path, size: int = 8192) -> str:
    """The end of a cell's log (a progress bar makes it long)."""
    with open(log, "rb") as f:
        f.seek(max(0, f.seek(0, os.SEEK_END) - size))
        return f.read().decode(errors="replace")


def _held(cell: Cell) -> Outcome | None:
    """A "running" outcome if another live process holds the cell's folder."""
    who = holder(cell.run_dir)
    return None if who is None else Outcome(running=who)


OFFLINE = {"WANDB_MODE": "offline"}  # a subprocess cell's W&B: its runs are synced later (`wandb sync`)


class _PassSignals:
    """While subprocess cells run, SIGINT and SIGTERM to this process go on to each of them instead
    of stopping this process under them (one that came before a cell's `start` is passed on there).
    Entered once per pool (in the main thread) or per cell; entering it again (a pool's cells) is a no-op."""

    def __init__(self):
        self.received: list[int] = []
        self._procs: list[CellProcess] = []
        self._lock = threading.Lock()
        self._previous: dict = {}
        self._depth = 0

    def start(self, proc: CellProcess) -> CellProcess:
        with self._lock:
            self._procs.append(proc)
            for signum in self.received:
                proc.send_signal(signum)
        return proc

    def finish(self, proc: CellProcess) -> None:
        with self._lock:
            self._procs.remove(proc)

    def _pass(self, signum, frame) -> None:
        self.received.append(signum)
        for proc in list(self._procs):  # no lock: a handler must not wait on the thread it interrupted
            if proc.poll() is None:
                proc.send_signal(signum)

    def __enter__(self) -> "_PassSignals":
        with self._lock:
            self._depth += 1
            first = self._depth == 1
        if first and threading.current_thread() is threading.main_thread():  # only the main thread may set handlers
            self._previous = {s: signal.signal(s, self._pass) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        with self._lock:
            self._depth -= 1
            last = self._depth == 0
        if last:
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)


def _stop(proc: CellProcess) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
