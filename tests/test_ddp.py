"""DDP on CPU (gloo): two processes give exactly the single-process metrics; only rank 0 writes.

Why exact: `data.batch_size` is the global batch, the ranks split each step's batch and
average the loss over the global batch, so the DDP gradient is the single-process gradient;
evaluation shards are unpadded and counts are summed. The test set (71 or 72 samples per
task, eval batch 16) is not a multiple of 2 x batch, so a padding bug would show.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cases import CASES, RUN, case_overrides
from continual.cli.main import main
from continual.config import load_config
from continual.errors import ConfigError
from continual.rundir.folder import resolve_run_dir
from helpers import comparable, shared_once

SMALL = ["trainer.max_epochs=1", "trainer.enable_progress_bar=false", "trainer.accelerator=cpu", "data.eval_batch_size=16"]
DDP = ["trainer.devices=2", "trainer.strategy=ddp"]


def child_env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "WANDB_MODE": "offline"}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The single-process run that the DDP and torchrun launches must equal."""
    run_dir = tmp_path_factory.mktemp("ddp") / "one"
    assert main(["fit", f"output_dir={run_dir}", "logger.kind=none", *SMALL]) == 0
    return run_dir


@pytest.mark.slow  # subprocesses: seconds each
def test_two_processes_give_the_single_process_metrics_and_one_writer(tmp_path, one_process):
    two = tmp_path / "two"
    cmd = [sys.executable, "-m", "continual.cli.main", "fit", f"output_dir={two}", *SMALL, *DDP]
    out = subprocess.run(cmd, env=child_env(), capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert comparable(two) == comparable(one_process)
    assert out.stdout.count("run directory:") == 1  # rank 1 prints nothing
    assert len(list((two / "wandb").glob("offline-run-*"))) == 1  # one W&B run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two"]  # no rank wrote elsewhere


# Every case's two-process run, all in one launch (each rank starts its interpreter once): the
# runs follow one another as a run's tasks do, in one process group, torn down at the end.
BATCH = """
import json, sys
import torch.distributed as dist
from continual import load_config, run

for overrides in json.load(open(sys.argv[1])):
    run(load_config(None, overrides))
if dist.is_initialized():
    dist.destroy_process_group()
"""


@pytest.fixture(scope="session")
def two_process_runs(tmp_path_factory):
    """case -> the run directory of its two-process run under `cases.RUN`, launched once per test
    session (all cases in one batch: each launch pays the imports) by whichever xdist worker asks
    first."""
    with shared_once(tmp_path_factory, "ddp") as (base, make):  # once, whichever xdist worker asks first
        runs = {case: base / case for case in CASES}
        if make:
            base.mkdir(parents=True, exist_ok=True)
            (base / "runs.json").write_text(json.dumps([[*RUN, *case_overrides(c), "trainer.accelerator=cpu", *DDP, f"output_dir={d}"] for c, d in runs.items()]))
            (base / "batch.py").write_text(BATCH)  # a file: Lightning starts rank 1 by running rank 0's command again
            out = subprocess.run([sys.executable, str(base / "batch.py"), str(base / "runs.json")], env=child_env(), capture_output=True, text=True, cwd=base)
            assert out.returncode == 0, out.stderr[-3000:]
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("method", CASES)
def test_every_method_gives_the_single_process_metrics(method, method_run, two_process_runs):
    """Penalties (EWC, SI), distillation (LwF), replay (ER), gates, pruning and the router are
    exact under DDP too (parametrized from the registry: a new method is covered)."""
    one = comparable(method_run(method, "trainer.accelerator=cpu"))
    assert comparable(two_process_runs[method]) == one
    # the method changes what is learned, so a wrongly scaled term under DDP would show
    if method != "finetune":
        assert one["counts"] != comparable(method_run("finetune", "trainer.accelerator=cpu"))["counts"]


@pytest.mark.slow
def test_torchrun_launch_gives_the_same_metrics(tmp_path, one_process):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    cmd = [torchrun, "--standalone", "--nproc_per_node=2", "-m", "continual.cli.main", "fit",
           f"output_dir={tmp_path / 'tr'}", "logger.kind=none", *SMALL, *DDP]
    out = subprocess.run(cmd, env=child_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert comparable(tmp_path / "tr") == comparable(one_process)


def test_a_finished_command_destroys_the_process_group_and_a_failed_one_leaves_it(tmp_path):
    """Gloo's threads left to interpreter shutdown abort a finished rank (SIGABRT); an error must
    not tear the group down under a rank that may still be in a collective."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        assert main(["config", "show", "no_such_key=1"]) == 2
        assert dist.is_initialized()
        assert main(["config", "show", "seed=3"]) == 0
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_externally_launched_ranks_agree_on_the_run_directory(monkeypatch):
    cfg = load_config(None, [])
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")
    with pytest.raises(ConfigError, match="pass output_dir="):
        resolve_run_dir(cfg)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    assert resolve_run_dir(cfg).name.startswith("slurm4242_")  # every srun task computes the same name
