"""The `continual` command as a new user meets it: results on stdout and nothing else, no
third-party noise, quiet pipes, user code from the current folder, hints for habits from other
tools, no folder left by a refused command, and Ctrl-C after the results are written."""

import json
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from helpers import QUICK

from continual.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def test_progress_bars_go_to_stderr_and_stdout_carries_only_the_results(tmp_path, capsys):
    from continual.metrics import report

    out = tmp_path / "run"
    assert main(["fit", f"output_dir={out}", *QUICK, "trainer.enable_progress_bar=true"]) == 0
    stdout, stderr = capsys.readouterr()
    assert "Task 3/3 epoch 0" in stderr and "\r" in stderr  # the bars are drawn, on stderr
    metrics = json.loads((out / "metrics.json").read_text())
    # stdout (what `continual fit ... > out.txt` keeps) is the summary and the run directory, nothing else
    assert stdout == report.format_summary(metrics) + f"\nrun directory: {out}\n"


def test_a_python_api_run_with_wandb_prints_no_third_party_warnings(tmp_path, monkeypatch, capfd):
    import continual

    import wandb

    monkeypatch.delenv("WANDB_SILENT", raising=False)  # the suite silences W&B; a user's run does not
    wandb.teardown()  # nor finds W&B set up (silent) by an earlier test's run in this process
    cfg = continual.load_config(None, [f"output_dir={tmp_path / 'run'}", *QUICK, "logger.kind=wandb", "logger.mode=offline"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        continual.run(cfg)
    assert not [str(w.message) for w in caught if "LeafSpec" in str(w.message)]  # Lightning's pytree deprecation
    err = capfd.readouterr().err
    assert "wandb:" in err and "anonymous" not in err  # W&B speaks, but not about a setting nobody set



def test_joint_prints_no_lightning_warning_on_the_tasks_it_does_not_train(tmp_path):
    """Joint trains on task 1 with every task's data and on nothing afterwards: no zero-length fit
    (Lightning's "Total length of `TensorLoader` across ranks is zero" on every later task)."""
    import continual

    cfg = continual.load_config(None, [f"output_dir={tmp_path / 'run'}", *QUICK, "method=joint"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = continual.run(cfg)
    assert not [f"{w.filename}: {w.message}" for w in caught if "lightning" in w.filename]
    rows = metrics["accuracy_matrix"]
    assert len(rows) == 3 and rows[0] == rows[1] == rows[2]  # trained once: every row is the first

def test_the_wandb_logger_passes_anonymous_only_when_asked(tmp_path):
    from continual.loggers import StreamWandbLogger
    from continual.run_logger import StepAxis

    assert "anonymous" not in StreamWandbLogger(StepAxis(), save_dir=str(tmp_path), mode="offline")._wandb_init
    assert StreamWandbLogger(StepAxis(), save_dir=str(tmp_path), mode="offline", anonymous=True)._wandb_init["anonymous"] == "allow"


def test_a_closed_pipe_ends_quietly_with_141():
    """`continual config keys | head`: the reader leaves; no BrokenPipeError traceback, and the
    status a shell gives `seq 100000 | head` (128 + SIGPIPE)."""
    code = "import sys; from continual.cli.main import main; sys.exit(main())"
    proc = subprocess.Popen([sys.executable, "-c", code, "config", "keys"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    proc.stdout.close()  # the reader is gone before anything is written
    assert proc.wait(timeout=120) == 141
    assert proc.stderr.read() == b""


USER_METHOD = '''
from dataclasses import dataclass
from continual import ContinualModule

class Shrink(ContinualModule):
    """Fine-tuning whose weights shrink towards zero between tasks."""

    @dataclass
    class Config:
        factor: float = 0.9  # how much of each weight a task end keeps

    def __init__(self, net, hp, **kwargs):
        super().__init__(**kwargs)
        self.net, self.hp = net, hp

    def logits(self, batch):
        return self.net(batch["x"])

    def on_task_end(self, data):
        for p in self.net.parameters():
            p.data.mul_(self.hp.factor)
'''


def test_a_user_method_in_the_current_folder_runs_and_lists_its_keys(tmp_path, monkeypatch, capsys):
    (tmp_path / "cwd_methods.py").write_text(USER_METHOD)
    monkeypatch.chdir(tmp_path)
    # as under the `continual` console script: the current folder is not on sys.path
    monkeypatch.setattr(sys, "path", [p for p in sys.path if os.path.abspath(p or ".") != str(tmp_path)])
    monkeypatch.delitem(sys.modules, "cwd_methods", raising=False)
    assert main(["config", "keys", "cwd_methods:Shrink"]) == 0
    assert capsys.readouterr().out.split() == ["shrink.factor", "float", "0.9", "[method=cwd_methods:Shrink]",
                                                "how", "much", "of", "each", "weight", "a", "task", "end", "keeps"]
    out = tmp_path / "run"
    assert main(["fit", "method=cwd_methods:Shrink", "shrink.factor=0.0", f"output_dir={out}", *QUICK]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["method"] == "cwd_methods:Shrink" and all(row == m["accuracy_matrix"][0] for row in m["accuracy_matrix"])  # zeroed each task
    assert main(["config", "keys", "shrink"]) == 2
    assert "or <module>:<Class> for your own method's keys" in capsys.readouterr().err


@pytest.mark.parametrize("args, hint", [
    (["fit", "--data.root=/x"], "write data.root=/x"),
    (["fit", "--data.root", "/x", "seed=1"], "write data.root=/x"),
    (["fit", "--seed=3"], "write seed=3"),
    (["sweep", "s.yaml", "--trainer.max_epochs=2"], "write trainer.max_epochs=2"),
])
def test_lightning_cli_style_overrides_get_a_one_line_hint(args, hint, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("continual: error: ") and hint in err and len(err.strip().splitlines()) == 1


def test_a_refused_sweep_or_compare_leaves_no_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ranges.yaml").write_text(
        "method: grid\nmetric: {name: final/acc, goal: maximize}\nparameters:\n  optim.lr: {min: 0.001, max: 0.01}\n"
        'command: ["${env}", continual, fit, "${args_no_hyphens}"]\n')
    assert main(["sweep", "ranges.yaml"]) == 2  # a grid over a range: refused by the search, before any folder
    assert "a grid needs `values`" in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text("base: split_digits.yaml\nout: runs/compare/badcmp\nmethods:\n  ft: [method=finetune, optim.lrr=0.1]\n"
                                       "scenarios: [task]\nseeds: [0]\n")
    assert main(["compare", "--config", "bad.yaml"]) == 2
    assert "optim.lrr" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args, kind, command", [
    (["fit", "--config", "compare/no_replay_split_mnist.yaml"], "a compare grid, not a run config", "continual compare --config"),
    (["fit", "--config", "SWEEPS/router_grid_h_nv.yaml"], "a W&B sweep file, not a run config", "continual sweep"),
    (["compare", "--config", "router_split_mnist.yaml"], "a run config, not a compare grid", "continual fit --config"),
    (["compare", "--config", "SWEEPS/router_grid_h_nv.yaml"], "a W&B sweep file, not a compare grid", "continual sweep"),
    (["sweep", "CONFIGS/router_split_mnist.yaml"], "a run config, not a W&B sweep file", "continual fit --config"),
    (["sweep", "CONFIGS/compare/no_replay_split_mnist.yaml"], "a compare grid, not a W&B sweep file", "continual compare --config"),
])
def test_a_shipped_file_given_to_the_wrong_command_is_named_with_the_command_that_runs_it(args, kind, command, tmp_path, monkeypatch, capsys):
    """Without the check each fails on its first foreign key ("unknown key 'backbone' in compare
    config", "method='grid' is not valid"): the symptom, not the mistake."""
    monkeypatch.chdir(tmp_path)
    args = [a.replace("SWEEPS", str(ROOT / "sweeps")).replace("CONFIGS", str(ROOT / "configs")) for a in args]
    path = args[-1]
    assert main(args) == 2
    assert capsys.readouterr().err == f"continual: error: '{path}' is {kind}; run it with `{command} {path}`\n"
    assert not (tmp_path / "runs").exists()


def test_ctrl_c_after_the_run_wrote_its_results_says_so_and_exits_0(tmp_path, monkeypatch, capsys):
    from continual.metrics import report

    summary = report.format_summary

    def interrupted_summary(metrics):  # Ctrl-C while the summary is printed: metrics.json is written
        os.kill(os.getpid(), signal.SIGINT)
        return summary(metrics)

    monkeypatch.setattr(report, "format_summary", interrupted_summary)
    out = tmp_path / "run"
    assert main(["fit", f"output_dir={out}", *QUICK]) == 0
    err = capsys.readouterr().err
    assert err == (f"continual: Ctrl-C after the run finished: its metrics are complete in {out}/metrics.json; cut short: what "
                   "follows them (plots, the printed summary, the loggers' last upload: wandb sync uploads an offline W&B run)\n")
    assert json.loads((out / "metrics.json").read_text())["complete"] is True


def test_the_readme_offers_a_cpu_only_torch_and_keeps_the_default_install():
    readme = (ROOT / "README.md").read_text()
    assert "pip install torch --index-url https://download.pytorch.org/whl/cpu" in readme
    assert "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/continual fit --config router_split_digits.yaml" in readme


@pytest.mark.parametrize("args, words", [
    (["compare", "--config", "x.yaml", "--workers", "abc"], "argument --workers: 'abc' is not a positive integer (see continual compare --help)"),
    (["sweep", "x.yaml", "--workers", "0"], "argument --workers: '0' is not a positive integer (see continual sweep --help)"),
    (["fit", "--bogus"], "unrecognized arguments: --bogus (see continual --help)"),
])
def test_a_bad_command_line_is_one_line_not_argparse_usage(args, words, capsys):
    """argparse would print its usage block before the error; the platform's errors are one line."""
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines() == [f"continual: error: {words}"]


def test_numbers_on_the_validation_split_say_so_in_the_printed_summary(tmp_path, capsys):
    """data.eval_split=val is for choosing settings: its console table must not read as test numbers."""
    assert main(["fit", f"output_dir={tmp_path / 'val'}", *QUICK, "data.eval_split=val"]) == 0
    assert "[finetune, task-IL, validation split]\n" in capsys.readouterr().out
    assert main(["fit", f"output_dir={tmp_path / 'test'}", *QUICK]) == 0
    assert "[finetune, task-IL]\n" in capsys.readouterr().out
