"""What a run's state is: the task-boundary state, the tag of a mid-task checkpoint, the config rule.

The run folder (`continual.rundir.folder`) decides where these files live and reads and writes
them; this module decides what they hold and whether a config may continue from them.

Two files under `<run dir>/checkpoints/`, both written atomically by rank 0:

* `state.pt`, rewritten after the initial test pass and after every task: the module's state
  (weights and everything the method carries across tasks, `ContinualModule.task_state`), the
  stream callbacks' state (accuracy counts, probe masks, frozen-module hashes), the RNG states
  and the config fingerprint. Everything a finished task produced survives a kill at any moment.
* `last.ckpt`, a Lightning checkpoint of the task in progress (model, optimizer, loop and
  data-loader position, RNG), every `checkpoint_every_s` seconds (or `checkpoint_every_n_steps`
  steps) and on SIGTERM; resumed
  with `trainer.fit(ckpt_path=...)`, so a resumed task takes exactly the remaining steps.

Both carry a SHA-256 of their bytes as the zip comment of the torch file (`sealed`), so they
stay plain torch files, and a changed byte is found on load: a damaged `last.ckpt` is skipped
(the task restarts from `state.pt`), a damaged `state.pt` is refused. A file without a checksum
is treated as damaged: nothing loads unchecked. Both load with `weights_only=True`. A checkpoint written under a different config is refused,
naming the keys that differ; keys that cannot change results (where files go, logging, how many
processes) may differ. The same rule (`config_diff`) decides whether `continual compare` may
skip a finished cell: keys the schema gained after a run was made take their defaults there
(defaults keep the earlier behaviour), and keys the schema no longer has (or that configure
another method) are ignored. The schema is the caller's (`continual.build.method_schema`): the
run folder knows no methods.
"""

from __future__ import annotations

import hashlib
import io
import random
import warnings
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from continual.config.schema import VOLATILE  # keys that may differ on resume: marked `volatile` in the schema
from continual.errors import CheckpointError
from continual.rundir.layout import CONFIG, STATE

FORMAT = 5  # 4: method state inside `module`, callback states in `callbacks`; 5: the router's and LwF's networks are `net` and `teacher`


def _flatten(node, prefix: str = "") -> dict:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: node}


def fingerprint(cfg: DictConfig) -> dict:
    """The config keys that determine results, flattened to dotted names."""
    flat = _flatten(OmegaConf.to_container(cfg, resolve=True))
    return {k: v for k, v in sorted(flat.items()) if not any(k == p or (p.endswith(".") and k.startswith(p)) for p in VOLATILE)}


def config_diff(saved: dict, cfg: DictConfig, schema: DictConfig) -> str | None:
    """How `cfg` differs from the fingerprint `saved` in the keys that determine results, or None.

    A key `saved` lacks takes its default in `schema` (the typed defaults of `cfg`'s method); a
    key only `saved` has counts only if the schema still has it (Trainer arguments are
    free-form: they always count)."""
    now = fingerprint(cfg)
    defaults = fingerprint(schema)
    known = now.keys() | {k for k in saved if k in defaults or k.startswith("trainer.")}
    unset = "<unset>"
    before = {k: saved.get(k, defaults.get(k, unset)) for k in known}
    keys = sorted(k for k in known if before[k] != now.get(k, unset))
    if not keys:
        return None
    shown = ", ".join(f"{k}: {before[k]!r} -> {now.get(k, unset)!r}" for k in keys[:5])
    return shown + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")


def check_config(saved: dict, cfg: DictConfig, schema: DictConfig, what: str, run_dir: Path) -> None:
    diff = config_diff(saved, cfg, schema)
    if diff is None:
        return
    raise CheckpointError(
        f"{what} was written with a different config ({diff}); resume with the same settings, "
        f"e.g. --config {Path(run_dir) / CONFIG}, or start a new run without resume="
    )


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy(), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class ChecksumError(CheckpointError):
    """A checkpoint whose bytes no longer match its checksum (a disk or copy error), or that has none."""

    def __init__(self, message: str, why: str):
        super().__init__(message)
        self.why = why  # as words after "checkpoint '<path>' is"


_SEAL = b"continual-sha256:"  # the zip comment of a sealed file, followed by the hex digest
_EOCD = b"PK\x05\x06"  # a zip file's last record: 22 bytes, then the comment (its length is the last two)
_SEALED_TAIL = len(_SEAL) + 64


def sealed(data: bytes) -> bytes:
    """`torch.save`'s bytes with their SHA-256 as the zip comment: still a torch file, and checkable."""
    if data[-22:-18] != _EOCD or data[-2:] != b"\0\0":
        raise ValueError("not a torch file without a zip comment")
    comment = _SEAL + hashlib.sha256(data).hexdigest().encode()
    return data[:-2] + len(comment).to_bytes(2, "little") + comment


