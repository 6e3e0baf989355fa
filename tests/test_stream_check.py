"""Issue #26: every stream the task loop receives is checked once, however it was built. A
`Stream` put together by hand in `data.stream=<module>:<function>` with bad data is refused in
one line naming the task and split, exit 2, nothing written; `stream_from_tensors` refuses what
it used to truncate; the built-in streams pass unchanged."""

import pytest

from continual.cli.main import main
from helpers import QUICK, comparable

STREAMS = '''
import torch
from continual.data.custom import stream_from_tensors
from continual.data.streams import Stream, Task


def good(cfg, seed, edit=None, n_classes=4):
    """Two tasks of two classes each (0,1 and 2,3), 40 training, 8 val and 12 test rows each."""
    g = torch.Generator().manual_seed(0)
    tasks = []
    for t in range(2):
        classes = [2 * t, 2 * t + 1]
        parts = {}
        for split, n in (("train", 40), ("val", 8), ("test", 12)):
            parts[f"x_{split}"] = torch.randn(n, 6, generator=g)
            parts[f"y_{split}"] = torch.tensor(classes).repeat(n // 2)
        tasks.append(Task(t, classes, classes, **parts))
    if edit:
        edit(tasks)
    return Stream("handmade", tasks, 6, n_classes)


def _set(task, name, value):
    return lambda tasks: setattr(tasks[task], name, value(getattr(tasks[task], name)))


def _nan_at(x):
    x = x.clone()
    x[3, 2] = float("nan")
    return x


def nan_train(cfg, seed):
    return good(cfg, seed, _set(1, "x_train", _nan_at))

def nan_test(cfg, seed):
    return good(cfg, seed, _set(0, "x_test", _nan_at))

def train_label_of_another_task(cfg, seed):
    return good(cfg, seed, _set(0, "y_train", lambda y: torch.where(torch.arange(len(y)) == 5, 3, y)))

def test_labels_of_another_task(cfg, seed):
    return good(cfg, seed, _set(1, "y_test", lambda y: y - 2))

def test_label_99(cfg, seed):
    return good(cfg, seed, _set(1, "y_test", lambda y: torch.where(torch.arange(len(y)) == 0, 99, y)))

def empty_task(cfg, seed):
    return good(cfg, seed, lambda tasks: [setattr(tasks[1], f"{v}_train", getattr(tasks[1], f"{v}_train")[:0]) for v in "xy"])

def empty_test(cfg, seed):
    return good(cfg, seed, lambda tasks: [setattr(tasks[0], f"{v}_test", getattr(tasks[0], f"{v}_test")[:0]) for v in "xy"])

def extra_rows(cfg, seed):
    return good(cfg, seed, _set(0, "x_train", lambda x: torch.cat([x, x[:10]])))

def features_differ(cfg, seed):
    return good(cfg, seed, _set(1, "x_val", lambda x: torch.cat([x, x[:, :1]], 1)))

def float_labels(cfg, seed):
    return good(cfg, seed, _set(0, "y_test", lambda y: y.float()))

def n_classes_huge(cfg, seed):
    return good(cfg, seed, n_classes=5000)

def class_beyond_n_classes(cfg, seed):
    return good(cfg, seed, n_classes=3)


def _tensors(cfg, seed, y_train=None, features=6):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(200) % 6  # the three tasks of the quick run
    x = torch.randn(200, features, generator=g)
    return stream_from_tensors("tensors", x, y if y_train is None else y_train, x[:40], y[:40], cfg, seed)

def tensors_label_2_7(cfg, seed):
    y = (torch.arange(200) % 6).float()
    y[7] = 2.7
    return _tensors(cfg, seed, y_train=y)

def tensors_no_features(cfg, seed):
    return _tensors(cfg, seed, features=0)

def tensors_label_1e9(cfg, seed):
    y = torch.arange(200) % 6
    y[0] = 10**9
    return _tensors(cfg, seed, y_train=y)
'''

