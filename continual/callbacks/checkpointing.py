"""`TaskCheckpoint`: the mid-task `last.ckpt` that a run resumes from (`continual.rundir.state`).

A `ModelCheckpoint` that keeps only `last.ckpt` (every few minutes of training, and once more
when Lightning stops training on SIGTERM), tagged with the task, the config fingerprint and the RNG
states, so a resumed task continues with exactly the remaining batches and random numbers.
Its Trainer writes it through `AtomicCheckpointIO`, in the run folder itself: Lightning's own
save stages the file in /tmp, and across file systems its move is a copy that a kill or a full
disk tears.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from continual.lightning_internals import at_epoch_end
from continual.rundir import layout, state
from continual.rundir.files import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer (rank 0 only), with the file written in place atomically and
    sealed with its checksum, which loading checks (`continual.rundir.state`)."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        atomic_write(Path(path), state.checkpoint_bytes(checkpoint))

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        return state.load_checkpoint(Path(path))


class TaskCheckpoint(ModelCheckpoint):
    CHECKPOINT_NAME_LAST = layout.LAST

    def __init__(self, run_dir: Path, task: int, fingerprint: dict, every_n_steps: int, every_s: float):
        """Every `every_n_steps` steps if > 0, else every `every_s` seconds of training (0: never
        mid-task). Time, not steps, by default: on a GPU a step takes a millisecond and a
        checkpoint far longer, on a CPU the reverse. Its Trainer needs `AtomicCheckpointIO`."""
        by_time = every_n_steps == 0 and every_s > 0
        super().__init__(
            dirpath=layout.checkpoint_dir(run_dir),
            save_last=True,
            save_top_k=0,
            every_n_train_steps=every_n_steps,
            train_time_interval=timedelta(seconds=every_s) if by_time else None,
            enable_version_counter=False,
        )
        self.task, self.fingerprint = task, fingerprint
        self.last_path = str(layout.last_checkpoint_path(run_dir))

    @property
    def state_key(self) -> str:
        # Lightning names every hook call of a callback by its state key (a profiler label); a
        # ModelCheckpoint's is a repr of its arguments, built anew at each call, several per step
        return "TaskCheckpoint"

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint["continual"] = state.task_tag(self.task, self.fingerprint)

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        state.set_rng_state(checkpoint["continual"]["rng"])

    def on_train_batch_end(self, trainer: L.Trainer, *args, **kwargs) -> None:
        # A checkpoint taken after an epoch's last batch (or during its validation) does not
        # resume to the same weights in Lightning 2.6: keep the previous one and replay instead.
        if not at_epoch_end(trainer):
            super().on_train_batch_end(trainer, *args, **kwargs)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        # Lightning raises this at a batch boundary, so the state saved here is consistent.
        if isinstance(exception, SIGTERMException) and not at_epoch_end(trainer):
            trainer.save_checkpoint(self.last_path, weights_only=False)
