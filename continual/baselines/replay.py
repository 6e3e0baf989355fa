"""Experience replay with a reservoir buffer (e.g. Chaudhry et al. 2019, "tiny episodic memories").

At the end of each task its training set is offered to the reservoir, so while task t is
learned the buffer holds a uniform sample of tasks 0..t-1 only. Each step mixes the current
batch's loss with the loss on a replayed batch; replayed samples keep their own task id, so
each is scored in its own task's label space. The buffer (samples, count, generator) is state.
Its size is `er.buffer_size` samples, or what an `er.buffer_floats` budget for the method's whole
stored floats leaves after its network (`buffer_capacity`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from omegaconf import DictConfig

from continual.baselines.finetune import FineTune, past_weight
from continual.config.fields import in_range, positive
from continual.data.task_data import TaskData
from continual.helpers.buffer import ReservoirBuffer, buffer_capacity, sample_floats
from continual.methods import register


@register("er")
class ExperienceReplay(FineTune):
    @dataclass
    class Config:
        buffer_size: int = positive(1000, integer=True)  # reservoir over every training sample seen so far
        buffer_floats: Optional[float] = positive(None, finite=True, note="or null for buffer_size")  # budget for the whole stored_floats (network + x, label, task id per sample); set: decides the size
        batch_size: Optional[int] = positive(None, integer=True, note="or null for data.batch_size")  # replayed samples per step; None: data.batch_size
        weight: Optional[float] = in_range(0, 1, None, note="or null for 1 - 1/tasks seen")  # weight of the replay loss; None: 1 - 1/t, t = tasks seen

    def __init__(self, net, hp: DictConfig, batch_size: int, seed: int = 0, **kwargs):
        super().__init__(net, **kwargs)
        self.hp = hp
        self.replay_batch = hp.batch_size or batch_size
        # a sample keeps its input, label and task id
        self.buffer = ReservoirBuffer(0, seed)
        self.buffer.size = buffer_capacity(self, hp, sample_floats(net, 1, 1))  # sized once the method's other state exists

    @classmethod
    def from_config(cls, net, cfg, **common):
        return cls(net, hp=cfg.er, batch_size=cfg.data.batch_size, seed=cfg.seed, **common)

    def task_state(self) -> dict:
        return self.buffer.state_dict()

    def load_task_state(self, state: dict) -> None:
        self.buffer.load_state_dict(state)

    def training_step(self, batch: dict, batch_idx: int):
        loss = self.batch_mean(self.per_sample_loss(batch), batch)
        if len(self.buffer):
            # every rank holds the same buffer and draws the same replay batch (one seeded
            # generator), so DDP's gradient average leaves its gradient as one process has it
            w = past_weight(self.hp.weight, self.current_task)
            loss = (1 - w) * loss + w * self.per_sample_loss(self.buffer.sample(self.replay_batch)).mean()
        self.log_train_step({"train/loss": loss}, batch_size=len(batch["y"]))
        return loss

    def on_task_end(self, data: TaskData) -> None:
        self.buffer.add(x=data.x, y=data.y, task=data.task)
