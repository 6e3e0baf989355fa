"""The typed config schema: every key a YAML file or a `key=value` override may set, except
the selected method's own section, which its class carries (`<Method>.Config`, see
continual/methods.py) and the loader adds under the method's name.

Fields with a fixed set of values carry `choices` metadata, fields naming a plug-in (a stream, a
backbone) the registry of them; `continual.config.load` checks both and names the valid ones in
the error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

SCENARIOS = ("task", "class", "domain")
PRETRAIN_DATASETS = ("digits", "digits28", "mnist")  # digits28: the 8x8 digits at MNIST's 28x28 layout


def choice(default, choices, **kw):
    return field(default=default, metadata={"choices": tuple(choices)}, **kw)


def plugin(default: str, registry: str):
    """A field naming an entry of `registry` ("module:attribute" of a `continual.registry.Registry`,
    imported only when checked) or your own code as <module>:<attr>."""
    return field(default=default, metadata={"registry": registry})


@dataclass
class DataConfig:
    stream: str = plugin("split_digits", "continual.data.streams:STREAMS")  # the task stream (docs/streams.md)
    root: str = "data"  # folder holding MNIST/raw (torchvision layout)
    download: bool = False  # let torchvision download missing files (needs network)
    n_tasks: Optional[int] = None  # default: 5 for split streams, 10 for permuted
    classes_per_task: int = 2  # split streams only
    class_order: Optional[List[int]] = None  # fixed class order; overrides shuffle_classes
    shuffle_classes: bool = False  # shuffle the class order with `seed` (the orders of van de Ven & Tolias's code)
    val_fraction: float = 0.1  # per task, held out of the training split
    # the split every test pass evaluates: choose hyperparameters with `val`, report `test` once
    eval_split: str = choice("test", ("test", "val"))
    test_fraction: float = 0.2  # split_digits only: MNIST has its own test split
    batch_size: int = 128  # the global training batch (split over DDP processes)
    eval_batch_size: int = 8192  # test-pass batch
    custom: Optional[str] = None  # stream=custom: "module:function" returning a Stream, see continual.data.custom
    rotations: Optional[List[float]] = None  # rotated_mnist: degrees per task; None: evenly over [0, 180)


@dataclass
class PretrainConfig:
    dataset: str = choice("mnist", PRETRAIN_DATASETS)  # the data set backbone.init=pretrain trains on
    classes: Optional[List[int]] = None  # None: all classes of the data set
    epochs: int = 1  # pretraining epochs
    lr: float = 1e-3  # pretraining learning rate (Adam)
    batch_size: int = 128  # pretraining batch


@dataclass
class BackboneConfig:
    name: str = plugin("mlp", "continual.models.backbones:BACKBONES")  # the backbone network (docs/backbones.md)
    hidden: List[int] = field(default_factory=lambda: [400, 400])  # the MLP's hidden widths
    activation: str = choice("relu", ("relu", "tanh", "gelu"))  # hidden-layer nonlinearity
    init: str = choice("random", ("random", "pretrain", "checkpoint"))  # where the backbone's weights come from
    checkpoint: Optional[str] = None  # a state_dict file, used when init=checkpoint
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)


@dataclass
class OptimConfig:
    name: str = choice("adam", ("adam", "sgd", "adamw", "rmsprop"))  # the optimizer of each task's training
    lr: float = 1e-3  # learning rate
    weight_decay: float = 0.0  # L2 weight decay (decoupled for adamw)
    momentum: float = 0.0  # sgd and rmsprop
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])  # adam and adamw
    # keep the optimizer's state (Adam's moments, SGD's momentum) from one task to the next instead
    # of a fresh optimizer per task; van de Ven & Tolias 2019 keep it, and it changes forgetting a lot
    carry_state: bool = False


@dataclass
class LoggerConfig:
    # the Lightning loggers that receive the metrics: wandb, tensorboard, csv, mlflow or none, or a list
    kind: Any = "wandb"
    project: str = "continual"  # W&B project; MLflow experiment
    entity: Optional[str] = None  # W&B team or user; None: your default entity
    group: Optional[str] = None  # W&B group, e.g. the seeds of one setting (compare: <grid>/<row>; sweep: sweep_<name>)
    job_type: Optional[str] = None  # W&B job type, a second grouping level (compare: the scenario; sweep: sweep)
    mode: Optional[str] = None  # W&B online|offline|disabled; None: $WANDB_MODE, else offline
    name: Optional[str] = None  # the run's name; None: the run directory's name
    tags: List[str] = field(default_factory=list)  # W&B tags


@dataclass
class MetricsConfig:
    """Continual-learning metric callbacks (continual/metrics/); the accuracy matrix is always on."""

    mask_stability: bool = True  # per-sample mask stability over a fixed probe set (methods exposing masks)
    padded_class: bool = True  # accuracy over the N_v padded logits and the padded-slot win rate
    task_inference: bool = True  # accuracy and confusion matrix of the inferred task
    probe_per_task: int = 64  # mask stability: the first K test samples of each task


@dataclass
class Config:
    method: str = "finetune"  # a built-in method's name, or <module>:<Class> (continual/methods.py)
    scenario: str = choice("task", SCENARIOS)  # task: task id given at test; class: one head, task inferred; domain: shared outputs
    seed: int = 0  # seeds everything (Lightning, data splits, shuffles): same seed, same metrics.json
    output_dir: Optional[str] = None  # the run directory itself; None: runs/<name>
    overwrite: bool = False  # allow writing into an output_dir that already holds results
    resume: Optional[str] = None  # a run directory to continue from its last checkpoint (starts it if empty)
    checkpoint_every_s: float = 300.0  # mid-task checkpoint every this many seconds of training (and on SIGTERM); 0: only at task ends
    checkpoint_every_n_steps: int = 0  # > 0: every n training steps instead of every checkpoint_every_s
    data: DataConfig = field(default_factory=DataConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    # + the selected method's section, `<method name>: <Method>.Config`, added by the loader

    # Passed to lightning.Trainer as-is, once per task: max_epochs is epochs per task.
    trainer: Dict[str, Any] = field(
        default_factory=lambda: {
            "max_epochs": 1,
            "accelerator": "auto",
            "devices": 1,
            "enable_checkpointing": False,
            "enable_model_summary": False,
            "num_sanity_val_steps": 0,
            "log_every_n_steps": 10,
        }
    )
