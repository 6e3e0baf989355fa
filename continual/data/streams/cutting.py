"""Task streams `T1: S1, S2, ...; T2: ...`: a data set cut into an ordered list of tasks, the
ways every stream file (and your own) cuts one: by classes, by permutation, by rotation.

A task holds its classes and its train/val/test tensors. Inputs keep their shape (images
as [N, channels, height, width]: `Stream.input_shape`); only the MLP sees vectors, after the
backbone's extractor (`continual.features`). Labels are *global* class ids,
unique across the stream (Split-MNIST keeps the digit; Permuted-MNIST task t maps digit d to
10*t + d), so every scenario can derive its targets from them.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from omegaconf import DictConfig

from continual.errors import ConfigError


@dataclass
class Task:
    id: int
    classes: list[int]  # global class ids, in order: index in this list = within-task label
    labels: list[int]  # the source data set's labels for those classes (for people)
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")


@dataclass
class Stream:
    """`input_shape` is the shape of one sample (x tensors are [N, *input_shape]); a stream of flat
    vectors may give `n_features` alone (input_shape (n_features,)). `n_features` is always the
    number of values per sample, prod(input_shape)."""

    name: str
    tasks: list[Task]
    n_features: int
    n_classes: int  # global class ids are 0..n_classes-1
    meta: dict = field(default_factory=dict)
    input_shape: tuple[int, ...] | None = None

    def __post_init__(self):
        if self.input_shape is None:
            self.input_shape = (self.n_features,)
        self.input_shape = tuple(self.input_shape)

    def __len__(self) -> int:
        return len(self.tasks)

    @property
    def task_classes(self) -> list[list[int]]:
        return [t.classes for t in self.tasks]


def _hold_out(x, y, fraction: float, gen: torch.Generator, rows: torch.Tensor | None = None):
    """(train x, train y, val x, val y): a seeded `fraction` of the samples (of `rows` only, if
    given: one gather from the whole set instead of a copy of the rows first) held out."""
    rows = torch.arange(len(y)) if rows is None else rows
    perm = rows[torch.randperm(len(rows), generator=gen)]
    n_val = round(len(rows) * fraction)
    return x[perm[n_val:]], y[perm[n_val:]], x[perm[:n_val]], y[perm[:n_val]]


def _class_order(cfg: DictConfig, n_source_classes: int, seed: int) -> list[int]:
    if cfg.class_order is not None:
        order = list(cfg.class_order)
        bad = [c for c in order if not 0 <= c < n_source_classes]
        if bad or len(set(order)) != len(order):
            raise ConfigError(
                f"data.class_order={order} must list distinct classes in 0..{n_source_classes - 1}"
            )
        return order
    if not cfg.shuffle_classes:
        return list(range(n_source_classes))
    # As van de Ven & Tolias's code (data.py): class c gets label perm[c] and task t holds labels
    # t*k .. t*k+k-1, so seed s cuts the same tasks as their runs with --seed s (their seed 0
    # alone keeps the natural order).
    perm = np.random.RandomState(seed).permutation(n_source_classes)
    return np.argsort(perm).tolist()


def check_task(name: str, task: Task, cfg: DictConfig) -> None:
    """Refuse a task that cannot be trained or scored, naming the setting that emptied it."""
    where = f"task {task.id + 1} (classes {task.labels}) of {name}"
    if not len(task.y_train):
        fix = (f"lower data.val_fraction (now {cfg.val_fraction}, which holds out all {len(task.y_val)})" if len(task.y_val)
               else "give its classes training samples")
        raise ConfigError(f"{where} has no training samples; {fix}")
    split = cfg.eval_split
    if not len(task.split(split)[1]):
        fix = {"val": "raise data.val_fraction", "test": "raise data.test_fraction" if name == "split_digits" else "give its classes test samples"}
        raise ConfigError(f"{where} has no {split} samples to evaluate; {fix[split]}")


def shaped_stream(name: str, tasks: list[Task], x: torch.Tensor, n_classes: int, meta: dict | None = None) -> Stream:
    """A stream whose samples have the shape of `x`'s rows."""
    shape = tuple(x.shape[1:])
    return Stream(name, tasks, math.prod(shape), n_classes, meta or {}, input_shape=shape)


