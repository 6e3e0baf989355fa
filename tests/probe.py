"""Re-runnable robustness probe (issue #26): every bad input and scripted fault, each in a fresh
temp folder through the real CLI (`python -m continual.cli.main`), classified clean / not clean.

    python tests/probe.py [--only PATTERN] [--jobs N] [--list]

Not a pytest file (no test_ prefix): it is a survey, not a gate. The failing cases it finds
become tests in the test file of their part. Cases of a feature not on this branch (a key, a
method, a stream, a CLI flag) are skipped and listed as such, so one probe runs on every branch.

Outcomes: `error` = exit 2, exactly one `continual: error: ...` line on stderr, no traceback, no
run folder left behind and no earlier run changed; `ok` = exit 0 with its result; `fault` = a
scripted fault (kill -9, a damaged file, a read-only or full disk, two runs into one folder, a
signal) followed by its documented recovery (e.g. `resume=` equals the uninterrupted metrics).
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
sys.path[:0] = [str(ROOT), str(TESTS)]

import test_hardening as hardening  # noqa: E402  (the earlier probe's cases: one list of each idea)
from helpers import QUICK, QUIET, comparable  # noqa: E402

MNIST = os.environ.get("CONTINUAL_DATA", "/work/shared/data")
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS), os.environ.get("PYTHONPATH", "")]),
       "WANDB_MODE": "offline"}
EARLIER = threading.Lock()  # the hardening table's cases share one earlier run
RESUME = [*QUICK, "trainer.max_epochs=2", "checkpoint_every_n_steps=3"]


@dataclass
class Case:
    id: str
    category: str
    expect: str  # error | ok | fault
    args: str = ""  # for error/ok: the CLI arguments ({d}: the shared inputs folder, {t}: this case's folder)
    contains: str = ""  # error: text the one line must contain
    needs: tuple[str, ...] = ()  # keys (a.b), methods (method:x), streams (stream:x), flags (compare:--workers)
    run: Callable[[Path, Path], str | None] | None = None  # fault: (inputs, folder) -> None if clean, else why
    quick: bool = True  # add QUICK to a fit
    earlier: bool = False  # the hardening table's form: into the finished earlier run, overwrite=true


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "continual.cli.main", *args]


def call(args: list[str], timeout: float = 600, path: Path | None = None) -> subprocess.CompletedProcess:
    """The CLI in a subprocess; `path`: a folder of the user's own modules (data.custom)."""
    env = ENV if path is None else {**ENV, "PYTHONPATH": f"{path}{os.pathsep}{ENV['PYTHONPATH']}"}
    return subprocess.run(cli(*args), env=env, capture_output=True, text=True, timeout=timeout)


# -- what this branch has -------------------------------------------------------------------------

def features() -> set[str]:
    """Keys, methods, streams and grid flags present, from the CLI itself (so the probe needs no
    knowledge of any branch)."""
    have = set()
    out = call(["config", "keys"]).stdout
    for line in out.splitlines():
        if line.split():
            have.add(line.split()[0])
        if line.startswith("data.stream "):
            have |= {f"stream:{s.strip(', ')}" for s in re.search(r"one of: ([^)]*)", line).group(1).split(", ")}
    from continual.methods import builtin
    have |= {f"method:{m}" for m in builtin()}
    for cmd in ("compare", "sweep"):
        have |= {f"{cmd}:{flag}" for flag in re.findall(r"(--[a-z_-]+)", call([cmd, "--help"]).stdout)}
    return have


# -- classification -------------------------------------------------------------------------------

def check_error(proc, contains: str) -> str | None:
    err = proc.stderr.strip()
    lines = err.splitlines()
    if proc.returncode != 2:
        return f"exit {proc.returncode} (not 2): {(lines or ['<no stderr>'])[-1][:200]}"
    if "Traceback" in err:
        return f"traceback: {lines[-1][:200]}"
    if len(lines) != 1:
        return f"{len(lines)} stderr lines, first: {lines[0][:160]!r}"
    if not lines[0].startswith("continual: error: "):
        return f"not a continual: error line: {lines[0][:200]}"
    if contains and contains not in lines[0]:
        return f"message lacks {contains!r}: {lines[0][:200]}"
    return None


