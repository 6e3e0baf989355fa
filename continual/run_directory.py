"""`RunDirectory`: the one writer of a run's folder.

Everything a run leaves goes through it: `config.yaml`, `metrics.json` (after every task, with
`"complete": false` until the end), `metrics.csv`, the plots, the stream metrics' own files and
`checkpoints/` (`continual.resume`). Under DDP only rank 0 writes (`writer=False` elsewhere:
every write is then a no-op), so the task loop calls it the same way on every rank.
`load_run` reads a run back: its config, stream and trained module.

A writer holds a lock on its folder (`.continual.lock`, an flock the system drops when the
process dies), so a second `continual fit` into it refuses instead of mixing two runs' files.
"""

from __future__ import annotations

import fcntl
import os
import socket
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from omegaconf import DictConfig, OmegaConf

from continual import resume
from continual.errors import ConfigError, StorageError
from continual.metrics import report
from continual.run.files import atomic_write
from continual.run.results import read_metrics

RUN_DIR_ENV = "CONTINUAL_RUN_DIR"  # set by rank 0 so processes launched later agree on it
LOCK = ".continual.lock"
# what a run writes at its top level; `overwrite=true` removes these (and checkpoints/) first
RESULTS = ("metrics.json", "config.yaml", "metrics.csv", "*.png", "*.csv")
_HELD: dict[Path, int] = {}  # run directory -> the open, flocked lock file of this process


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
    method = str(cfg.method).replace(":", ".")
    return Path("runs") / f"{stamp}_{method}_{cfg.data.stream}_{cfg.scenario}_s{cfg.seed}"


def _earlier_run(path: Path) -> str | None:
    """What an earlier run left in `path`, as words for a refusal, or None if it left nothing."""
    try:
        metrics = read_metrics(path)
    except (OSError, ValueError):
        metrics = None
    if metrics is not None and metrics.get("complete"):
        return "already holds a finished run (metrics.json)"
    if metrics is not None:
        return f"holds a partial run ({metrics.get('tasks_done', '?')} of {len(metrics.get('tasks', [])) or '?'} tasks done)"
    if (resume.checkpoint_dir(path) / resume.STATE).is_file() or (path / "config.yaml").is_file():
        return "holds a partial run (no task finished yet)"
    return None


def _lock(path: Path) -> None:
    """Hold `path/LOCK` until this process ends or releases it; refuse if another process holds it."""
    key = path.resolve()
    if key in _HELD:  # an earlier run of this process in the same folder has ended (or failed)
        os.close(_HELD.pop(key))
    lock = path / LOCK
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise ConfigError(
            f"output_dir '{path}' is in use by another continual run ({holder}); wait for it to end or choose another output_dir"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
    _HELD[key] = fd


def _release(path: Path) -> None:
    fd = _HELD.pop(path.resolve(), None)
    if fd is not None:
        os.close(fd)


def _clear(path: Path) -> None:
    """Remove an earlier run's results (`overwrite=true`), metrics.json first: a run killed while
    this runs leaves no old complete result beside the new config."""
    for pattern in RESULTS:
        for file in sorted(path.glob(pattern)):
            file.unlink()
    for name in (resume.STATE, f"{resume.LAST}.ckpt"):
        (resume.checkpoint_dir(path) / name).unlink(missing_ok=True)


class RunDirectory:
    def __init__(self, cfg: DictConfig, writer: bool):
        self.cfg, self.writer = cfg, writer
        self.path = resolve_run_dir(cfg)
        os.environ[RUN_DIR_ENV] = str(self.path)
        if not writer:
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            _lock(self.path)
            earlier = None if cfg.resume else _earlier_run(self.path)
            if earlier and not cfg.overwrite:
                _release(self.path)
                if "partial" in earlier:
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
        ckpt = resume.checkpoint_dir(self.path) / f"{resume.LAST}.ckpt"
        start = f"its checkpoint is {ckpt}" if ckpt.is_file() else f"task {task + 1} restarts from {resume.checkpoint_dir(self.path) / resume.STATE}"
        return f"{start}: continue with the same command plus resume={self.path}"

    # -- resume -------------------------------------------------------------------------------
    def load_state(self) -> dict | None:
        return resume.load_state(self.path, self.cfg) if self.cfg.resume else None

    def save_state(self, **state) -> None:
        """Save the task-boundary state; the complete run's is the last write: the lock goes."""
        if self.writer:
            resume.save_state(self.path, self.cfg, **state)
            if state["complete"]:
                _release(self.path)

    def mid_task_checkpoint(self, task: int) -> Path | None:
        return resume.mid_task_checkpoint(self.path, task, self.cfg) if self.cfg.resume else None

    def read_metrics(self) -> dict:
        return read_metrics(self.path)

    # -- results ------------------------------------------------------------------------------
    def write_config(self) -> None:
        if self.writer:
            atomic_write(self.path / "config.yaml", OmegaConf.to_yaml(self.cfg, resolve=True))

    def task_done(self, metrics: dict) -> None:
        """A task's results are in `metrics` and the state: the partial metrics.json survives a crash,
        and the task's mid-task checkpoint is no longer needed."""
        if self.writer:
            if not metrics["complete"]:
                report.write_metrics_json(self.path, metrics)
            (resume.checkpoint_dir(self.path) / f"{resume.LAST}.ckpt").unlink(missing_ok=True)

    def finish(self, metrics: dict, suite) -> dict[str, Path]:
        """The final files; returns the PNGs by W&B key."""
        if not self.writer:
            return {}
        report.write_metrics_json(self.path, metrics)
        report.write_metrics_csv(self.path, metrics)
        pngs = {"accuracy_matrix_heatmap": report.save_accuracy_matrix_png(self.path, metrics)}
        for name, content in suite.files(metrics).items():
            if name.endswith(".png"):
                pngs[name[:-4]] = report.save_png(content, self.path / name)
            else:
                atomic_write(self.path / name, content)
        return pngs


class LoadedRun(NamedTuple):
    cfg: DictConfig
    stream: object  # continual.data.streams.Stream
    module: object  # the ContinualModule, in eval mode, as the run left it
    metrics: dict


def load_run(path: str | Path) -> LoadedRun:
    """A finished (or partly finished) run read back from its directory: its config, its stream
    (rebuilt from the config: the data must be where `data.root` says) and its trained module."""
    from continual.config import load_config
    from continual.data.streams import build_stream
    from continual.experiment import build_method

    path = Path(path)
    if not (path / "config.yaml").is_file() or not (resume.checkpoint_dir(path) / resume.STATE).is_file():
        raise ConfigError(f"'{path}' is not a run directory (no config.yaml and checkpoints/{resume.STATE}); give the folder `continual fit` printed")
    cfg = load_config(str(path / "config.yaml"), ["resume=null", "output_dir=null"])
    state = resume.load_state(path, cfg)
    stream = build_stream(cfg.data, cfg.seed)
    module = build_method(cfg, stream)
    module.load_state_dict(state["module"])
    return LoadedRun(cfg, stream, module.eval(), read_metrics(path))
