"""`RunDirectory`: the one writer of a run's folder.

Everything a run leaves goes through it: `config.yaml`, `metrics.json` (after every task, with
`"complete": false` until the end), `metrics.csv`, the plots, the stream metrics' own files and
the task-boundary state `checkpoints/state.pt` (its content: `continual.rundir.state`). The
mid-task `checkpoints/last.ckpt` is written by Lightning through `TaskCheckpoint`, into the
folder this package names (`continual.rundir.layout`). Under DDP only rank 0 writes (`writer=False`
elsewhere: every write is then a no-op), so the task loop calls it the same way on every rank.

A writer holds a lock on its folder (`continual.rundir.lock`: an flock the system drops when the
process dies), so a second `continual fit` into it refuses instead of mixing two runs' files.
Holding it, the writer removes the temporary files of writes a killed run left half-done.
A finished run's state also holds its metrics.json, so `resume=` rebuilds a torn or lost one.
"""

from __future__ import annotations

import json
import os
import warnings
from datetime import datetime
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from continual.errors import CheckpointError, ConfigError, StorageError
from continual.metrics import report
from continual.rundir import layout, lock, state
from continual.rundir.files import atomic_write, remove_stale_temps
from continual.rundir.results import finished_metrics, read_metrics

RUN_DIR_ENV = "CONTINUAL_RUN_DIR"  # set by rank 0 so processes launched later agree on it


def _launcher_job_id() -> str | None:
    """An id every process of an externally launched job shares (srun, torchrun --rdzv-id)."""
    if os.environ.get("SLURM_JOB_ID"):
        return "slurm" + os.environ.get("SLURM_ARRAY_JOB_ID", os.environ["SLURM_JOB_ID"]) + os.environ.get("SLURM_ARRAY_TASK_ID", "")
    run_id = os.environ.get("TORCHELASTIC_RUN_ID", "none")
    return None if run_id == "none" else run_id


def resolve_run_dir(cfg: DictConfig) -> Path:
    if cfg.resume:
        if cfg.output_dir and Path(cfg.output_dir) != Path(cfg.resume):
            raise ConfigError(f"resume={cfg.resume} and output_dir={cfg.output_dir} differ; resume continues in its own run directory: drop output_dir")
        return Path(cfg.resume)
    if cfg.output_dir:
        return Path(cfg.output_dir)
    if os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV])
    stamp = _launcher_job_id()
    if stamp is None:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # started by torchrun / fabric run: ranks cannot agree on a time
            raise ConfigError("this job was started by a multi-process launcher; pass output_dir=<run dir> so every rank writes to the same place")
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    # your own method or stream is named module:attr; a ':' in a folder name reads as host:path to scp and rsync
    method, stream = (str(name).replace(":", ".") for name in (cfg.method, cfg.data.stream))
    return Path("runs") / f"{stamp}_{method}_{stream}_{cfg.scenario}_s{cfg.seed}"


def _finished_state(path: Path) -> bool:
    """Whether `path`'s saved state (checked, whatever its config) is that of a finished run."""
    try:
        saved = state.load_checkpoint(layout.state_path(path))
    except (OSError, CheckpointError):
        return False
    return isinstance(saved, dict) and saved.get("complete") is True


def _earlier_run(path: Path) -> str | None:
    """What an earlier run left in `path`, as words for a refusal, or None if it left nothing."""
    if finished_metrics(path) is not None:
        return "already holds a finished run (metrics.json)"
    try:
        metrics = read_metrics(path)
    except (OSError, ValueError):
        metrics = None
    if isinstance(metrics, dict):
        return f"holds a partial run ({metrics.get('tasks_done', '?')} of {len(metrics.get('tasks', [])) or '?'} tasks done)"
    if _finished_state(path):  # its metrics.json is torn or lost: resume= rebuilds it from the state
        lost = "damaged" if (path / layout.METRICS).exists() else "missing"
        return f"holds a finished run whose metrics.json is {lost} (resume= rebuilds it from the run's saved state)"
    if layout.state_path(path).is_file() or (path / layout.CONFIG).is_file():
        return "holds a partial run (no task finished yet)"
    return None


def read_state(run_dir: Path, cfg: DictConfig, schema: DictConfig) -> dict | None:
    """The task-boundary state of `run_dir`, checked against `cfg` (`schema`: the typed defaults
    of its method); None if the run has none yet."""
    path = layout.state_path(run_dir)
    return state.checked_state(path, cfg, schema, run_dir) if path.is_file() else None


def _clear(path: Path) -> None:
    """Remove an earlier run's results (`overwrite=true`), metrics.json first: a run killed while
    this runs leaves no old complete result beside the new config."""
    for pattern in layout.RESULTS:
        for file in sorted(path.glob(pattern)):
            file.unlink()
    for file in (layout.state_path(path), layout.last_checkpoint_path(path)):
        file.unlink(missing_ok=True)