def run_plain(case: Case, d: Path, t: Path) -> str | None:
    argv = case.args.format(d=d, t=t).split()
    if case.earlier:  # as tests/test_hardening.py runs its table
        if argv[0] == "fit" and "output_dir=" not in case.args and "resume=" not in case.args:
            argv += [f"output_dir={d / 'earlier'}", "overwrite=true"]
        if argv[0] == "fit":
            argv += QUIET
    elif argv[0] == "fit":
        if "output_dir=" not in case.args and "resume=" not in case.args:
            argv.append(f"output_dir={t / 'run'}")
        if "data.root=" not in case.args:
            argv.append(f"data.root={MNIST}")
        if "data.cache_dir=" not in case.args:  # caches (base backbones, features, MNIST-1D) never go into the shared data
            argv.append(f"data.cache_dir={t / 'cache'}")
        if case.quick:
            argv = argv[:1] + QUICK + argv[1:]
    elif argv[0] == "compare" and "--out" not in case.args:
        argv += ["--out", str(t / "grid"), *QUICK]
    with EARLIER if case.earlier else contextlib.nullcontext():  # one at a time: each compares the earlier run's files
        before = {p: hardening.snapshot(d / p) for p in ("earlier", "partial")} if case.earlier else None
        proc = call(argv, path=d)
        changed = case.earlier and {p: hardening.snapshot(d / p) for p in ("earlier", "partial")} != before
    if case.expect == "ok":
        if proc.returncode != 0:
            return f"exit {proc.returncode}: {(proc.stderr.strip().splitlines() or ['<no stderr>'])[-1][:200]}"
        return None
    why = check_error(proc, case.contains.format(d=d, t=t))
    if why:
        return why
    if changed:
        return "changed a file of the earlier run"
    if not case.earlier and (t / "run").exists() and any((t / "run").iterdir()):
        return f"left files in the refused run folder: {sorted(p.name for p in (t / 'run').iterdir())}"
    return None


# -- the cases ------------------------------------------------------------------------------------

def earlier_cases() -> list[Case]:
    """tests/test_hardening.py's table, as that test runs it (one list of each idea)."""
    return [Case(cid, "earlier:bad_input", "error", args, contains, earlier=True) for cid, args, contains in hardening.CASES]