def is_sealed(data: bytes) -> bool:
    """Whether `data` ends in a checksum comment as `sealed` writes it (matching or not)."""
    end = len(data) - _SEALED_TAIL
    return end >= 22 and data[end - 22:end - 18] == _EOCD and data[end - 2:end] == _SEALED_TAIL.to_bytes(2, "little")


def checksum_mismatch(data: bytes) -> bool:
    """Whether `data` is a sealed file whose bytes no longer match its checksum. False for a file
    without a checksum (`load_checkpoint` refuses those; a torn one fails to load instead)."""
    if not is_sealed(data):
        return False
    end = len(data) - _SEALED_TAIL
    original = data[:end - 2] + b"\0\0"
    return data[end:] != _SEAL + hashlib.sha256(original).hexdigest().encode()


def _older_state(content) -> bool:
    """A run state of an earlier format: `checked_state` says so in its own words."""
    found = content.get("format") if isinstance(content, dict) else None
    return isinstance(found, int) and not isinstance(found, bool) and found < FORMAT


def checkpoint_bytes(content: dict) -> bytes:
    """`content` as the bytes of a sealed checkpoint file."""
    buf = io.BytesIO()
    torch.save(content, buf)
    return sealed(buf.getvalue())


def load_checkpoint(path: Path) -> dict:
    """A `state.pt` or `last.ckpt` loaded with `weights_only=True`; one line naming the file if
    it is torn, damaged (its checksum does not match) or not ours."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"checkpoint '{path}' cannot be read ({err.strerror or err}); make it readable, or start a new run without resume=") from None
    if checksum_mismatch(data):
        raise ChecksumError(
            f"checkpoint '{path}' is damaged (its bytes no longer match its checksum: a disk or copy error); "
            f"restore it from a backup, or start a new run without resume=", "damaged (its checksum does not match)"
        )
    try:
        content = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:
        if not data:
            why = "it is empty (a write was cut off)"
        else:
            first = (str(err).splitlines() or [""])[0][:200]
            why = f"{type(err).__name__}: {first}" if first else type(err).__name__
        raise CheckpointError(
            f"checkpoint '{path}' cannot be loaded safely ({why}); it is torn or not a continual checkpoint: "
            f"delete it or start a new run without resume="
        ) from None
    if not is_sealed(data) and not _older_state(content):  # an unchecked file would load as it is
        raise ChecksumError(
            f"checkpoint '{path}' has no checksum, so it cannot be checked: continual did not write it (or an early "
            f"version did); start a new run without resume=", "unchecked (it has no checksum)"
        )
    return content


def state_bytes(cfg: DictConfig, **state) -> bytes:
    """The task-boundary state as the bytes of `state.pt`: `state` plus the format, the config
    fingerprint and the RNG states at this moment."""
    return checkpoint_bytes({"format": FORMAT, "config": fingerprint(cfg), "rng": rng_state(), **state})


STATE_KEYS = ("format", "config", "rng", "complete", "module", "callbacks", "wall_time_s", "wandb_id")


def checked_state(path: Path, cfg: DictConfig, schema: DictConfig, run_dir: Path) -> dict:
    """The task-boundary state in `path`, refused unless whole and written under `cfg`'s settings."""
    state = load_checkpoint(path)
    found = state.get("format") if isinstance(state, dict) else None
    if isinstance(found, int) and not isinstance(found, bool) and found < FORMAT:
        raise CheckpointError(
            f"checkpoint '{path}' was written by an older continual (run state format {found}, this version reads {FORMAT}); "
            f"continue it with the version that made it, or start a new run without resume="
        )
    if found != FORMAT:
        raise CheckpointError(f"checkpoint '{path}' is not a continual run state (format {FORMAT}); start a new run without resume=")
    missing = [k for k in STATE_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint '{path}' lacks {', '.join(missing)}: it is damaged; start a new run without resume=")
    check_config(state["config"], cfg, schema, f"checkpoint '{path}'", run_dir)
    return state


def task_tag(task: int, fingerprint: dict) -> dict:
    """What a mid-task checkpoint carries beside Lightning's own state (its key "continual")."""
    return {"task": task, "config": fingerprint, "rng": rng_state()}


def resumes_task(path: Path, task: int, cfg: DictConfig, schema: DictConfig, run_dir: Path) -> bool:
    """Whether the mid-task checkpoint `path` continues task `task` under `cfg`'s settings.

    A torn one (a kill or a full disk while an older version wrote it) or a damaged one (its
    checksum does not match) is skipped with a warning: the task then restarts from state.pt,
    which loses only that task's progress."""
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as err:
        why = err.why if isinstance(err, ChecksumError) else "torn or unreadable"
        warnings.warn(f"checkpoint '{path}' is {why}; ignoring it: task {task + 1} restarts from {STATE}", stacklevel=2)
        return False
    tag = ckpt.get("continual", {}) if isinstance(ckpt, dict) else {}
    if tag.get("task") != task:
        return False  # it belongs to a task whose end state is already saved
    check_config(tag.get("config", {}), cfg, schema, f"checkpoint '{path}'", run_dir)
    return True
