"""The typed config schema: every key a YAML file or a `key=value` override may set, except
the selected method's own section, which its class carries (`<Method>.Config`, see
continual/methods.py) and the loader adds under the method's name.

Fields carry their valid values in metadata (`continual.config.fields`: `choice`, `positive`,
`in_range`, `plugin` for a key naming a stream or a backbone, ...), checked by one walk in
`continual.config.load`; keys that may differ when a run resumes are marked `volatile`. The
`metrics` section is built from the metric registry (`continual.metrics.registry`): each metric
callback declares its own switch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from continual.config.fields import at_least, choice, each, in_range, one_or_each, plugin, positive, volatile, volatile_keys

SCENARIOS = ("task", "class", "domain")
SCHEDULERS = ("none", "cosine", "step", "onecycle", "linear_warmup_cosine")  # optim.scheduler (continual/models/schedules.py)
PRETRAIN_DATASETS = ("digits", "digits28", "mnist")  # digits28: the 8x8 digits at MNIST's 28x28 layout


@dataclass
class DataConfig:
    stream: str = plugin("split_digits", "continual.data.streams:STREAMS")  # the task stream (docs/streams.md)
    root: str = "data"  # folder holding MNIST/raw (torchvision layout)
    cache_dir: Optional[str] = volatile(None)  # where the caches go (features/, base/, mnist1d/); None: data.root (set it when data.root is read-only or shared)
    download: bool = False  # let torchvision download missing files (needs network)
    n_tasks: Optional[int] = positive(None, integer=True)  # default: 5 for split streams, 10 for permuted
    # split streams only: classes per task, or a list of them, one per task (e.g. [2, 3, 5]: tasks of unequal size)
    classes_per_task: Any = one_or_each(positive(2, integer=True), "a positive integer or a non-empty list of them")
    # the base-task protocol (split streams): task 0 holds the first K classes and trains the backbone
    # (backbone.pretrain.epochs/lr/batch_size, model selection on its val split) before the loop; null: off
    base_classes: Optional[int] = positive(None, integer=True)
    class_order: Optional[List[int]] = None  # fixed class order; overrides shuffle_classes
    shuffle_classes: bool = False  # shuffle the class order with `seed` (the orders of van de Ven & Tolias's code)
    val_fraction: float = in_range(0.0, 1.0, 0.1, hi_open=True)  # per task, held out of the training split
    # the split every test pass evaluates: choose hyperparameters with `val`, report `test` once
    eval_split: str = choice("test", ("test", "val"))
    test_fraction: float = in_range(0.0, 1.0, 0.2, lo_open=True, hi_open=True)  # split_digits only: MNIST has its own test split
    batch_size: int = positive(128, integer=True)  # the global training batch (split over DDP processes)
    eval_batch_size: int = positive(8192, integer=True)  # test-pass batch
    custom: Optional[str] = None  # stream=custom: "module:function" returning a Stream, see continual.data.custom
    rotations: Optional[List[float]] = None  # rotated_mnist: degrees per task; None: drawn as rotation_draw says
    # rotated_mnist without data.rotations: angles evenly over [0, 180), or each task's drawn uniformly
    # from [0, 180) with the seed (Buzzega et al. 2020's R-MNIST; how far the last task's angle lies from
    # the others then varies by seed, and with it the forgetting)
    rotation_draw: str = choice("even", ("even", "uniform"))
    features: bool = volatile(False)  # cache the backbone extractor's features of every split under <cache_dir>/features/ (reused by later runs)


@dataclass
class PretrainConfig:
    dataset: str = choice("mnist", PRETRAIN_DATASETS)  # the data set backbone.init=pretrain trains on
    classes: Optional[List[int]] = None  # None: all classes of the data set
    epochs: int = positive(1, integer=True)  # pretraining epochs
    lr: float = positive(1e-3, finite=True)  # pretraining learning rate (Adam)
    batch_size: int = positive(128, integer=True)  # pretraining batch


@dataclass
class BackboneConfig:
    name: str = plugin("mlp", "continual.models.backbones:BACKBONES")  # the frozen feature extractor before the MLP; mlp: none, the raw inputs (docs/backbones.md)
    weights: Optional[str] = None  # the extractor's weights: a state_dict file or a torchvision name (ResNet18_Weights.IMAGENET1K_V1); None: random
    hidden: List[int] = each(positive(1, integer=True), "a non-empty list of positive widths", default_factory=lambda: [400, 400])  # the MLP's hidden widths
    activation: str = choice("relu", ("relu", "tanh", "gelu"))  # hidden-layer nonlinearity
    init: str = choice("random", ("random", "pretrain", "checkpoint"))  # where the backbone's weights come from
    checkpoint: Optional[str] = None  # a state_dict file, used when init=checkpoint
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)


@dataclass
class OptimConfig:
    name: str = choice("adam", ("adam", "sgd", "adamw", "rmsprop"))  # the optimizer of each task's training
    lr: float = positive(1e-3, finite=True)  # learning rate
    weight_decay: float = at_least(0, 0.0, finite=True)  # L2 weight decay (decoupled for adamw)
    momentum: float = at_least(0, 0.0, finite=True)  # sgd and rmsprop
    betas: List[float] = each(in_range(0, 1, 0.9, hi_open=True), "two numbers in [0, 1)", length=2,
                              default_factory=lambda: [0.9, 0.999])  # adam and adamw
    # keep the optimizer's state (Adam's moments, SGD's momentum) from one task to the next instead
    # of a fresh optimizer per task; van de Ven & Tolias 2019 keep it, and it changes forgetting a lot
    carry_state: bool = False
    # learning-rate schedule, stepped after every optimizer step (the formulas: continual/models/schedules.py)
    scheduler: str = choice("none", SCHEDULERS)
    scheduler_scope: str = choice("task", ("task", "stream"))  # task: restarted each task; stream: run once over the whole stream
    min_lr: float = at_least(0, 0.0, finite=True)  # cosine, linear_warmup_cosine, onecycle: the learning rate they end at
    warmup_steps: Optional[int] = positive(None, integer=True)  # onecycle, linear_warmup_cosine: warm-up optimizer steps
    warmup_fraction: Optional[float] = in_range(0, 1, None, lo_open=True, hi_open=True)  # or the warm-up as a fraction of the schedule's steps
    step_size: Optional[int] = positive(None, integer=True)  # step: optimizer steps between decays
    gamma: float = positive(0.1, finite=True)  # step: the factor of each decay
    div_factor: float = at_least(1, 25.0, finite=True)  # onecycle: it starts at lr / div_factor (torch's default 25)


@dataclass
class LoggerConfig:
    # the Lightning loggers that receive the metrics: wandb, tensorboard, csv, mlflow or none, or a list
    kind: Any = "wandb"
    project: str = "continual"  # W&B project; MLflow experiment
    entity: Optional[str] = None  # W&B team or user; None: your default entity
    group: Optional[str] = None  # W&B group, e.g. the seeds of one setting (compare: <grid>/<row>; sweep: sweep_<name>)
    job_type: Optional[str] = None  # W&B job type, a second grouping level (compare: the scenario; sweep: sweep)
    mode: Optional[str] = choice(None, (None, "online", "offline", "disabled"))  # W&B online|offline|disabled; None: $WANDB_MODE, else offline
    name: Optional[str] = None  # the run's name; None: the run directory's name
    tags: List[str] = field(default_factory=list)  # W&B tags


def metrics_config():
    """The `metrics` section's defaults: one switch per registered metric callback and their options."""
    from continual.metrics.registry import config_class

    return config_class()()