def _task_sizes(name: str, cfg: DictConfig, order: list[int], n_source_classes: int) -> list[int]:
    """How many classes each task takes from the class order: `data.base_classes` (if set) for
    task 0, then `data.classes_per_task` (one count for every task, or a list of counts, one per
    task) for the rest; `data.n_tasks` counts every task, the base task included.

    Without `data.n_tasks` every class must land in a task: a remainder class left out
    silently would change what the run measures."""
    per, base, n_tasks = cfg.classes_per_task, cfg.get("base_classes"), cfg.n_tasks
    base_sizes = [base] if base is not None else []
    if base is not None and base >= len(order):
        raise ConfigError(f"data.base_classes={base} leaves none of the {len(order)} classes of {name} for incremental tasks; "
                          f"set data.base_classes<={len(order) - 1}")
    room = len(order) - (base or 0)  # classes left for the tasks of `classes_per_task`
    if not isinstance(per, int):  # a list: one count per task
        per = list(per)
        if n_tasks is not None and n_tasks != len(base_sizes) + len(per):
            with_base = " plus the base task" if base is not None else ""
            raise ConfigError(f"data.n_tasks={n_tasks} disagrees with data.classes_per_task={per} ({len(per)} tasks{with_base}); "
                              f"drop data.n_tasks or set it to {len(base_sizes) + len(per)}")
        if sum(per) > room:
            of = f" after the {base} base classes" if base is not None else ""
            has = f"data.class_order={order} lists {room}" if cfg.class_order is not None else f"{name} has {room}"
            raise ConfigError(f"data.classes_per_task={per} needs {sum(per)} classes but {has}{of}; "
                              f"make the counts sum to at most {room}")
        return base_sizes + per
    if per > room:
        raise ConfigError(f"data.classes_per_task={per} exceeds the {room} classes of {name}; set data.classes_per_task<={room}")
    # after a base task the classes left need not divide: the last incremental task takes the rest
    # (Split-MNIST B5 in tasks of 2: [5, 2, 2, 1]), said in one warning
    rest = room % per if base is not None and n_tasks is None else 0
    n_tasks = n_tasks if n_tasks is not None else len(base_sizes) + room // per + (rest > 0)
    if base is not None and n_tasks < 2:
        raise ConfigError(f"data.n_tasks={n_tasks} leaves no incremental task after the base task; set data.n_tasks>=2 or drop it")
    sizes = (base_sizes + [per] * (n_tasks - len(base_sizes) - (rest > 0)) + [rest] * (rest > 0))[:n_tasks]
    if rest:
        warnings.warn(f"data.classes_per_task={per} does not divide the {room} classes after data.base_classes={base}: "
                      f"the last task holds {rest} (tasks of {sizes} classes); set data.n_tasks={n_tasks - 1} to leave them out",
                      stacklevel=2)
    if sum(sizes) > len(order):
        base_part = f"data.base_classes={base} + {n_tasks - 1}" if base is not None else f"data.n_tasks={n_tasks}"
        raise ConfigError(
            f"{base_part} x data.classes_per_task={per} needs {sum(sizes)} classes but "
            f"{name} has {len(order)}; lower one of them"
        )
    left_out = sorted(set(range(n_source_classes)) - set(order[: sum(sizes)]))
    if cfg.n_tasks is None and left_out:
        what = f"data.class_order={order}" if cfg.class_order is not None else f"data.classes_per_task={per}"
        fixes = [f"list all {n_source_classes} classes in data.class_order"] if len(order) < n_source_classes else []
        whole = n_source_classes - (base or 0)
        if whole % per:
            fixes.append(f"use data.classes_per_task in {[d for d in range(1, whole) if whole % d == 0]}")
        raise ConfigError(
            f"{what} leaves class(es) {left_out} of {name} out of every task; {' and '.join(fixes)}, "
            f"or set data.n_tasks={n_tasks} to leave them out on purpose"
        )
    return sizes