def new_bad_inputs() -> list[Case]:
    """Bad values of what landed since the earlier probe: every case is exit 2 with one line."""
    E = []

    def bad(cid, args, contains="", needs=(), cat="new:bad_input"):
        E.append(Case(cid, cat, "error", args, contains, tuple(needs)))

    cpt, base = ("data.classes_per_task",), ("data.base_classes",)
    # unequal lists that do not fit the stream
    bad("cpt_list_sum_short", "fit data.classes_per_task=[2,3]", "data.classes_per_task", cpt, "new:unequal")
    bad("cpt_list_sum_long", "fit data.classes_per_task=[2,2,2,2,2,2]", "data.classes_per_task", cpt, "new:unequal")
    bad("cpt_list_zero", "fit data.classes_per_task=[0,5,5]", "data.classes_per_task", cpt, "new:unequal")
    bad("cpt_list_negative", "fit data.classes_per_task=[-1,11]", "data.classes_per_task", cpt, "new:unequal")
    bad("cpt_list_empty", "fit data.classes_per_task=[]", "data.classes_per_task", cpt, "new:unequal")
    bad("cpt_list_text", "fit data.classes_per_task=[a,b]", "data.classes_per_task", cpt, "new:unequal")
    bad("cpt_list_floats", "fit data.classes_per_task=[2.5,7.5]", "data.classes_per_task", cpt, "new:unequal")
    bad("cpt_list_nested", "fit data.classes_per_task=[[5],[5]]", "data.classes_per_task", cpt, "new:unequal")
    bad("cpt_text", "fit data.classes_per_task=two", "data.classes_per_task", cpt, "new:unequal")
    bad("cpt_bool", "fit data.classes_per_task=true", "data.classes_per_task", cpt, "new:unequal")
    bad("cpt_list_vs_n_tasks", "fit data.classes_per_task=[5,5] data.n_tasks=3", "", cpt, "new:unequal")
    bad("cpt_list_permuted", "fit data.stream=permuted_mnist data.classes_per_task=[5,5] data.n_tasks=2 trainer.limit_train_batches=0.01", "data.classes_per_task", cpt, "new:unequal")
    bad("cpt_list_domain", "fit scenario=domain data.classes_per_task=[4,6]", "", cpt, "new:unequal")
    bad("cpt_list_class_order_short", "fit data.classes_per_task=[4,6] data.n_tasks=null data.class_order=[0,1,2]", "data.class_order", cpt, "new:unequal")
    bad("cpt_list_router_nv_small", "fit method=router router.n_v=2 data.classes_per_task=[4,6] data.n_tasks=null", "router.n_v", cpt, "new:unequal")
    # base_classes edge cases
    bad("base_0", "fit data.base_classes=0", "data.base_classes", base, "new:base_classes")
    bad("base_negative", "fit data.base_classes=-1", "data.base_classes", base, "new:base_classes")
    bad("base_all", "fit data.base_classes=10", "data.base_classes", base, "new:base_classes")
    bad("base_too_many", "fit data.base_classes=11", "data.base_classes", base, "new:base_classes")
    bad("base_text", "fit data.base_classes=abc", "data.base_classes", base, "new:base_classes")
    bad("base_float", "fit data.base_classes=2.5", "data.base_classes", base, "new:base_classes")
    bad("base_list", "fit data.base_classes=[2,3]", "data.base_classes", base, "new:base_classes")
    bad("base_permuted", "fit data.stream=permuted_mnist data.base_classes=4", "data.base_classes", base, "new:base_classes")
    bad("base_rest_not_divisible", "fit data.base_classes=4 data.classes_per_task=4", "", base, "new:base_classes")
    bad("base_list_too_long", "fit data.base_classes=5 data.classes_per_task=[2,2,2]", "", base, "new:base_classes")
    bad("base_pretrain_epochs_0", "fit data.base_classes=4 backbone.pretrain.epochs=0", "backbone.pretrain.epochs", base, "new:base_classes")
    bad("base_pretrain_lr_nan", "fit data.base_classes=4 backbone.pretrain.lr=nan", "backbone.pretrain.lr", base, "new:base_classes")
    # split_mnist1d
    s1d = ("stream:split_mnist1d",)
    bad("mnist1d_cpt_3", "fit data.stream=split_mnist1d data.classes_per_task=3 data.n_tasks=null data.root={t}/data", "data.classes_per_task", s1d, "new:mnist1d")
    bad("mnist1d_cpt_11", "fit data.stream=split_mnist1d data.classes_per_task=11 data.root={t}/data", "data.classes_per_task", s1d, "new:mnist1d")
    bad("mnist1d_typo", "fit data.stream=split_mnst1d", "did you mean 'split_mnist1d'", s1d, "new:mnist1d")
    # fecam
    fe = ("method:fecam",)
    bad("fecam_beta_0", "fit method=fecam fecam.beta=0", "fecam.beta", fe, "new:fecam")
    bad("fecam_beta_1.5", "fit method=fecam fecam.beta=1.5", "fecam.beta", fe, "new:fecam")
    bad("fecam_beta_text", "fit method=fecam fecam.beta=abc", "fecam.beta", fe, "new:fecam")
    bad("fecam_gamma1_-1", "fit method=fecam fecam.gamma1=-1", "fecam.gamma1", fe, "new:fecam")
    bad("fecam_gamma2_nan", "fit method=fecam fecam.gamma2=nan", "fecam.gamma2", fe, "new:fecam")
    bad("fecam_gamma2_inf", "fit method=fecam fecam.gamma2=inf", "fecam.gamma2", fe, "new:fecam")
    bad("fecam_features_typo", "fit method=fecam fecam.features=hiden", "fecam.features", fe, "new:fecam")
    bad("fecam_key_typo", "fit method=fecam fecam.gama1=1", "did you mean 'gamma1'", fe, "new:fecam")
    bad("fecam_method_typo", "fit method=fecamm", "did you mean 'fecam'", fe, "new:fecam")
    # ranpac
    ra = ("method:ranpac",)
    bad("ranpac_m_0", "fit method=ranpac ranpac.m=0", "ranpac.m", ra, "new:ranpac")
    bad("ranpac_m_negative", "fit method=ranpac ranpac.m=-5", "ranpac.m", ra, "new:ranpac")
    bad("ranpac_m_float", "fit method=ranpac ranpac.m=2.5", "ranpac.m", ra, "new:ranpac")
    bad("ranpac_ridge_0", "fit method=ranpac ranpac.ridge=0", "ranpac.ridge", ra, "new:ranpac")
    bad("ranpac_ridge_inf", "fit method=ranpac ranpac.ridge=inf", "ranpac.ridge", ra, "new:ranpac")
    bad("ranpac_ridge_empty", "fit method=ranpac ranpac.ridge=[]", "ranpac.ridge", ra, "new:ranpac")
    bad("ranpac_ridge_negative_in_list", "fit method=ranpac ranpac.ridge=[1,-1]", "ranpac.ridge", ra, "new:ranpac")
    bad("ranpac_ridge_text", "fit method=ranpac ranpac.ridge=abc", "ranpac.ridge", ra, "new:ranpac")
    bad("ranpac_ridge_text_in_list", "fit method=ranpac ranpac.ridge=[1,abc]", "ranpac.ridge", ra, "new:ranpac")
    bad("ranpac_ridge_nested", "fit method=ranpac ranpac.ridge=[[1]]", "ranpac.ridge", ra, "new:ranpac")
    bad("ranpac_features_typo", "fit method=ranpac ranpac.features=inputs", "ranpac.features", ra, "new:ranpac")
    # the replay family and its float budgets
    for m in ("der", "derpp", "agem", "er"):
        rm = (f"method:{m}", f"{m}.buffer_floats")
        bad(f"{m}_buffer_floats_0", f"fit method={m} {m}.buffer_floats=0", f"{m}.buffer_floats", rm, "new:replay")
        bad(f"{m}_buffer_floats_negative", f"fit method={m} {m}.buffer_floats=-3", f"{m}.buffer_floats", rm, "new:replay")
        bad(f"{m}_buffer_floats_nan", f"fit method={m} {m}.buffer_floats=nan", f"{m}.buffer_floats", rm, "new:replay")
        bad(f"{m}_buffer_floats_inf", f"fit method={m} {m}.buffer_floats=inf", f"{m}.buffer_floats", rm, "new:replay")
        bad(f"{m}_buffer_floats_below_one_sample", f"fit method={m} {m}.buffer_floats=10", f"{m}.buffer_floats", rm, "new:replay")
        bad(f"{m}_buffer_floats_text", f"fit method={m} {m}.buffer_floats=lots", f"{m}.buffer_floats", rm, "new:replay")
        bad(f"{m}_buffer_size_0", f"fit method={m} {m}.buffer_size=0", f"{m}.buffer_size", (f"method:{m}",), "new:replay")
    bad("der_alpha_-1", "fit method=der der.alpha=-1", "der.alpha", ("method:der",), "new:replay")
    bad("der_alpha_nan", "fit method=der der.alpha=nan", "der.alpha", ("method:der",), "new:replay")
    bad("der_batch_size_0", "fit method=der der.batch_size=0", "der.batch_size", ("method:der",), "new:replay")
    bad("derpp_beta_-0.5", "fit method=derpp derpp.beta=-0.5", "derpp.beta", ("method:derpp",), "new:replay")
    bad("agem_ref_batch_size_0", "fit method=agem agem.ref_batch_size=0", "agem.ref_batch_size", ("method:agem",), "new:replay")
    bad("agem_buffer_floats_list", "fit method=agem agem.buffer_floats=[1,2]", "agem.buffer_floats", ("agem.buffer_floats",), "new:replay")
    bad("der_key_typo", "fit method=der der.buffer_float=100", "did you mean 'buffer_floats'", ("der.buffer_floats",), "new:replay")
    bad("der_method_typo", "fit method=dre", "did you mean 'der'", ("method:der",), "new:replay")
    bad("agem_key_with_other_method", "fit method=finetune agem.buffer_size=5", "agem.buffer_size", ("method:agem",), "new:replay")
    # features landing in parallel: skipped until their key, method or flag is present
    par = "new:parallel"
    bad("backbone_typo", "fit backbone.name=resnt18", "did you mean 'resnet18'", ("backbone.weights",), par)
    bad("backbone_weights_unknown", "fit backbone.name=resnet18 backbone.weights=imagenet_v9", "backbone.weights", ("backbone.weights",), par)
    bad("backbone_weights_on_mlp", "fit backbone.weights=imagenet", "backbone.weights", ("backbone.weights",), par)
    bad("conv1d_on_images", "fit backbone.name=conv1d", "", ("backbone.weights",), par)
    bad("data_features_bad", "fit data.features=nonsense_cache", "data.features", ("data.features",), par)
    bad("scheduler_typo", "fit optim.scheduler=cosin", "did you mean", ("optim.scheduler",), par)
    bad("icarl_buffer_0", "fit method=icarl icarl.buffer_size=0", "icarl.buffer_size", ("method:icarl", "icarl.buffer_size"), par)
    bad("icarl_domain", "fit method=icarl scenario=domain", "", ("method:icarl",), par)
    bad("gdumb_buffer_0", "fit method=gdumb gdumb.buffer_size=0", "gdumb.buffer_size", ("method:gdumb", "gdumb.buffer_size"), par)
    bad("gdumb_buffer_floats_1", "fit method=gdumb gdumb.buffer_floats=1", "gdumb.buffer_floats", ("gdumb.buffer_floats",), par)
    for flag in ("0", "-1", "abc"):
        E.append(Case(f"compare_workers_{flag}", par, "error", f"compare --config {{d}}/grid.yaml --workers {flag}", "workers",
                      ("compare:--workers",)))
    E.append(Case("sweep_workers_0", par, "error", "sweep {d}/sweep.yaml --dir {t}/sw --workers 0", "workers", ("sweep:--workers",)))
    E.append(Case("compare_budget_from_unknown", par, "error", "compare --config {d}/budget_from.yaml", "budget_from",
                  ("compare:--workers",)))
    return E


