"""`ContinualModule`: the LightningModule every method subclasses (how to write one: docs/methods.md).

It owns what all methods share: the scenario's targets and output masks, the training loss,
validation accuracy on the current task, the test pass's outputs, the optimizer and its learning-rate
schedule (`optim.scheduler`, continual/models/schedules.py). A method
supplies `logits(batch)` and, as needed:

* `Config` (a dataclass: its hyperparameters, the config section named like the method, handed
  in as `hp`), `scenarios` (the scenarios it supports) and `check(hp, cfg)` (value checks); by
  convention a method keeps `self.hp` and the network it is built over as `self.net`;
* the task hooks `on_task_start(data)` / `on_task_end(data)`, called by the task loop before and
  after each task with that task's training data (`TaskData`), on the device training runs on;
* `task_state()` / `load_task_state(state)`: everything it carries from task to task that is not
  a parameter or buffer. It is saved with the weights (`get_extra_state`), in every checkpoint,
  so a resumed run continues with exactly what the killed one had;
* `after_optimizer_step()`: where what a training step changes besides the optimizer's update is
  updated (SI's path integral, HAT's clamp, PackNet's released weights). One rule: method state
  that a step changes is updated before any checkpoint of that step can be taken - in
  `training_step`, the optimizer hooks or here, never in `on_train_batch_end`, which Lightning
  runs after the callbacks' (the mid-task checkpoint's) and so after the checkpoint is written;
* `evaluate(batch)`: one test batch's outputs for the metric callbacks (`eval_outputs` names the
  optional ones it returns); the callbacks only read them, never call back into the method.

Training losses are averaged over the *global* batch (`batch_mean`), so that DDP's gradient
average over ranks equals the single-process gradient on the same batch (see `TensorLoader`).
Methods that add loss terms should reduce per-sample terms with `batch_mean` too.
"""

from __future__ import annotations

from typing import ClassVar

import lightning as L
import torch
from omegaconf import DictConfig
from torch import nn

from continual.data.task_data import TaskData
from continual.lightning_internals import attached_trainer, logs_at
from continual.models import schedules
from continual.config.schema import SCENARIOS
from continual.scenarios import LabelSpace


