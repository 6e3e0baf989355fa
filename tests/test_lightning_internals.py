"""Each Lightning behaviour `continual.lightning_internals` relies on, checked on a real Trainer.

If a Lightning upgrade changes one of them, the test here fails in seconds, instead of exact
resume or per-step logging breaking silently.
"""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from continual.callbacks.checkpointing import AtomicCheckpointIO, TaskCheckpoint
from continual.lightning_internals import at_epoch_end, attached_trainer, logs_at

BATCHES = 5  # per epoch


class Tiny(L.LightningModule):
    """A linear regression on fixed random data; records what the adapter answers at each step."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(3, 1)
        self.seen = []  # (global step + 1, logs_at in training_step, Lightning's own answer)

    def training_step(self, batch, batch_idx):
        trainer = attached_trainer(self)
        assert trainer is self.trainer
        self.seen.append((trainer.global_step + 1, logs_at(trainer, trainer.global_step + 1),
                          trainer._logger_connector.should_update_logs))
        x, y = batch
        return nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        g = torch.Generator().manual_seed(0)
        data = TensorDataset(torch.randn(4 * BATCHES, 3, generator=g), torch.randn(4 * BATCHES, 1, generator=g))
        return DataLoader(data, batch_size=4)


class AfterStep(L.Callback):
    """What the adapter answers in `on_train_batch_end`, beside Lightning's own answers."""

    def __init__(self, stop_at: int | None = None):
        self.stop_at, self.logs, self.ends = stop_at, [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.stop_at:
            trainer.should_stop = True
        self.logs.append((trainer.global_step, logs_at(trainer, trainer.global_step), trainer._logger_connector.should_update_logs))
        self.ends.append((batch_idx, at_epoch_end(trainer)))


def trainer(tmp_path, **kwargs) -> L.Trainer:
    kwargs = {"max_epochs": 3, "log_every_n_steps": 3, "enable_checkpointing": False, **kwargs}
    return L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                     default_root_dir=tmp_path, **kwargs)


def test_attached_trainer_is_none_outside_a_trainer():
    module = Tiny()
    with pytest.raises(RuntimeError):  # why the adapter exists: the public property raises
        module.trainer
    assert attached_trainer(module) is None


@pytest.mark.parametrize("every", [3, 1, 0])
def test_logs_at_is_lightnings_rule_for_logging_a_training_step(tmp_path, every):
    module, after = Tiny(), AfterStep(stop_at=8)  # stopped by a callback at step 8 (should_stop)
    trainer(tmp_path, log_every_n_steps=every, callbacks=[after]).fit(module)
    steps = [s for s, _, _ in after.logs]
    assert steps == list(range(1, 9))
    assert [ours for _, ours, _ in module.seen] == [lightning for _, _, lightning in module.seen]
    assert [ours for _, ours, _ in after.logs] == [lightning for _, _, lightning in after.logs]
    expected = [every > 0 and (s % every == 0 or s == 8) for s in steps]
    assert [ours for _, ours, _ in after.logs] == expected
    assert [ours for _, ours, _ in module.seen] == [every > 0 and s % every == 0 for s in steps]


def test_logs_at_still_matches_after_a_mid_epoch_resume(tmp_path):
    """A resumed fit restores Lightning's own step counter from the checkpoint; the global step
    it is computed from here must agree with it from the first resumed step on."""
    save = TaskCheckpoint(tmp_path / "run", task=0, fingerprint={}, every_n_steps=4, every_s=0)
    trainer(tmp_path, max_steps=6, callbacks=[save], enable_checkpointing=True, plugins=[AtomicCheckpointIO()]).fit(Tiny())
    module, after = Tiny(), AfterStep()
    trainer(tmp_path, max_steps=12, callbacks=[after]).fit(module, ckpt_path=save.last_path, weights_only=True)
    assert [s for s, _, _ in after.logs] == list(range(5, 13))  # from the step after the checkpoint
    assert [ours for _, ours, _ in module.seen] == [lightning for _, _, lightning in module.seen]
    assert [ours for _, ours, _ in after.logs] == [lightning for _, _, lightning in after.logs]
    assert [ours for _, ours, _ in after.logs] == [s % 3 == 0 for s in range(5, 13)]


def test_at_epoch_end_is_true_after_each_epochs_last_batch_only(tmp_path):
    after = AfterStep()
    trainer(tmp_path, max_epochs=2, callbacks=[after]).fit(Tiny())
    assert after.ends == [(i, i == BATCHES - 1) for i in range(BATCHES)] * 2


def test_model_checkpoint_writes_through_the_trainers_checkpoint_io(tmp_path):
    """TaskCheckpoint leaves the writing to Lightning (`ModelCheckpoint` -> `trainer.save_checkpoint`
    -> the strategy's CheckpointIO): the file must come from AtomicCheckpointIO, whole and tagged."""
    written = []

    class Spy(AtomicCheckpointIO):
        def save_checkpoint(self, checkpoint, path, storage_options=None):
            written.append(str(path))
            super().save_checkpoint(checkpoint, path, storage_options)

    save = TaskCheckpoint(tmp_path / "run", task=2, fingerprint={"seed": 7}, every_n_steps=2, every_s=0)
    trainer(tmp_path, max_steps=4, callbacks=[save], enable_checkpointing=True, plugins=[Spy()]).fit(Tiny())
    assert written == [save.last_path, save.last_path]  # steps 2 and 4
    ckpt = torch.load(save.last_path, weights_only=True)
    assert ckpt["global_step"] == 4 and ckpt["continual"]["task"] == 2 and ckpt["continual"]["config"] == {"seed": 7}
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["last.ckpt"]  # no temporary left
