"""A non-editable install runs from any folder: the shipped configs are package data."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # a pip install and a default run in a new interpreter
def test_a_non_editable_install_runs_the_default_fit_from_another_folder(tmp_path):
    src, site, elsewhere = tmp_path / "src", tmp_path / "site", tmp_path / "elsewhere"
    # build from a copy: setuptools writes build/ and *.egg-info next to the sources
    for folder in ("continual", "configs"):  # configs/ is installed as continual/configs (setup.py)
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "--quiet"]
    subprocess.run([*pip, "--target", str(site), str(src)], check=True)
    assert (site / "continual" / "configs" / "split_digits.yaml").is_file()
    assert (site / "continual" / "configs" / "compare" / "vandeven2019_split_mnist.yaml").is_file()

    elsewhere.mkdir()
    # the installed copy first (not this checkout); what PYTHONPATH held may carry the dependencies
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])), "WANDB_MODE": "offline"}
    proc = subprocess.run([str(site / "bin" / "continual"), "fit", "trainer.enable_progress_bar=false"],
                          cwd=elsewhere, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = (elsewhere / "runs").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["complete"] and (metrics["method"], metrics["stream"], metrics["scenario"]) == ("finetune", "split_digits", "task")
    imported = subprocess.run([sys.executable, "-c", "import continual; print(continual.__file__)"],
                              cwd=elsewhere, env=env, capture_output=True, text=True, check=True).stdout
    assert imported.startswith(str(site))