def ok_cases() -> list[Case]:
    """What the new features are documented to do, on QUICK's settings."""
    return [
        Case("cpt_list_ok", "new:unequal", "ok", "fit data.classes_per_task=[4,6] data.n_tasks=null", needs=("data.classes_per_task",)),
        Case("base_classes_ok", "new:base_classes", "ok", "fit data.base_classes=4 data.classes_per_task=3", needs=("data.base_classes",)),
        Case("mnist1d_ok", "new:mnist1d", "ok", "fit data.stream=split_mnist1d data.root={t}/data", needs=("stream:split_mnist1d",)),
        # a data.root it cannot cache into (here: a file) is documented to warn and generate the data each run
        Case("mnist1d_root_is_file", "new:mnist1d", "ok", "fit data.stream=split_mnist1d data.root=/etc/hostname", needs=("stream:split_mnist1d",)),
        Case("der_buffer_floats_ok", "new:replay", "ok", "fit method=der der.buffer_floats=20000", needs=("der.buffer_floats",)),
    ]


# -- faults ---------------------------------------------------------------------------------------

def wait(proc, condition, timeout=300) -> str | None:
    end = time.time() + timeout
    while time.time() < end:
        if condition():
            return None
        if proc.poll() is not None:
            return f"the run ended (rc={proc.returncode}) before the fault point"
        time.sleep(0.05)
    return "timed out waiting for the fault point"