class RunDirectory:
    def __init__(self, cfg: DictConfig, writer: bool, schema: DictConfig):
        """`schema`: the typed defaults of `cfg`'s method, against which a resumed run's config
        is checked (`continual.build.method_schema`)."""
        self.cfg, self.writer, self.schema = cfg, writer, schema
        self.path = resolve_run_dir(cfg)
        self._state: dict | None = None  # what `load_state` read
        self._metrics_json: str | None = None  # the finished run's metrics.json, for its state
        os.environ[RUN_DIR_ENV] = str(self.path)
        if not writer:
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            lock.hold(self.path)
            for folder in (self.path, layout.checkpoint_dir(self.path)):
                remove_stale_temps(folder)
            earlier = None if cfg.resume else _earlier_run(self.path)
            if earlier and not cfg.overwrite:
                lock.release(self.path)
                if "partial" in earlier or "metrics.json is" in earlier:
                    fix = f"continue it with resume={self.path}, or pass overwrite=true to start over"
                else:
                    fix = "choose another output_dir or pass overwrite=true to replace it"
                raise ConfigError(f"output_dir '{self.path}' {earlier}; {fix}")
            if earlier:
                _clear(self.path)
        except OSError as err:
            raise StorageError(
                f"cannot write into output_dir '{self.path}' ({err.strerror or err}); make it writable or choose another output_dir"
            ) from None

    def interrupted(self, task: int) -> str:
        """Where a run stopped during `task` continues from, for the message that stops it."""
        ckpt = layout.last_checkpoint_path(self.path)
        start = f"its checkpoint is {ckpt}" if ckpt.is_file() else f"task {task + 1} restarts from {layout.state_path(self.path)}"
        return f"{start}: continue with the same command plus resume={self.path}"

    # -- state ----------------------------------------------------------------------------------
    def load_state(self) -> dict | None:
        """The state `resume=` continues from (None without resume=, or before the first save)."""
        self._state = read_state(self.path, self.cfg, self.schema) if self.cfg.resume else None
        return self._state

    def save_state(self, **fields) -> None:
        """Save the task-boundary state (a complete run's with its metrics.json, written by `finish`);
        the complete run's is the last write: the lock goes."""
        if self.writer:
            if fields["complete"]:
                fields["metrics_json"] = self._metrics_json
            atomic_write(layout.state_path(self.path), state.state_bytes(self.cfg, **fields))
            if fields["complete"]:
                lock.release(self.path)

    def mid_task_checkpoint(self, task: int) -> Path | None:
        """The Lightning checkpoint that continues task `task` mid-way, if `resume=` has one."""
        path = layout.last_checkpoint_path(self.path)
        if not self.cfg.resume or not path.is_file():
            return None
        return path if state.resumes_task(path, task, self.cfg, self.schema, self.path) else None

    def read_metrics(self) -> dict:
        """The metrics.json of the run `load_state` found complete; if it is torn or missing, it is
        rebuilt from the state, or one line says what to do when the state does not hold it."""
        try:
            return read_metrics(self.path)
        except (OSError, ValueError) as err:
            why = "missing" if isinstance(err, FileNotFoundError) else "torn or unreadable"
        text = (self._state or {}).get("metrics_json")
        if not text:
            raise CheckpointError(
                f"run '{self.path}' is complete but its {layout.METRICS} is {why}, and its {layout.STATE} does not hold "
                f"the results (written by an older continual); run it again with the same command plus overwrite=true instead of resume="
            )
        if self.writer:
            atomic_write(self.path / layout.METRICS, text)
            warnings.warn(f"{layout.METRICS} of '{self.path}' was {why}; rebuilt it from {layout.state_path(self.path)}", stacklevel=2)
        return json.loads(text)

    # -- results ------------------------------------------------------------------------------
    def write_config(self) -> None:
        if self.writer:
            atomic_write(self.path / layout.CONFIG, OmegaConf.to_yaml(self.cfg, resolve=True))

    def _write_metrics(self, metrics: dict) -> None:
        text = report.to_json(metrics) + "\n"
        atomic_write(self.path / layout.METRICS, text)
        if metrics["complete"]:
            self._metrics_json = text

    def _write_png(self, fig, name: str) -> Path:
        path = self.path / name
        atomic_write(path, report.png_bytes(fig))
        return path

    def task_done(self, metrics: dict) -> None:
        """A task's results are in `metrics` and the state: the partial metrics.json survives a crash,
        and the task's mid-task checkpoint is no longer needed."""
        if self.writer:
            if not metrics["complete"]:
                self._write_metrics(metrics)
            layout.last_checkpoint_path(self.path).unlink(missing_ok=True)

    def finish(self, metrics: dict, suite) -> dict[str, Path]:
        """The final files; returns the PNGs by W&B key."""
        if not self.writer:
            return {}
        self._write_metrics(metrics)
        atomic_write(self.path / layout.METRICS_CSV, report.metrics_csv(metrics))
        heatmap = report.plot_accuracy_matrix(metrics["accuracy_matrix"], report.run_title(metrics))
        pngs = {"accuracy_matrix_heatmap": self._write_png(heatmap, layout.ACCURACY_PNG)}
        for name, content in suite.files(metrics).items():
            if name.endswith(".png"):
                pngs[name[:-4]] = self._write_png(content, name)
            else:
                atomic_write(self.path / name, content)
        return pngs