# (case, overrides, what the one error line must contain); each ran on main to exit 0, a
# traceback, or an error naming the wrong cause
CASES = [
    ("nan_train", ["method=slda"], "stream 'handmade', task 2 (classes [2, 3]), train split: x_train holds NaN or inf values"),
    ("nan_train", ["method=prototypes"], "task 2 (classes [2, 3]), train split: x_train holds NaN or inf values"),
    ("nan_test", ["method=finetune"], "task 1 (classes [0, 1]), test split: x_test holds NaN or inf values"),
    ("train_label_of_another_task", [], "task 1 (classes [0, 1]), train split: y_train holds labels [3] that are not classes of this task"),
    ("test_labels_of_another_task", [], "task 2 (classes [2, 3]), test split: y_test holds labels [0, 1] that are not classes of this task"),
    ("test_label_99", [], "task 2 (classes [2, 3]), test split: y_test holds labels [99] that are not classes of this task"),
    ("empty_task", [], "task 2 (classes [2, 3]), train split is empty"),
    ("empty_test", [], "task 1 (classes [0, 1]), test split is empty"),
    ("empty_test", ["data.eval_split=val"], None),  # scored on val: an empty test split is not used
    ("extra_rows", [], "task 1 (classes [0, 1]), train split: x_train has 50 rows but y_train has shape (40,)"),
    ("features_differ", [], "task 2 (classes [2, 3]), val split: x_val has shape (8, 7), not [samples, n_features=6]"),
    ("float_labels", [], "task 1 (classes [0, 1]), test split: y_test is torch.float32; labels must be integer class ids"),
    ("n_classes_huge", [], "stream 'handmade' has n_classes=5000 but holds only 120 samples"),
    ("class_beyond_n_classes", [], "task 2 (classes [2, 3]) names class ids [3] outside 0..2 (n_classes=3)"),
    ("tensors_label_2_7", [], "custom stream 'tensors': y_train holds non-integer labels [2.700000047683716]"),
    ("tensors_no_features", [], "custom stream 'tensors': x_train has no features per sample (shape (200, 0))"),
    ("tensors_label_1e9", [], "custom stream 'tensors': labels go up to 1000000000 but classes [6, 7, 8, 9, 10]..."),
]


@pytest.fixture(scope="module")
def streams_module(tmp_path_factory):
    d = tmp_path_factory.mktemp("streams")
    (d / "checked_streams.py").write_text(STREAMS)
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(d))
        yield "checked_streams"


@pytest.mark.parametrize("case, overrides, expected", CASES, ids=[f"{c[0]}{'-' + '-'.join(c[1]) if c[1] else ''}" for c in CASES])
def test_a_bad_stream_is_one_line_naming_task_and_split(streams_module, tmp_path, capsys, case, overrides, expected):
    run = tmp_path / "run"
    code = main(["fit", f"data.stream={streams_module}:{case}", *overrides, f"output_dir={run}", *QUICK])
    err = capsys.readouterr().err.strip()
    if expected is None:
        assert code == 0, err
        return
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("continual: error: ") and expected in err, err
    assert not run.exists()  # refused before any file is written


def test_a_good_handmade_stream_trains_and_scores_every_task(streams_module, tmp_path):
    assert main(["fit", f"data.stream={streams_module}:good", f"output_dir={tmp_path / 'run'}", *QUICK]) == 0
    m = comparable(tmp_path / "run")
    assert m["tasks"] == [[0, 1], [2, 3]] and len(m["accuracy_matrix"]) == 2


def test_the_built_in_streams_pass_the_check(mnist_root):
    """Every built-in stream family passes the check unchanged (its cost is the bench's business,
    not a timed test's). Two tasks of the MNIST transforms keep the test short."""
    from omegaconf import OmegaConf

    from continual.config.schema import DataConfig
    from continual.data.streams import build_stream
    from continual.data.streams.check import check_stream

    for name in ("split_digits", "split_mnist", "permuted_mnist", "rotated_mnist"):
        n_tasks = 2 if name in ("permuted_mnist", "rotated_mnist") else None
        cfg = OmegaConf.merge(OmegaConf.structured(DataConfig), {"stream": name, "root": str(mnist_root), "n_tasks": n_tasks})
        stream = build_stream(cfg, seed=0)
        check_stream(stream)
        if name == "permuted_mnist":
            assert len(stream) == 2 and sum(len(t.split(s)[1]) for t in stream.tasks for s in ("train", "val", "test")) == 140_000
