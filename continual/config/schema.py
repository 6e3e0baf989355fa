"""The typed config schema. Every key a YAML file or a `key=value` override may set is here.

Fields with a fixed set of values carry `choices` metadata; `continual.config.load` checks
them and names the valid ones in the error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

METHODS = ("finetune", "router", "joint", "ewc", "si", "lwf", "er", "hat", "packnet")
SCENARIOS = ("task", "class", "domain")
STREAMS = (
    "split_digits", "split_mnist", "permuted_mnist", "rotated_mnist", "split_fashion_mnist", "split_cifar10", "split_cifar100", "custom",
)
PRETRAIN_DATASETS = ("digits", "mnist")


def choice(default, choices, **kw):
    return field(default=default, metadata={"choices": tuple(choices)}, **kw)


@dataclass
class DataConfig:
    stream: str = choice("split_digits", STREAMS)
    root: str = "data"  # folder holding MNIST/raw (torchvision layout)
    download: bool = False  # let torchvision download missing files (needs network)
    n_tasks: Optional[int] = None  # default: 5 for split streams, 10 for permuted
    classes_per_task: int = 2  # split streams only
    class_order: Optional[List[int]] = None  # fixed class order; overrides shuffle_classes
    shuffle_classes: bool = False  # shuffle the class order with `seed` (the orders of van de Ven & Tolias's code)
    val_fraction: float = 0.1  # per task, held out of the training split
    test_fraction: float = 0.2  # split_digits only: MNIST has its own test split
    batch_size: int = 128
    eval_batch_size: int = 8192
    custom: Optional[str] = None  # stream=custom: "module:function" returning a Stream, see continual.data.custom
    rotations: Optional[List[float]] = None  # rotated_mnist: degrees per task; None: evenly over [0, 180)


@dataclass
class PretrainConfig:
    dataset: str = choice("mnist", PRETRAIN_DATASETS)
    classes: Optional[List[int]] = None  # None: all classes of the data set
    epochs: int = 1
    lr: float = 1e-3
    batch_size: int = 128


@dataclass
class BackboneConfig:
    hidden: List[int] = field(default_factory=lambda: [400, 400])
    activation: str = choice("relu", ("relu", "tanh", "gelu"))
    init: str = choice("random", ("random", "pretrain", "checkpoint"))
    checkpoint: Optional[str] = None  # a state_dict file, used when init=checkpoint
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)


@dataclass
class OptimConfig:
    name: str = choice("adam", ("adam", "sgd", "adamw"))
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.0  # sgd only
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    # keep the optimizer's state (Adam's moments, SGD's momentum) from one task to the next instead
    # of a fresh optimizer per task; van de Ven & Tolias 2019 keep it, and it changes forgetting a lot
    carry_state: bool = False


@dataclass
class LoggerConfig:
    wandb: bool = True
    project: str = "continual"
    mode: Optional[str] = None  # online|offline|disabled; None: $WANDB_MODE, else offline
    name: Optional[str] = None
    tags: List[str] = field(default_factory=list)


@dataclass
class RouterConfig:
    """The task-signature attention router (method=router); see continual/routers/."""

    tokens: str = choice("layer", ("layer", "unit", "patch"))  # how the signature X is cut into rows
    # dot is the default: on Split-MNIST class-IL it infers tasks best (docs/router.md)
    attention: str = choice("dot", ("learned", "dot", "perceiver", "local"))
    gate: str = choice("units", ("units", "connections"))  # what the mask switches
    mask: str = choice("soft", ("soft", "hard"))  # sigmoid gates, or binary with straight-through
    h: int = 64  # head size
    heads: int = 1
    n_v: Optional[int] = None  # padded within-task classes; None: the largest task's class count
    memories: int = 32  # memory slots per task (keys + gate + value rows)
    positional: bool = False  # learned token-position embeddings
    window: int = 1  # local attention: a token sees tokens within +-window
    latents: int = 8  # perceiver: m latents
    patch_size: Optional[int] = None  # patch tokens: input features per patch (None: sqrt(n_in))
    unit_chunks: int = 16  # unit tokens: input groups per unit token
    task_loss_weight: float = 1.0  # weight of the task-id cross-entropy on the attention scores
    gate_init: float = 3.0  # initial gate logit (sigmoid(3) = 0.95: start with the full network)
    mask_sparsity: float = 0.0  # weight of the mean mask density in the loss (0: gates need not close)


@dataclass
class MetricsConfig:
    """Continual-learning metric callbacks (continual/metrics/); the accuracy matrix is always on."""

    mask_stability: bool = True  # per-sample mask stability over a fixed probe set (methods exposing masks)
    padded_class: bool = True  # accuracy over the N_v padded logits and the padded-slot win rate
    task_inference: bool = True  # accuracy and confusion matrix of the inferred task
    probe_per_task: int = 64  # mask stability: the first K test samples of each task


@dataclass
class EWCConfig:
    lambda_: float = 100.0  # penalty weight: loss + lambda_/2 * sum F (theta - theta*)^2
    online: bool = False  # one running Fisher (gamma-decayed) instead of one penalty per task
    gamma: float = 1.0  # online only: decay of the old Fisher
    fisher: str = choice("predicted", ("predicted", "empirical", "sampled"))  # label used in the Fisher
    fisher_samples: Optional[int] = None  # None: the task's whole training set
    fisher_batch_size: int = 256  # per-sample gradients computed this many at a time


@dataclass
class SIConfig:
    c: float = 0.1  # surrogate-loss weight
    xi: float = 0.1  # damping of omega = W / (delta^2 + xi)


@dataclass
class LwFConfig:
    temperature: float = 2.0
    alpha: Optional[float] = None  # weight of the distillation loss; None: 1 - 1/t (current loss 1/t), t = tasks seen
    kd_over_classes: str = choice("sum", ("sum", "mean"))  # "mean": divided by the outputs distilled over (van de Ven & Tolias 2019's code)


@dataclass
class ReplayConfig:
    buffer_size: int = 1000  # reservoir over every training sample seen so far
    batch_size: Optional[int] = None  # replayed samples per step; None: data.batch_size
    weight: Optional[float] = None  # weight of the replay loss; None: 1 - 1/t, t = tasks seen


@dataclass
class HATConfig:
    smax: float = 400.0  # final slope of the gate sigmoid
    c: float = 0.75  # mask-sparsity regularizer weight
    clip: float = 10000.0  # gradient-norm clip (HAT's default)


@dataclass
class PackNetConfig:
    prune: float = 0.75  # fraction of a task's free weights released for later tasks
    retrain_fraction: float = 0.25  # last fraction of a task's steps: retrain the kept weights after pruning


@dataclass
class Config:
    method: str = choice("finetune", METHODS)
    scenario: str = choice("task", SCENARIOS)
    seed: int = 0
    output_dir: Optional[str] = None  # the run directory itself; None: runs/<name>
    overwrite: bool = False  # allow writing into an output_dir that already holds results
    resume: Optional[str] = None  # a run directory to continue from its last checkpoint (starts it if empty)
    checkpoint_every_n_steps: int = 50  # mid-task checkpoint cadence; 0: only at task ends and on SIGTERM
    data: DataConfig = field(default_factory=DataConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    router: RouterConfig = field(default_factory=RouterConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    # Baseline hyperparameters: each section is read only by its method.
    ewc: EWCConfig = field(default_factory=EWCConfig)
    si: SIConfig = field(default_factory=SIConfig)
    lwf: LwFConfig = field(default_factory=LwFConfig)
    er: ReplayConfig = field(default_factory=ReplayConfig)
    hat: HATConfig = field(default_factory=HATConfig)
    packnet: PackNetConfig = field(default_factory=PackNetConfig)
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
