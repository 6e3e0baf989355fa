"""Issue #16: every bad input is one line `continual: error: ...`, exit 2, and changes no file of
an earlier run; faults (a torn checkpoint, a full or read-only disk, two runs into one folder, a
kill during `overwrite=true`, Ctrl-C) lose nothing. Issue #26: a damaged checkpoint is found by
its checksum, a finished run's lost metrics.json is rebuilt, a grid's log on a full disk is one line."""

import gzip
import hashlib
import json
import math
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from continual.cli.main import main
from continual.rundir import layout
from continual.rundir import state as run_state
from continual.rundir.state import FORMAT
from helpers import QUICK, QUIET, comparable

STREAMS = '''
import torch
from continual.data.custom import stream_from_tensors

def _data(n=200, features=8):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, features, generator=g), torch.arange(n) % 10

def tensors(cfg, seed, x_train=None, y_train=None, x_test=None, y_test=None):
    x, y = _data()
    parts = [x_train if x_train is not None else x, y_train if y_train is not None else y,
             x_test if x_test is not None else x[:50], y_test if y_test is not None else y[:50]]
    return stream_from_tensors("mine", *parts, cfg, seed)

def nan_inputs(cfg, seed):
    x, _ = _data()
    x[3, 2] = float("nan")
    return tensors(cfg, seed, x_train=x)

def inf_inputs(cfg, seed):
    x, _ = _data()
    x[0, 0] = float("inf")
    return tensors(cfg, seed, x_test=x[:50])

def negative_labels(cfg, seed):
    _, y = _data()
    return tensors(cfg, seed, y_train=y - 1)

def label_99(cfg, seed):
    _, y = _data()
    y[0] = 99
    return tensors(cfg, seed, y_train=y)

def extra_rows(cfg, seed):
    x, _ = _data(n=201)
    return tensors(cfg, seed, x_train=x)

def feature_mismatch(cfg, seed):
    x, _ = _data(n=50, features=9)
    return tensors(cfg, seed, x_test=x)

def empty_task(cfg, seed):
    x, y = _data()
    keep = (y != 2) & (y != 3)
    return tensors(cfg, seed, x_train=x[keep], y_train=y[keep])

def empty_test(cfg, seed):
    x, y = _data()
    return tensors(cfg, seed, x_test=x[:0], y_test=y[:0])

def no_test_for_a_task(cfg, seed):
    x, y = _data()
    keep = y[:50] >= 2
    return tensors(cfg, seed, x_test=x[:50][keep], y_test=y[:50][keep])
'''


