"""`ContinualModule`: the LightningModule every method subclasses.

It owns what all methods share: the scenario's targets and output masks, the training loss,
validation accuracy on the current task, and exact test counts per task. A method supplies
`logits(batch)` (and may override `training_step` to add its own loss terms).

`test_step` returns the predictions; the metric callbacks (`continual.metrics`) count them,
summed over processes: never an average of averages, and the loaders do not pad under DDP.

Training losses are averaged over the *global* batch (`batch_mean`), so that DDP's gradient
average over ranks equals the single-process gradient on the same batch (see `TensorLoader`).
Methods that add loss terms should reduce per-sample terms with `batch_mean` too.
"""

from __future__ import annotations

import torch
import lightning as L
from omegaconf import DictConfig
from torch import nn

from continual.scenarios import LabelSpace


class ContinualModule(L.LightningModule):
    config_key: str | None = None  # the config section holding this method's hyperparameters
    joint = False  # True: train once on the union of all tasks

    @classmethod
    def from_config(cls, net, cfg: DictConfig, **common) -> "ContinualModule":
        """Build from the whole config: the method's own section arrives as `hp`."""
        return cls(net, hp=cfg[cls.config_key], **common) if cls.config_key else cls(net, **common)

    def __init__(self, task_classes: list[list[int]], n_classes: int, scenario: str, optim: DictConfig):
        super().__init__()
        self.labels = LabelSpace(scenario, task_classes, n_classes)
        self.n_tasks = len(task_classes)
        self.optim_cfg = optim
        self.current_task = 0
        self.carried_optim: dict[str, dict] = {}  # parameter name -> optimizer state (optim.carry_state)

    # -- what a method provides -------------------------------------------------------------
    def logits(self, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    def frozen_modules(self) -> dict[str, nn.Module]:
        """Modules that must not change while tasks are learned (checked by FrozenBackboneGuard)."""
        return {}

    def set_task(self, t: int) -> None:
        """Called by the stream driver before task t is trained."""
        self.current_task = t

    # -- shared machinery -------------------------------------------------------------------
    def masked_logits(self, batch: dict) -> torch.Tensor:
        allowed = self.labels.allowed(batch["task"], self.current_task)
        return self.logits(batch).masked_fill(~allowed, float("-inf"))

    def predict(self, batch: dict) -> torch.Tensor:
        """Predicted output index (in the scenario's target space)."""
        return self.masked_logits(batch).argmax(dim=1)

    def batch_mean(self, per_sample: torch.Tensor, batch: dict) -> torch.Tensor:
        """This rank's share of the mean over the global batch, scaled for DDP's gradient average."""
        world = self.trainer.world_size if self._trainer is not None else 1
        return per_sample.sum() * world / batch.get("global_size", len(per_sample) * world)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        per_sample = nn.functional.cross_entropy(
            self.masked_logits(batch), self.labels.targets(batch["y"]), reduction="none"
        )
        loss = self.batch_mean(per_sample, batch)
        # the mean over ranks of each rank's share is the global batch mean
        self.log_train_step({"train/loss": loss}, batch_size=len(per_sample), sync_dist=True)
        return loss

    def log_train_step(self, metrics: dict, batch_size: int, sync_dist: bool = False) -> None:
        """Log per-step training metrics on the steps the logger writes (`log_every_n_steps`) only.

        Lightning's `self.log` costs about a millisecond of Python per call on CPU (as much as a
        whole step of the 2x400 MLP), and on the other steps its value would only reach the
        progress bar, which therefore shows the loss of the last logged step.
        """
        trainer = self._trainer
        if trainer is None or not (trainer._logger_connector.should_update_logs or trainer.fast_dev_run):
            return
        self.log_dict(metrics, prog_bar=True, on_step=True, on_epoch=False, sync_dist=sync_dist, batch_size=batch_size)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        correct = (self.predict(batch) == self.labels.targets(batch["y"])).float()
        self.log("val/acc", correct.mean(), prog_bar=True, sync_dist=True, batch_size=len(correct))

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict:
        """Predictions and targets for the metric callbacks' `on_test_batch_end`."""
        return {"pred": self.predict(batch), "target": self.labels.targets(batch["y"])}

    def configure_optimizers(self):
        o = self.optim_cfg
        named = [(n, p) for n, p in self.named_parameters() if p.requires_grad]
        params = [p for _, p in named]
        if o.name == "sgd":
            opt = torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
        else:
            cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
            opt = cls(params, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
        for n, p in named:  # empty unless optim.carry_state; a mid-task checkpoint overrides it
            if n in self.carried_optim:
                opt.state[p] = {k: v.clone() for k, v in self.carried_optim[n].items()}
        return opt

    def on_fit_end(self) -> None:
        """With `optim.carry_state`, remember the optimizer's per-parameter state for the next task."""
        if self.optim_cfg.carry_state:
            names = {p: n for n, p in self.named_parameters()}
            state = self.trainer.optimizers[0].state
            self.carried_optim = {names[p]: {k: v.detach().clone() for k, v in s.items()} for p, s in state.items()}