def tasks_done(run: Path) -> int:
    try:
        return json.loads((run / "metrics.json").read_text()).get("tasks_done", 0)
    except (OSError, ValueError):
        return 0


def kill_resume(extra: list[str]) -> Callable[[Path, Path], str | None]:
    """kill -9 in task 2 (at a mid-task checkpoint, or for a method that trains in its hooks once
    task 1 is saved), then `resume=`: the metrics must equal the uninterrupted run's."""
    def run(d: Path, t: Path) -> str | None:
        args = [*RESUME, f"data.root={MNIST}", f"data.cache_dir={t / 'cache'}", *(e.format(t=t) for e in extra)]
        full = call(["fit", f"output_dir={t / 'full'}", *args])
        if full.returncode != 0:
            return f"uninterrupted run exit {full.returncode}: {full.stderr.strip().splitlines()[-1:]}"
        killed = t / "killed"
        proc = subprocess.Popen(cli("fit", f"output_dir={killed}", *args), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        mid = hardening.mid_task(killed, 1)
        why = wait(proc, lambda: mid() or tasks_done(killed) >= 2)
        proc.kill()
        proc.wait()
        if why:
            return why
        again = call(["fit", f"resume={killed}", *args])
        if again.returncode != 0:
            return f"resume exit {again.returncode}: {again.stderr.strip().splitlines()[-1:]}"
        if comparable(killed) != comparable(t / "full"):
            a, b = comparable(killed), comparable(t / "full")
            diff = [k for k in a if a.get(k) != b.get(k)]
            return f"resumed metrics differ from the uninterrupted run in {diff[:5]}"
        return None
    return run


def mnist1d_cache_damaged(d: Path, t: Path) -> str | None:
    """A torn, flipped or replaced cache file is rebuilt: the run's metrics equal the first run's."""
    args = ["data.stream=split_mnist1d", f"data.root={t / 'data'}", *QUICK]
    first = call(["fit", f"output_dir={t / 'first'}", *args])
    if first.returncode != 0:
        return f"first run exit {first.returncode}: {first.stderr.strip().splitlines()[-1:]}"
    cache = next((t / "data" / "mnist1d").glob("*.npz"))
    whole = cache.read_bytes()
    for name, damage in (("torn", lambda: cache.write_bytes(whole[: len(whole) // 2])),
                         ("flipped", lambda: hardening.flip_middle(cache)),
                         ("empty", lambda: cache.write_bytes(b"")),
                         ("pickle", lambda: cache.write_bytes(b"\x80\x04cos\nsystem\n(S'touch " + str(t / "pwned").encode() + b"'\ntR."))):
        cache.write_bytes(whole)
        damage()
        again = call(["fit", f"output_dir={t / name}", *args])
        if again.returncode != 0:
            return f"{name} cache: exit {again.returncode}: {again.stderr.strip().splitlines()[-1:]}"
        if (t / "pwned").exists():
            return f"{name} cache ran code"
        if comparable(t / name) != comparable(t / "first"):
            return f"{name} cache: metrics differ from the first run's"
    return None


def mnist1d_cache_unwritable(d: Path, t: Path) -> str | None:
    """data.root read-only (a tmpfs remounted ro): the run still works, generating the data."""
    mnt = t / "ro"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(mnt)], capture_output=True).returncode:
        return "SKIP: cannot mount a tmpfs here (needs root)"
    try:
        proc = call(["fit", f"output_dir={t / 'run'}", "data.stream=split_mnist1d", f"data.root={mnt}", *QUICK])
        if proc.returncode != 0:
            return f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"
        return None if (t / "run" / "metrics.json").is_file() else "no metrics.json"
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


def mnist_read_only_root(d: Path, t: Path) -> str | None:
    """MNIST under a read-only data.root (a read-only bind of the shared copy) trains as usual."""
    mnt = t / "ro"
    mnt.mkdir()
    if subprocess.run(["mount", "--bind", "-o", "ro", MNIST, str(mnt)], capture_output=True).returncode:
        return "SKIP: cannot bind-mount here (needs root)"
    try:
        proc = call(["fit", f"output_dir={t / 'run'}", "data.stream=split_mnist", f"data.root={mnt}", *QUICK,
                     "trainer.limit_train_batches=0.05"])
        return None if proc.returncode == 0 else f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


def two_runs_one_folder(d: Path, t: Path) -> str | None:
    """The second of two runs into one folder is refused in one line; the first finishes."""
    run = t / "run"
    args = [*QUICK, "trainer.max_epochs=20", f"data.root={MNIST}"]
    first = subprocess.Popen(cli("fit", f"output_dir={run}", *args), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    why = wait(first, lambda: (run / "checkpoints" / "state.pt").is_file())
    second = call(["fit", f"output_dir={run}", "overwrite=true", *args]) if not why else None
    first.kill()
    first.wait()
    return why or check_error(second, "is in use by another continual run")


def sigint_and_resume(d: Path, t: Path) -> str | None:
    """Ctrl-C mid-task: exit 130 with the resume= line; resume= then equals the uninterrupted run."""
    args = [*RESUME, f"data.root={MNIST}"]
    run = t / "run"
    proc = subprocess.Popen(cli("fit", f"output_dir={run}", *args), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    why = wait(proc, hardening.mid_task(run, 1))
    if why:
        proc.kill()
        return why
    proc.send_signal(signal.SIGINT)
    rc, err = proc.wait(timeout=120), proc.stderr.read().strip().splitlines()
    if rc != 130 or not err or f"resume={run}" not in err[-1]:
        return f"exit {rc}, last line {err[-1:]}"
    if call(["fit", f"resume={run}", *args]).returncode != 0:
        return "resume failed"
    full = call(["fit", f"output_dir={t / 'full'}", *args])
    return None if full.returncode == 0 and comparable(run) == comparable(t / "full") else "resumed metrics differ"


def full_disk(d: Path, t: Path) -> str | None:
    """A 64 KiB disk: one `cannot write` line, exit 2, no temp file left behind."""
    mnt = t / "fs"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True).returncode:
        return "SKIP: cannot mount a tmpfs here (needs root)"
    try:
        proc = call(["fit", f"output_dir={mnt / 'run'}", *QUICK, f"data.root={MNIST}", "method=der", "der.buffer_size=60"])
        lines = proc.stderr.strip().splitlines()
        if proc.returncode != 2 or not lines or not lines[-1].startswith("continual: error: cannot write '"):
            return f"exit {proc.returncode}, last line {lines[-1:]}"
        left = [p.name for p in (mnt / "run").rglob(".*") if p.name != ".continual.lock"]
        return f"temp files left: {left}" if left else None
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


def fault_cases() -> list[Case]:
    F = []
    new = ("der", "derpp", "agem", "fecam", "ranpac", "icarl", "gdumb")
    from cases import EXTRA  # the per-method small-run settings the registry tests use
    for m in new:
        F.append(Case(f"kill9_resume_{m}", "fault:kill_resume", "fault", needs=(f"method:{m}",),
                      run=kill_resume([f"method={m}", "scenario=class", *EXTRA.get(m, [])])))
    F.append(Case("kill9_resume_unequal", "fault:kill_resume", "fault", needs=("data.classes_per_task",),
                  run=kill_resume(["data.classes_per_task=[3,3,4]"])))
    F.append(Case("kill9_resume_base_classes", "fault:kill_resume", "fault", needs=("data.base_classes",),
                  run=kill_resume(["data.base_classes=4", "data.classes_per_task=3"])))
    F.append(Case("kill9_resume_mnist1d", "fault:kill_resume", "fault", needs=("stream:split_mnist1d",),
                  run=kill_resume(["data.stream=split_mnist1d", "data.root={t}/data"])))
    F.append(Case("mnist1d_cache_damaged", "fault:files", "fault", needs=("stream:split_mnist1d",), run=mnist1d_cache_damaged))
    F.append(Case("mnist1d_cache_read_only", "fault:disk", "fault", needs=("stream:split_mnist1d",), run=mnist1d_cache_unwritable))
    F.append(Case("mnist_read_only_root", "fault:disk", "fault", run=mnist_read_only_root))
    F.append(Case("full_disk_der", "fault:disk", "fault", needs=("method:der",), run=full_disk))
    F.append(Case("two_runs_one_folder", "fault:concurrent", "fault", run=two_runs_one_folder))
    F.append(Case("sigint_then_resume", "fault:signal", "fault", run=sigint_and_resume))
    return F


# -- running --------------------------------------------------------------------------------------

def make_inputs(folder: Path) -> Path:
    """The hardening table's input files (its fixture, run once), and the grid files of the new cases."""
    class Factory:
        def mktemp(self, name):
            p = folder / name
            p.mkdir(parents=True)
            return p

    gen = hardening.inputs.__wrapped__(Factory())
    d = next(gen)
    (d / "grid.yaml").write_text("methods: [finetune]\nscenarios: [task]\nseeds: [0]\n")
    (d / "budget_from.yaml").write_text("methods: [finetune, der]\nscenarios: [task]\nseeds: [0]\nbudget_from: nosuchmethod\n")
    (d / "sweep.yaml").write_text("method: grid\nmetric: {name: final/acc, goal: maximize}\nparameters: {seed: {values: [0]}}\n"
                                  "command: [continual, fit, logger.kind=none, '${args_no_hyphens}']\n")
    return d


def run_case(case: Case, d: Path, scratch: Path) -> tuple[Case, str | None, float]:
    t = Path(tempfile.mkdtemp(prefix=case.id + "_", dir=scratch))
    start = time.time()
    try:
        if case.run is None:
            why = run_plain(case, d, t)
        else:
            why = case.run(d, t)
    except Exception as err:  # the probe's own failure is a not-clean case, not a crash of the survey
        why = f"probe error: {type(err).__name__}: {err}"
    finally:
        shutil.rmtree(t, ignore_errors=True)
    return case, why, time.time() - start


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="*", help="run only the cases whose id or category matches one of these globs (comma-separated)")
    ap.add_argument("--jobs", type=int, default=2, help="cases run at once (default 2)")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    args = ap.parse_args(argv)
    have = features()
    cases = earlier_cases() + new_bad_inputs() + ok_cases() + fault_cases()
    globs = args.only.split(",")
    cases = [c for c in cases if any(fnmatch.fnmatch(c.id, g) or fnmatch.fnmatch(c.category, g) for g in globs)]
    present = [c for c in cases if all(n in have for n in c.needs)]
    skipped = [c for c in cases if c not in present]
    if args.list:
        for c in cases:
            print(f"{c.id:40} {c.category:22} {c.expect:6} {'SKIP' if c in skipped else ''} {c.args}")
        return 0
    start = time.time()
    results = []
    with tempfile.TemporaryDirectory(prefix="probe_") as tmp:
        d = make_inputs(Path(tmp) / "in") if any(c.earlier or "{d}" in c.args for c in present) else Path(tmp)
        scratch = Path(tmp) / "cases"
        scratch.mkdir()
        with ThreadPoolExecutor(args.jobs) as pool:
            for case, why, secs in pool.map(lambda c: run_case(c, d, scratch), present):
                if why and why.startswith("SKIP"):
                    skipped.append(case)
                    why = None
                    print(f"skip  {case.id} ({secs:.0f} s)", flush=True)
                    continue
                results.append((case, why))
                print(f"{'clean' if not why else 'NOT  '} {case.id} ({secs:.0f} s){'' if not why else ': ' + why}", flush=True)
    print(f"\n{'category':24} tried  clean  not clean")
    for cat in sorted({c.category for c, _ in results}):
        rows = [w for c, w in results if c.category == cat]
        print(f"{cat:24} {len(rows):5}  {sum(w is None for w in rows):5}  {sum(w is not None for w in rows):9}")
    bad = [(c, w) for c, w in results if w]
    print(f"{'total':24} {len(results):5}  {len(results) - len(bad):5}  {len(bad):9}   ({time.time() - start:.0f} s)")
    if skipped:
        print(f"skipped (feature not on this branch): {len(skipped)}: {', '.join(c.id for c in skipped)}")
    for c, w in bad:
        print(f"not clean: {c.id}: {w}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