def idx_files(raw: Path, n_images: int, n_labels: int, top_label: int) -> None:
    """A tiny MNIST in torchvision's IDX layout (train and t10k)."""
    raw.mkdir(parents=True)
    for split in ("train", "t10k"):
        (raw / f"{split}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n_images, 28, 28) + bytes(n_images * 784))
        labels = bytes(i % 10 for i in range(n_labels - 1)) + bytes([top_label])
        (raw / f"{split}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n_labels) + labels)


def flip_middle(path: Path, n: int = 16) -> None:
    """Flip `n` bytes in the middle of a file, as a disk or a copy may."""
    data = bytearray(path.read_bytes())
    at = len(data) // 2
    data[at:at + n] = bytes(b ^ 0xFF for b in data[at:at + n])
    path.write_bytes(bytes(data))


def snapshot(folder: Path) -> dict:
    """Every file of a run folder by its hash, but the lock file: it names its last holder (a
    refused run took the lock to look), bookkeeping rather than a result."""
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file() and p.name != layout.LOCK}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The bad files the table points at, and a finished earlier run every refusal must leave alone."""
    d = tmp_path_factory.mktemp("inputs")
    (d / "hardening_streams.py").write_text(STREAMS)
    (d / "broken_streams.py").write_text("def f(cfg, seed)\n    return None\n")
    (d / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    (d / "data3.yaml").write_text("data: 3\n")
    (d / "compare_bad_yaml.yaml").write_text("methods: [finetune\n")
    (d / "compare_seeds.yaml").write_text("methods: [finetune]\nscenarios: [task]\nseeds: [zero]\n")
    (d / "compare_reference.yaml").write_text("methods: [finetune]\nscenarios: [task]\nseeds: [0]\nreference: {finetune: 3}\n")
    (d / "sweep_metric.yaml").write_text(
        "method: grid\nmetric: final/acc\nparameters: {seed: {values: [0]}}\ncommand: [continual, fit, '${args_no_hyphens}']\n"
    )
    idx_files(d / "labels12" / "MNIST" / "raw", 20, 20, 12)
    idx_files(d / "short_labels" / "MNIST" / "raw", 20, 19, 9)
    gz = d / "gz_only" / "MNIST" / "raw"
    gz.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (gz / f"{name}.gz").write_bytes(gzip.compress(b"not unpacked"))
    earlier = d / "earlier"
    assert main(["fit", f"output_dir={earlier}", *QUIET, "trainer.max_epochs=1"]) == 0  # five tasks, as the cases say
    partial = d / "partial"
    shutil.copytree(earlier, partial)
    metrics = json.loads((partial / "metrics.json").read_text())
    (partial / "metrics.json").write_text(json.dumps({**metrics, "complete": False, "tasks_done": 2}))
    damaged = d / "damaged_state" / "checkpoints"
    shutil.copytree(earlier / "checkpoints", damaged)
    flip_middle(damaged / "state.pt")
    for name, content in (("empty_state", b""), ("keyless_state", None), ("old_state", 4)):
        (d / name / "checkpoints").mkdir(parents=True)
        if not isinstance(content, bytes):
            content_path = d / name / "checkpoints" / "state.pt"
            content_path.write_bytes(run_state.checkpoint_bytes({"format": FORMAT if content is None else content, "config": {}}))
        else:
            (d / name / "checkpoints" / "state.pt").write_bytes(content)
    sys.path.insert(0, str(d))
    yield d
    sys.path.remove(str(d))


# (id, arguments with {d} = the inputs folder, text the one error line must contain)
CASES = [
    # 4. silent wrong results
    ("custom_nan_inputs", "fit data.stream=custom data.custom=hardening_streams:nan_inputs", "x_train holds NaN or inf"),
    ("custom_inf_inputs", "fit data.stream=custom data.custom=hardening_streams:inf_inputs", "x_test holds NaN or inf"),
    ("lr_inf", "fit optim.lr=inf", "optim.lr=inf must be a positive finite number"),
    ("max_epochs_0", "fit trainer.max_epochs=0", "set trainer.max_epochs to a positive integer"),
    ("limit_train_batches_0", "fit trainer.limit_train_batches=0", "trainer.limit_train_batches=0 trains nothing (no batch of any task)"),
    ("limit_train_batches_0.0", "fit trainer.limit_train_batches=0.0", "trainer.limit_train_batches=0.0 trains nothing (no batch of any task)"),
    ("limit_train_batches_below_a_batch", "fit trainer.limit_train_batches=0.001", "trainer.limit_train_batches=0.001 keeps no batch of task 1 (9 batches"),
    ("max_time_0", "fit trainer.max_time=00:00:00:00", "trainer.max_time='00:00:00:00' trains nothing (every task stops before its first step)"),
    ("val_fraction_0.999", "fit data.val_fraction=0.999", "no training samples; lower data.val_fraction"),
    ("learned_h_0", "fit method=router router.attention=learned router.h=0", "router.h=0 must be a positive integer"),
    ("classes_per_task_3", "fit data.classes_per_task=3", "leaves class(es) [9] of split_digits out of every task; use data.classes_per_task in [1, 2, 5]"),
    ("classes_per_task_list_class_order_short", "fit data.classes_per_task=[4,6] data.class_order=[0,1,2]",
     "data.classes_per_task=[4, 6] needs 10 classes but data.class_order=[0, 1, 2] lists 3; make the counts sum to at most 3"),
    ("class_order_9", "fit data.class_order=[0,1,2,3,4,5,6,7,8] data.classes_per_task=3", "list all 10 classes in data.class_order"),
    ("mnist_labels_ge_10", "fit data.stream=split_mnist data.root={d}/labels12", "labels [12] outside 0..9"),
    ("custom_negative_labels", "fit data.stream=custom data.custom=hardening_streams:negative_labels", "negative labels [-1]"),
    ("custom_extra_x_rows", "fit data.stream=custom data.custom=hardening_streams:extra_rows", "x_train has 201 rows but y_train has (200,) labels"),
    # 5. tracebacks
    ("max_epochs_abc", "fit trainer.max_epochs=abc", "trainer.max_epochs='abc' is not valid; give an integer or null"),
    ("max_epochs_-2", "fit trainer.max_epochs=-2", "set trainer.max_epochs to a positive integer"),
    ("limit_train_batches_-1", "fit trainer.limit_train_batches=-1", "trainer.limit_train_batches=-1 is not valid; give a fraction in (0, 1]"),
    ("limit_train_batches_1.5", "fit trainer.limit_train_batches=1.5", "trainer.limit_train_batches=1.5 is not valid; give a fraction in (0, 1]"),
    ("max_time_bad", "fit trainer.max_time=1h", "trainer.max_time='1h' is not valid; give a duration as DD:HH:MM:SS"),
    ("seed_-1", "fit seed=-1", "seed=-1 must be in 0..4294967295"),
    ("seed_2^40", "fit seed=1099511627776", "seed=1099511627776 must be in 0..4294967295"),
    ("seed_2^40_text", "fit seed=2^40", "bad value for 'seed'"),
    ("binary_yaml", "fit --config {d}/binary.yaml", "is not a text (YAML) file"),
    ("lr_nan", "fit optim.lr=nan", "optim.lr=nan must be a positive finite number"),
    ("lr_-1", "fit optim.lr=-1", "optim.lr=-1.0 must be a positive finite number"),
    ("betas_2_3", "fit optim.betas=[2,3]", "optim.betas=[2.0, 3.0] must be two numbers in [0, 1)"),
    ("weight_decay_-1", "fit optim.weight_decay=-1", "optim.weight_decay=-1.0 must be a finite number >= 0"),
    ("classes_per_task_11", "fit data.classes_per_task=11", "set data.classes_per_task<=10"),
    ("test_fraction_0.001", "fit data.test_fraction=0.001", "no test samples to evaluate; raise data.test_fraction"),
    ("router_memories_0", "fit method=router router.memories=0", "router.memories=0 must be a positive integer"),
    ("learned_heads_-1", "fit method=router router.attention=learned router.heads=-1", "router.heads=-1 must be a positive integer"),
    ("custom_label_99", "fit data.stream=custom data.custom=hardening_streams:label_99", "labels go up to 99 but classes [10, 11, 12, 13, 14]"),
    ("custom_empty_task", "fit data.stream=custom data.custom=hardening_streams:empty_task", "classes [2, 3] have no training samples"),
    ("custom_empty_test", "fit data.stream=custom data.custom=hardening_streams:empty_test", "the test split is empty"),
    ("custom_task_without_test", "fit data.stream=custom data.custom=hardening_streams:no_test_for_a_task", "task 1 (classes [0, 1]) of mine has no test samples"),
    ("custom_feature_mismatch", "fit data.stream=custom data.custom=hardening_streams:feature_mismatch", "8 features per sample but x_test 9"),
    ("custom_syntax_error", "fit data.stream=custom data.custom=broken_streams:f", "importing 'broken_streams' failed (SyntaxError at line 1"),
    ("compare_bad_yaml", "compare --config {d}/compare_bad_yaml.yaml", "is not valid YAML"),
    ("compare_seeds_zero", "compare --config {d}/compare_seeds.yaml", "seeds of integers >= 0"),
    ("compare_reference_3", "compare --config {d}/compare_reference.yaml", "'reference' in compare config"),
    ("sweep_metric_string", "sweep {d}/sweep_metric.yaml", "metric must be a mapping such as {{name: final/acc"),
    ("empty_state_pt", "fit resume={d}/empty_state", "it is empty (a write was cut off)"),
    ("state_pt_missing_keys", "fit resume={d}/keyless_state", "lacks rng, complete, module"),
    ("state_pt_damaged", "fit resume={d}/damaged_state", "checkpoints/state.pt' is damaged (its bytes no longer match its checksum: a disk or copy error); restore it from a backup, or start a new run without resume="),
    ("state_pt_older_format", "fit resume={d}/old_state", f"was written by an older continual (run state format 4, this version reads {FORMAT})"),
    # 6. messages
    ("short_labels_file", "fit data.stream=split_mnist data.root={d}/short_labels", "train-labels-idx1-ubyte' holds 19 labels for 20 images"),
    ("data_3", "fit --config {d}/data3.yaml", "'data' in '{d}/data3.yaml' is 3, but it is a section of keys; set its keys instead"),
    ("lr_suggests_optim_lr", "fit lr=0.1", "did you mean 'optim.lr'?"),
    ("mnist_gz_only", "fit data.stream=split_mnist data.root={d}/gz_only", "only there compressed (train-images-idx3-ubyte.gz); unpack the files with: gunzip -k"),
    ("partial_output_dir", "fit output_dir={d}/partial", "holds a partial run (2 of 5 tasks done); continue it with resume={d}/partial"),
]


@pytest.mark.parametrize("args, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(inputs, capsys, args, expected):
    earlier = inputs / "earlier"
    before = {p: snapshot(inputs / p) for p in ("earlier", "partial")}
    argv = args.format(d=inputs).split()
    if argv[0] == "fit" and "output_dir=" not in args and "resume=" not in args:
        argv += [f"output_dir={earlier}", "overwrite=true"]  # even overwrite=true: refused before anything is written
    if argv[0] == "fit":  # each case is checked against the default data and training settings
        argv += QUIET
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("continual: error: ") and "Traceback" not in err, err
    assert expected.format(d=inputs) in err
    assert {p: snapshot(inputs / p) for p in ("earlier", "partial")} == before


def test_result_files_are_readable_by_others(inputs):
    modes = {p.name: p.stat().st_mode & 0o777 for p in (inputs / "earlier").rglob("*") if p.is_file()}
    umask = os.umask(0)
    os.umask(umask)
    assert set(modes.values()) == {0o666 & ~umask}, modes


def test_non_finite_loss_stops_the_run_naming_task_and_step(tmp_path, capsys):
    code = main(["fit", f"output_dir={tmp_path / 'run'}", "optim.name=sgd", "optim.lr=1e30", *QUICK])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("continual: error: the training loss became NaN or inf in task 1 at step ")
    assert not (tmp_path / "run" / "metrics.json").exists()  # no result of a diverged run


def test_loss_guard_names_the_first_non_finite_step_and_checks_on_logging_steps():
    """Losses are checked together on the logger's steps and at the task's end; the error names
    the first bad step, not the step that found it."""
    from types import SimpleNamespace

    from continual.callbacks import FiniteLossGuard
    from continual.errors import TrainingError

    guard, module = FiniteLossGuard(task=2), SimpleNamespace(optim_cfg=SimpleNamespace(lr=0.5))
    for step, loss in enumerate([1.0, 2.0, 3.0, math.inf, math.nan], 1):
        trainer = SimpleNamespace(global_step=step, log_every_n_steps=3, should_stop=False)
        guard.on_train_batch_end(trainer, module, {"loss": torch.tensor(loss)}, None, step - 1)
    assert [s for s, _ in guard.pending] == [4, 5]  # steps 1-3 were checked on the logging step
    with pytest.raises(TrainingError, match=r"in task 3 at step 4; lower optim.lr \(now 0.5\)"):
        guard.on_train_end(trainer, module)


# -- faults, with the real CLI in subprocesses --------------------------------------------------

SLOW = [*QUICK, "trainer.max_epochs=40", "checkpoint_every_n_steps=3"]


def cli(*args):
    return [sys.executable, "-m", "continual.cli.main", *args]


def env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "WANDB_MODE": "offline"}


def wait_for(condition, proc, what: str, timeout: float = 120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            pytest.fail(f"the run ended (rc={proc.returncode}) before {what}: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


def mid_task(run: Path, task: int):
    """True once last.ckpt is task `task`'s (0-based) mid-task checkpoint."""
    def check():
        try:
            return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["continual"]["task"] == task
        except Exception:
            return False
    return check


TORN = [*QUICK, "trainer.max_epochs=2", "checkpoint_every_n_steps=3"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    full = tmp_path_factory.mktemp("full") / "run"
    assert main(["fit", f"output_dir={full}", *TORN]) == 0
    return comparable(full)


def test_torn_checkpoint_is_skipped_and_the_task_restarts_from_state(tmp_path, uninterrupted):
    killed = tmp_path / "killed"
    proc = subprocess.Popen(cli("fit", f"output_dir={killed}", *TORN), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for(mid_task(killed, 2), proc, "a mid-task checkpoint of task 3")
    proc.kill()
    proc.wait()
    # empty, and cut off half-way, as a cross-device move killed mid-copy leaves it; and 16 bytes
    # flipped (a disk or copy error), which its checksum finds
    for name, why in (("0", "torn or unreadable"), ("0.5", "torn or unreadable"), ("flipped", "damaged \\(its checksum does not match\\)")):
        run = tmp_path / f"kept_{name}"
        shutil.copytree(killed, run)
        ckpt = run / "checkpoints" / "last.ckpt"
        if name == "flipped":
            flip_middle(ckpt)
        else:
            ckpt.write_bytes(ckpt.read_bytes()[: int(ckpt.stat().st_size * float(name))])
        with pytest.warns(UserWarning, match=f"is {why}; ignoring it: task 3 restarts from state.pt"):
            assert main(["fit", f"resume={run}", *TORN]) == 0
        assert comparable(run) == uninterrupted


def test_resume_of_a_finished_run_rebuilds_a_torn_or_lost_metrics_json(inputs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(inputs / "earlier", run)
    metrics = run / "metrics.json"
    whole = metrics.read_bytes()
    again = ["fit", f"resume={run}", *QUIET, "trainer.max_epochs=1"]
    for damage, why, lost in ((lambda: metrics.write_bytes(whole[: len(whole) // 2]), "torn or unreadable", "damaged"),
                              (metrics.unlink, "missing", "missing")):
        damage()
        assert main(["fit", f"output_dir={run}", *QUIET, "trainer.max_epochs=1"]) == 2
        assert capsys.readouterr().err.strip() == (  # what a plain fit says to do: it works
            f"continual: error: output_dir '{run}' holds a finished run whose metrics.json is {lost} (resume= rebuilds it from "
            f"the run's saved state); continue it with resume={run}, or pass overwrite=true to start over")
        with pytest.warns(UserWarning, match=f"metrics.json of '{run}' was {why}; rebuilt it from {run}/checkpoints/state.pt"):
            assert main(again) == 0
        assert metrics.read_bytes() == whole
    # a state written before it held the results: one line saying what to do
    path = run / "checkpoints" / "state.pt"
    path.write_bytes(run_state.checkpoint_bytes({k: v for k, v in run_state.load_checkpoint(path).items() if k != "metrics_json"}))
    metrics.unlink()
    capsys.readouterr()
    assert main(again) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"continual: error: run '{run}' is complete but its metrics.json is missing, and its state.pt does not hold the results "
        "(written by an older continual); run it again with the same command plus overwrite=true instead of resume="
    ]


def test_concurrent_run_into_one_directory_refuses_and_a_dead_lock_is_taken_over(tmp_path, capsys):
    run = tmp_path / "run"
    first = subprocess.Popen(cli("fit", f"output_dir={run}", *SLOW), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for(lambda: (run / "checkpoints" / "state.pt").is_file(), first, "the first run's state.pt")
    config = (run / "config.yaml").read_text()
    code = main(["fit", f"output_dir={run}", "overwrite=true", "seed=5", *QUICK])  # would clear the first run's files
    kept = (run / "config.yaml").read_text() == config and (run / "checkpoints" / "state.pt").is_file()
    first.kill()
    first.wait()
    assert code == 2 and kept
    assert capsys.readouterr().err.strip().splitlines() == [
        f"continual: error: output_dir '{run}' is in use by another continual run (pid {first.pid} on {os.uname().nodename}); "
        "wait for it to end or choose another output_dir"
    ]
    # the killed run's lock file is still there, naming a dead process: the next run takes it over
    assert (run / ".continual.lock").read_text().startswith(f"pid {first.pid}")
    assert main(["fit", f"output_dir={run}", "overwrite=true", *QUICK, "data.n_tasks=1"]) == 0


def test_overwrite_killed_early_leaves_no_stale_result(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["fit", f"output_dir={run}", *QUICK]) == 0
    assert json.loads((run / "metrics.json").read_text())["complete"]
    old_config = (run / "config.yaml").read_text()
    proc = subprocess.Popen(cli("fit", f"output_dir={run}", "overwrite=true", "seed=7", *SLOW), env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    def new_config() -> bool:  # overwrite=true removes the old one before it writes the new one
        try:
            return (run / "config.yaml").read_text() != old_config
        except FileNotFoundError:
            return False

    wait_for(new_config, proc, "the new config.yaml")
    proc.kill()
    proc.wait()
    assert not (run / "metrics.json").exists() and not list(run.glob("*.png")) and not (run / "metrics.csv").exists()
    assert main(["fit", f"output_dir={run}", *QUICK]) == 2
    assert f"continue it with resume={run}" in capsys.readouterr().err


def test_ctrl_c_says_how_to_resume_and_exits_130(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen(cli("fit", f"output_dir={run}", *SLOW), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for(mid_task(run, 0), proc, "a mid-task checkpoint")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130, proc.stderr.read().decode()
    assert proc.stderr.read().decode().strip().splitlines()[-1] == (
        f"continual: error: interrupted by Ctrl-C; continue with the same command plus resume={run}"
    )


def test_a_failed_sweep_trial_fails_the_sweep(tmp_path, capsys):
    spec = tmp_path / "sweep.yaml"
    spec.write_text(
        "method: grid\nmetric: {name: final/acc, goal: maximize}\n"
        "parameters: {data.custom: {values: ['no_such_module:f']}}\n"
        "command: [continual, fit, data.stream=custom, logger.kind=none, '${args_no_hyphens}']\n"
    )
    assert main(["sweep", str(spec), "--dir", str(tmp_path / "sw")]) == 1
    assert "failed (exit 2" in capsys.readouterr().out


@pytest.fixture
def small_fs(tmp_path):
    """A 64 KiB tmpfs (a full disk after a few files), where the test may mount one."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_full_disk_is_one_line_and_leaves_no_torn_file(small_fs, capsys):
    run = small_fs / "run"
    code = main(["fit", f"output_dir={run}", *QUICK])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("continual: error: cannot write '") and "No space left on device" in err[-1]
    assert not [p for p in run.rglob(".*") if p.name != ".continual.lock"]  # no temporary file left behind
    for f in run.rglob("*"):
        if f.suffix == ".pt":
            torch.load(f, weights_only=True)  # whatever is there is whole


def test_a_grid_cells_error_log_on_a_full_disk_is_one_line(small_fs, tmp_path, capsys):
    spec = tmp_path / "grid.yaml"
    spec.write_text("methods: [finetune]\nscenarios: [task]\nseeds: [0]\n")
    (small_fs / "grid").mkdir()
    with open(small_fs / "filler", "wb", buffering=0) as filler:  # the disk is full before the cell starts
        with pytest.raises(OSError):
            while True:
                filler.write(bytes(4096))
                filler.flush()
    code = main(["compare", "--config", str(spec), "--out", str(small_fs / "grid"), *QUICK])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "Traceback" not in err[0], err
    assert err[0].startswith("continual: error: cannot write '") and ".log' (No space left on device)" in err[0], err


def test_a_full_cache_disk_names_data_cache_dir_not_output_dir(small_fs, tmp_path, capsys):
    """The features of Split-Digits (1.8 MB) on a 64 KiB disk: the way out is another cache folder."""
    code = main(["features", "backbone.name=conv", f"data.cache_dir={small_fs}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith(f"continual: error: cannot write '{small_fs / 'features'}/") and "No space left on device" in err[-1]
    assert "(or choose another data.cache_dir)" in err[-1] and "output_dir" not in err[-1]


def test_read_only_run_directory_is_one_line(small_fs, capsys):
    (small_fs / "run").mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    assert main(["fit", f"output_dir={small_fs / 'run'}", *QUICK]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"continual: error: cannot write into output_dir '{small_fs / 'run'}' (Read-only file system); make it writable or choose another output_dir"


def test_sigterm_message_names_a_checkpoint_that_exists(tmp_path):
    """Stopped during a task whose last.ckpt was not written (at an epoch's end, or a method that
    trains in its hooks), the message points at state.pt, where that task restarts from."""
    from continual.build import method_schema
    from continual.config import load_config
    from continual.rundir.folder import RunDirectory

    cfg = load_config(None, [f"output_dir={tmp_path / 'run'}"])
    run = RunDirectory(cfg, writer=True, schema=method_schema(cfg))
    run.save_state(complete=False, module={}, callbacks={}, wall_time_s=0.0, wandb_id=None)
    assert f"task 2 restarts from {tmp_path / 'run' / 'checkpoints' / 'state.pt'}" in run.interrupted(1)
    (tmp_path / "run" / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert f"its checkpoint is {tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}" in run.interrupted(1)