def split_stream(name: str, arrays, cfg: DictConfig, seed: int, n_source_classes: int = 10) -> Stream:
    """Split a labelled data set into tasks of `classes_per_task` classes each (`_task_sizes`)."""
    x_tr, y_tr, x_te, y_te = arrays
    order = _class_order(cfg, n_source_classes, seed)
    sizes = _task_sizes(name, cfg, order, n_source_classes)
    gen = torch.Generator().manual_seed(seed)
    tasks = []
    for t, end in enumerate(np.cumsum(sizes).tolist()):
        classes = order[end - sizes[t] : end]
        cls = torch.tensor(classes)
        in_tr, in_te = torch.isin(y_tr, cls), torch.isin(y_te, cls)
        xt, yt, xv, yv = _hold_out(x_tr, y_tr, cfg.val_fraction, gen, rows=in_tr.nonzero().squeeze(1))
        tasks.append(Task(t, classes, classes, xt, yt, xv, yv, x_te[in_te], y_te[in_te]))
        check_task(name, tasks[-1], cfg)
    meta = {"class_order": order[: sum(sizes)], **({"base_classes": cfg.base_classes} if cfg.get("base_classes") is not None else {})}
    return shaped_stream(name, tasks, x_tr, n_source_classes, meta)


def transformed_stream(name: str, arrays, cfg: DictConfig, transforms: list, gen: torch.Generator) -> Stream:
    """Each task is the whole data set under its own input transform (`transforms[t](x)`).

    Task t's labels are offset by `n_src * t`, so every task has its own global class ids.
    """
    x_tr, y_tr, x_te, y_te = arrays
    n_src = int(y_tr.max()) + 1
    tasks = []
    for t, f in enumerate(transforms):
        xt, yt, xv, yv = _hold_out(f(x_tr), y_tr + n_src * t, cfg.val_fraction, gen)
        classes = list(range(n_src * t, n_src * (t + 1)))
        tasks.append(Task(t, classes, list(range(n_src)), xt, yt, xv, yv, f(x_te), y_te + n_src * t))
        check_task(name, tasks[-1], cfg)
    return shaped_stream(name, tasks, x_tr, n_src * len(transforms))


def permuted_stream(name: str, arrays, cfg: DictConfig, seed: int) -> Stream:
    """Each task is the whole data set under its own fixed pixel permutation (task 0: none)."""
    n_tasks = cfg.n_tasks if cfg.n_tasks is not None else 10
    n_px = arrays[0][0].numel()
    gen = torch.Generator().manual_seed(seed)
    # drawn one task at a time, interleaved with that task's hold-out split (keeps old streams identical)
    perms: list = []

    def permute(t: int):
        def f(x):
            if len(perms) <= t:
                perms.append(torch.arange(n_px) if t == 0 else torch.randperm(n_px, generator=gen))
            return x.flatten(1)[:, perms[t]].view(x.shape)

        return f

    return transformed_stream(name, arrays, cfg, [permute(t) for t in range(n_tasks)], gen)


def rotated_stream(name: str, arrays, cfg: DictConfig, seed: int) -> Stream:
    """Each task is the whole data set rotated by a fixed angle (`data.rotations`, degrees; else
    spaced evenly over [0, 180) or, with `data.rotation_draw=uniform`, drawn from it with `seed`)."""
    from torchvision.transforms.functional import rotate

    n_tasks = cfg.n_tasks if cfg.n_tasks is not None else (len(cfg.rotations) if cfg.rotations else 5)
    if cfg.rotations is not None:
        angles = list(cfg.rotations)
    elif cfg.rotation_draw == "uniform":  # a generator of its own: the hold-out split stays that of `even`
        angles = (180.0 * torch.rand(n_tasks, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)).tolist()
    else:
        angles = [180.0 * t / n_tasks for t in range(n_tasks)]
    if len(angles) != n_tasks:
        raise ConfigError(f"data.rotations has {len(angles)} angles but data.n_tasks={n_tasks}; give one angle per task")

    def turn(angle: float):
        return lambda x: rotate(x, angle)

    stream = transformed_stream(name, arrays, cfg, [turn(a) for a in angles], torch.Generator().manual_seed(seed))
    stream.meta["rotations"] = angles
    return stream
