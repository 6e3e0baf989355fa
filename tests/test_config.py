"""Config errors: one line on stderr naming the key and the fix, exit code 2, no traceback."""

import subprocess
import sys
from pathlib import Path

import pytest

from continual.cli.main import main
from continual.config import load_config
from continual.config.load import PACKAGED_CONFIGS
from continual.errors import ConfigError


def run_cli(capsys, *args):
    code = main(list(args))
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize(
    "override, expected",
    [
        ("data.strem=split_mnist", "unknown config key 'data.strem'"),
        ("data.batch_size=lots", "bad value for 'data.batch_size'"),
        ("method=fintune", "did you mean 'finetune'"),
        ("scenario=clas", "choose one of: task, class, domain"),
        ("trainer.max_epoch=2", "did you mean 'trainer.max_epochs'"),
        ("trainer.logger=false", "trainer.logger is set by continual"),
        ("nonsense=1", "unknown config key 'nonsense'"),
        ("seed", "not of the form key=value"),
        ("data.val_fraction=1.5", "data.val_fraction=1.5 must be in [0, 1)"),
        ("backbone.init=checkpoint", "needs backbone.checkpoint"),
        ("data.n_tasks=6", "needs 12 classes but split_digits has 10"),
    ],
)
def test_config_error_is_one_clear_line(capsys, override, expected):
    code, err = run_cli(capsys, "fit", override, "logger.wandb=false")
    assert code == 2
    assert expected in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_unknown_key_suggests_nearest(capsys):
    _, err = run_cli(capsys, "config", "show", "optim.learning_rate=0.1")
    assert "unknown config key 'optim.learning_rate'" in err and "valid keys:" in err and "lr" in err


def test_missing_config_file_lists_available(capsys):
    code, err = run_cli(capsys, "fit", "--config", "no_such.yaml")
    assert code == 2 and "config file 'no_such.yaml' not found" in err and "split_mnist.yaml" in err


def test_bad_yaml_and_unknown_key_in_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    code, err = run_cli(capsys, "fit", "--config", str(bad))
    assert code == 2 and "is not valid YAML" in err
    typo = tmp_path / "typo.yaml"
    typo.write_text("optim:\n  lr: 0.1\n  momentun: 0.9\n")
    code, err = run_cli(capsys, "fit", "--config", str(typo))
    assert code == 2 and "unknown config key 'optim.momentun'" in err and "did you mean 'momentum'" in err


def test_overrides_win_over_file_and_types_are_enforced():
    cfg = load_config(None, ["seed=7", "data.batch_size=16", "backbone.hidden=[8,4]", "trainer.max_epochs=3"])
    assert cfg.seed == 7 and cfg.data.batch_size == 16 and list(cfg.backbone.hidden) == [8, 4]
    assert cfg.trainer.max_epochs == 3 and cfg.data.stream == "split_digits"
    with pytest.raises(ConfigError):
        load_config(None, ["seed=1.5"])


def test_config_show_prints_resolved_yaml(capsys):
    assert main(["config", "show", "seed=11"]) == 0
    out = capsys.readouterr().out
    assert "seed: 11" in out and "stream: split_digits" in out and "max_epochs: 5" in out


def test_console_script_prints_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "continual.cli.main", "fit", "data.stream=split_digitz"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "continual: error: data.stream='split_digitz' is not valid (did you mean 'split_digits'?); "
        "choose one of: custom, permuted_mnist, rotated_mnist, split_cifar10, split_cifar100, split_digits, "
        "split_fashion_mnist, split_mnist, or <module>:<function> for your own stream"
    )


CONFIGS = sorted(PACKAGED_CONFIGS.glob("*.yaml"))
GRIDS = sorted((PACKAGED_CONFIGS / "compare").glob("*.yaml"))


def test_the_shipped_configs_are_the_one_copy_in_the_top_level_configs_folder():
    """A checkout reads configs/ (a wheel installs the same files as continual/configs), and the tests below see them."""
    assert PACKAGED_CONFIGS == Path(__file__).resolve().parents[1] / "configs"
    assert {"split_digits.yaml", "router_split_digits.yaml", "split_mnist.yaml"} <= {p.name for p in CONFIGS} and GRIDS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_validates(path):
    cfg = load_config(str(path), [])
    assert cfg.method and cfg.data.stream


@pytest.mark.parametrize("path", GRIDS, ids=lambda p: p.name)
def test_every_cell_of_every_shipped_compare_grid_validates(path):
    from continual.compare.spec import load_grid

    grid = load_grid(str(path))
    cells = list(grid.cells())
    assert cells
    for cell in cells:
        load_config(grid.base, grid.cell_overrides(*cell))
