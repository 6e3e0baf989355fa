"""What continual relies on in Lightning beyond its documented API, in one place.

Each function here encodes one Lightning behaviour that no public hook states;
tests/test_lightning_internals.py checks each against a real Trainer, so a Lightning upgrade
that changes one fails there, in seconds, instead of in an exact-resume test an hour later.
"""

from __future__ import annotations

import lightning as L


def attached_trainer(module: L.LightningModule) -> L.Trainer | None:
    """The Trainer `module` is attached to, or None (a bare forward or training_step call):
    `module.trainer` raises instead of answering None."""
    try:
        return module.trainer
    except RuntimeError:
        return None


def logs_at(trainer: L.Trainer, step: int) -> bool:
    """Whether Lightning writes `on_step` logs at training step `step` (counted from 1):
    every `log_every_n_steps` steps (never if 0), and on the step at which training stops.

    Lightning's own answer (`trainer._logger_connector.should_update_logs`) is private; this is
    its rule for the fit loop. Inside `training_step` the step being taken is
    `trainer.global_step + 1`; in `on_train_batch_end` (after the optimizer step) it is
    `trainer.global_step`."""
    n = trainer.log_every_n_steps
    return n > 0 and (step % n == 0 or trainer.should_stop)


def at_epoch_end(trainer: L.Trainer) -> bool:
    """Whether the fit loop has just taken its epoch's last batch (the flag Lightning keeps in
    the epoch loop's batch progress; no public property says so)."""
    return trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
