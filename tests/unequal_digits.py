"""An unequal Split-Digits stream built by hand (`data.stream=unequal_digits:split_digits_2_3_5`):
tasks of 2, 3 and 5 classes, so `router.n_v` must cover 5 and the smaller tasks have padded
outputs. It stands in for `data.classes_per_task=[2, 3, 5]` in tests and sweep previews."""

import torch

from continual.data import sources
from continual.data.streams.cutting import Stream, Task

TASKS = [[0, 1], [2, 3, 4], [5, 6, 7, 8, 9]]


def split_digits_2_3_5(cfg, seed):
    """scikit-learn's 8x8 digits in tasks of 2, 3 and 5 classes (data.val_fraction held out per task)"""
    x_tr, y_tr, x_te, y_te = sources.load_digits(cfg.test_fraction, seed)
    gen = torch.Generator().manual_seed(seed)
    tasks = []
    for t, classes in enumerate(TASKS):
        rows = torch.isin(y_tr, torch.tensor(classes)).nonzero().squeeze(1)
        rows = rows[torch.randperm(len(rows), generator=gen)]
        n_val = round(len(rows) * cfg.val_fraction)
        val, train = rows[:n_val], rows[n_val:]
        test = torch.isin(y_te, torch.tensor(classes))
        tasks.append(Task(t, classes, classes, x_tr[train], y_tr[train], x_tr[val], y_tr[val], x_te[test], y_te[test]))
    return Stream("split_digits_2_3_5", tasks, x_tr.shape[1], 10)