def move(obj, device):
    """`obj` (tensors in dicts, lists and tuples) with every tensor on `device`."""
    if torch.is_tensor(obj):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: move(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(move(v, device) for v in obj)
    return obj


class ContinualModule(L.LightningModule):
    name: ClassVar[str]  # set by @register (continual.methods); the config section's name
    Config: ClassVar[type | None] = None  # hyperparameter dataclass; None: the method has none
    scenarios: ClassVar[tuple[str, ...]] = SCENARIOS
    scenarios_why: ClassVar[str | None] = None  # why the others are refused (the config's error says it)
    joint: ClassVar[bool] = False  # True: train once on the union of all tasks
    # optional `evaluate` outputs (continual.metrics.protocol): "task_given", "task", "probe", "padded"
    eval_outputs: ClassVar[tuple[str, ...]] = ("task_given",)
    # why `class_il_train_outputs=all` means nothing for the method (the config refuses it with
    # this reason), or None: its training loss is a cross-entropy over the class-IL outputs
    all_outputs_refused: ClassVar[str | None] = None

    @classmethod
    def check(cls, hp: DictConfig | None, cfg: DictConfig) -> None:
        """Raise `ConfigError` for hyperparameter values this method cannot run with."""

    @classmethod
    def from_config(cls, net, cfg: DictConfig, **common) -> "ContinualModule":
        """Build from the whole config: the method's own section arrives as `hp`."""
        return cls(net, hp=cfg[cls.name], **common) if cls.Config is not None else cls(net, **common)

    def __init__(self, task_classes: list[list[int]], n_classes: int, scenario: str, optim: DictConfig,
                 class_il_train_outputs: str = "seen"):
        super().__init__()
        self.labels = LabelSpace(scenario, task_classes, n_classes)
        self.train_all_outputs = scenario == "class" and class_il_train_outputs == "all"
        self.n_tasks = len(task_classes)
        self.optim_cfg = optim
        self.current_task = 0
        self.carried_optim: dict[str, dict] = {}  # parameter name -> optimizer state (optim.carry_state)
        self.schedule_position = 0  # optimizer steps the stream-wide schedule has taken (optim.scheduler_scope=stream)

    # -- what a method provides -------------------------------------------------------------
    def logits(self, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    def backbone(self) -> nn.Module | None:
        """The frozen network every task shares (not counted in the method's memory), if any."""
        return None

    def frozen_modules(self) -> dict[str, nn.Module]:
        """Modules that must not change while tasks are learned (checked by FrozenBackboneGuard)."""
        return {}

    def set_task(self, t: int) -> None:
        """The task loop's cursor: task t is the one learned next (or being learned)."""
        self.current_task = t

    def on_task_start(self, data: TaskData) -> None:
        """Before task `data.id` is trained (also when a killed task is resumed: the checkpoint's
        state then replaces what this set up)."""

    def on_task_end(self, data: TaskData) -> None:
        """After task `data.id` is trained, before its test pass."""

    def after_optimizer_step(self) -> None:
        """After each optimizer step of training, before the step's callbacks (and so before any
        checkpoint of the step): update here what the step changes besides the optimizer's update."""

    def task_state(self) -> dict:
        """What the method carries across tasks besides parameters and buffers (tensors, numbers,
        lists and dicts of them: checkpoints load with `weights_only`)."""
        return {}

    def load_task_state(self, state: dict) -> None:
        """Restore what `task_state` returned."""

    # -- state: saved with the weights in every checkpoint -------------------------------------
    def get_extra_state(self) -> dict:
        return {"current_task": self.current_task, "optim": self.carried_optim, "schedule_position": self.schedule_position,
                "method": self.task_state()}

    def set_extra_state(self, state: dict) -> None:
        self.current_task, self.carried_optim = state["current_task"], state["optim"]
        self.schedule_position = state.get("schedule_position", 0)  # absent from checkpoints written before schedules
        self.load_task_state(state["method"])

    def _state_to_device(self) -> None:
        """Checkpoints load onto the CPU, and `task_state` is no buffer that `.to()` moves: bring
        it to the device the module runs on."""
        state = self.task_state()
        if state:
            self.load_task_state(move(state, self.device))

    def on_fit_start(self) -> None:
        self._state_to_device()

    def on_train_start(self) -> None:
        if self.optim_cfg.scheduler != "none":
            schedules.check_count(self.trainer, self.current_task)

    def on_test_start(self) -> None:
        self._state_to_device()

    # -- shared machinery -------------------------------------------------------------------
    def allowed(self, batch: dict) -> torch.Tensor:
        """[B, n_out] bool: the outputs each sample may be assigned now (the scenario's rule)."""
        return self.labels.allowed(batch["task"], self.current_task)

    def task_groups(self, task: torch.Tensor) -> list[tuple[int, torch.Tensor | slice]]:
        """(task id, rows) for each task present in a batch, for methods that run one pass per
        task. A training batch holds the current task alone, known without reading the batch:
        `unique()` would wait for the GPU at every step."""
        if self.training and not self.joint:
            return [(self.current_task, slice(None))]
        ids = task.unique().tolist()
        return [(t, slice(None) if len(ids) == 1 else (task == t).nonzero().squeeze(1)) for t in ids]

    def masked_logits(self, batch: dict) -> torch.Tensor:
        return self.logits(batch).masked_fill(~self.allowed(batch), float("-inf"))

    def loss_logits(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        """`logits` as the training cross-entropy sees them: masked to the outputs `allowed` gives,
        or all of them in class-IL with `class_il_train_outputs=all` (Mammoth's rule: the outputs
        of classes not seen yet are pushed down). Prediction always masks (`predict`)."""
        return logits if self.train_all_outputs else logits.masked_fill(~self.allowed(batch), float("-inf"))

    def predict(self, batch: dict) -> torch.Tensor:
        """Predicted output index (in the scenario's target space)."""
        return self.masked_logits(batch).argmax(dim=1)

    def batch_mean(self, per_sample: torch.Tensor, batch: dict) -> torch.Tensor:
        """This rank's share of the mean over the global batch, scaled for DDP's gradient average."""
        trainer = attached_trainer(self)
        world = trainer.world_size if trainer is not None else 1
        return per_sample.sum() * world / batch.get("global_size", len(per_sample) * world)

    def per_sample_loss(self, batch: dict) -> torch.Tensor:
        """[B] cross-entropy of the training rule's logits (`loss_logits`) against the scenario's targets."""
        return nn.functional.cross_entropy(self.loss_logits(self.logits(batch), batch), self.labels.targets(batch["y"]), reduction="none")

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        per_sample = self.per_sample_loss(batch)
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
        trainer = attached_trainer(self)
        if trainer is None or not (logs_at(trainer, trainer.global_step + 1) or trainer.fast_dev_run):
            return
        self.log_dict(metrics, prog_bar=True, on_step=True, on_epoch=False, sync_dist=sync_dist, batch_size=batch_size)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        correct = (self.predict(batch) == self.labels.targets(batch["y"])).float()
        self.log("val/acc", correct.mean(), prog_bar=True, sync_dist=True, batch_size=len(correct))

    def evaluate(self, batch: dict) -> dict:
        """One test batch's outputs: `pred` and `target` (scenario target space), plus the optional
        `eval_outputs` a method adds (continual.metrics.protocol). From one `logits` call: the
        prediction as `predict` makes it and, in class-IL, `task_given`, the best of each
        sample's own task's outputs (a method that predicts otherwise overrides this)."""
        logits = self.logits(batch)
        out = {"pred": logits.masked_fill(~self.allowed(batch), float("-inf")).argmax(1), "target": self.labels.targets(batch["y"])}
        if self.labels.scenario == "class":
            out["task_given"] = logits.masked_fill(~self.labels.own[batch["task"]], float("-inf")).argmax(1)
        return out

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict:
        """The batch is evaluated once; the metric callbacks read these outputs in `on_test_batch_end`."""
        return self.evaluate(batch)

    def configure_optimizers(self):
        o = self.optim_cfg
        named = [(n, p) for n, p in self.named_parameters() if p.requires_grad]
        params = [p for _, p in named]
        if o.name == "sgd":
            opt = torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
        elif o.name == "rmsprop":  # PyTorch's defaults otherwise (alpha 0.99), as SupSup's MNIST runs use it
            opt = torch.optim.RMSprop(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
        else:
            cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
            opt = cls(params, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
        for n, p in named:  # empty unless optim.carry_state; a mid-task checkpoint overrides it
            if n in self.carried_optim:
                opt.state[p] = {k: v.to(p.device).clone() for k, v in self.carried_optim[n].items()}
        if o.scheduler == "none":
            return opt
        total = schedules.total_steps(o, self.trainer, self.current_task, self.n_tasks)
        if total == 0:  # nothing to train in this task (joint after its first): nothing to schedule
            return opt
        start = self.schedule_position if o.scheduler_scope == "stream" else 0
        # a mid-task checkpoint restores the scheduler's own step count over this one
        return {"optimizer": opt, "lr_scheduler": {"scheduler": schedules.scheduler(opt, o, total, start), "interval": "step"}}

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer, optimizer_closure=None) -> None:
        # Lightning calls this before the callbacks' `on_train_batch_end`, where the mid-task
        # checkpoint is written: state updated in `after_optimizer_step` is in that checkpoint
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        self.after_optimizer_step()

    def on_fit_end(self) -> None:
        """With `optim.carry_state`, remember the optimizer's per-parameter state for the next task;
        with `optim.scheduler_scope=stream`, where the schedule stopped."""
        scheduler = self.lr_schedulers()
        if self.optim_cfg.scheduler_scope == "stream" and scheduler is not None:
            self.schedule_position += scheduler.last_epoch
        if self.optim_cfg.carry_state:
            names = {p: n for n, p in self.named_parameters()}
            state = self.trainer.optimizers[0].state
            self.carried_optim = {names[p]: {k: v.detach().clone() for k, v in s.items()} for p, s in state.items()}