# Trainer arguments that may differ when a run resumes: how many processes share the work (global
# batches keep the math the same), where Lightning writes, what it prints.
TRAINER_VOLATILE = (
    "devices", "num_nodes", "strategy", "accelerator", "enable_progress_bar", "enable_model_summary", "log_every_n_steps",
    "default_root_dir",
)


@dataclass
class Config:
    method: str = "finetune"  # a built-in method's name, or <module>:<Class> (continual/methods.py)
    scenario: str = choice("task", SCENARIOS)  # task: task id given at test; class: one head, task inferred; domain: shared outputs
    # class-IL only: the outputs the training cross-entropy runs over. seen: the classes learned so far
    # (the outputs a prediction may use); all: every output from the first task on, so outputs of
    # classes not seen yet are pushed down (Mammoth's rule, Buzzega et al. 2020). Prediction: always seen
    class_il_train_outputs: str = choice("seen", ("seen", "all"))
    seed: int = in_range(0, 2**32 - 1, 0, integer=True, note="the range numpy's generator accepts")  # seeds everything (Lightning, data splits, shuffles): same seed, same metrics.json
    output_dir: Optional[str] = volatile(None)  # the run directory itself; None: runs/<name>
    overwrite: bool = volatile(False)  # allow writing into an output_dir that already holds results
    resume: Optional[str] = volatile(None)  # a run directory to continue from its last checkpoint (starts it if empty)
    checkpoint_every_s: float = at_least(0, 300.0, note="0: checkpoint only at task ends", volatile=True)  # mid-task checkpoint every this many seconds of training (and on SIGTERM); 0: only at task ends
    checkpoint_every_n_steps: int = at_least(0, 0, note="0: use checkpoint_every_s", volatile=True)  # > 0: every n training steps instead of every checkpoint_every_s
    data: DataConfig = field(default_factory=DataConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    logger: LoggerConfig = volatile(default_factory=LoggerConfig)  # where and how a run reports: may change on resume
    metrics: Any = field(default_factory=metrics_config)  # a dataclass built from the metric registry
    # + the selected method's section, `<method name>: <Method>.Config`, added by the loader

    # Passed to lightning.Trainer as-is, once per task: max_epochs is epochs per task.
    trainer: Dict[str, Any] = field(
        metadata={"volatile_arguments": TRAINER_VOLATILE},
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


VOLATILE = volatile_keys(Config)  # what `continual.rundir.state` leaves out of a run's fingerprint

