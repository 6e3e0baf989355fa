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
    code, err = run_cli(capsys, "fit", override, "logger.kind=none")
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
        "split_fashion_mnist, split_mnist, split_mnist1d, or <module>:<function> for your own stream"
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


# -- range checks from field metadata (continual/config/fields.py) ------------------------------
def _ranged_keys():
    """(method, dotted key, field) of every field with a range rule: the schema and every method's Config."""
    import dataclasses

    from continual.config.schema import Config
    from continual.methods import builtin

    def walk(node, prefix):
        for f in dataclasses.fields(node):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if dataclasses.is_dataclass(default):
                yield from walk(type(default), f"{prefix}{f.name}.")
            elif "rule" in f.metadata:
                yield prefix + f.name, f

    out = [("finetune", key, f) for key, f in walk(Config, "")]
    for name, cls in builtin().items():
        if cls.Config is not None:
            out += [(name, key, f) for key, f in walk(cls.Config, f"{name}.")]
    return out


RANGED = _ranged_keys()
OUTSIDE = (-1, 0, 1.5, 2**32, [], [-1], [0.5, 1.0])  # values some range leaves out


def test_every_method_has_ranged_keys_and_no_range_is_checked_by_hand():
    methods = {m for m, _, _ in RANGED}
    assert {"finetune", "router", "ewc", "er", "lwf", "hat", "si", "l2", "packnet", "prototypes", "slda", "supsup"} <= methods
    assert len(RANGED) > 40


@pytest.mark.parametrize("method, key, f", RANGED, ids=[k for _, k, _ in RANGED])
def test_every_range_is_refused_in_one_line_naming_key_value_and_rule(method, key, f):
    rule = f.metadata["rule"]
    is_list = isinstance(f.default_factory(), list) if callable(f.default_factory) else False
    bad = next(v for v in OUTSIDE if isinstance(v, list) == is_list and not rule.test(v))
    with pytest.raises(ConfigError) as err:
        load_config(None, [f"method={method}", f"{key}={bad}".replace(" ", "")])
    msg = str(err.value)
    assert msg.startswith(f"{key}=") and f" must be {rule.words}" in msg and "\n" not in msg


@pytest.mark.parametrize("override, message", [
    ("data.test_fraction=1", "data.test_fraction=1.0 must be in (0, 1)"),
    ("data.test_fraction=0", "data.test_fraction=0.0 must be in (0, 1)"),
    ("checkpoint_every_s=nan", "checkpoint_every_s=nan must be >= 0 (0: checkpoint only at task ends), e.g. checkpoint_every_s=300.0"),
    ("checkpoint_every_n_steps=-2", "checkpoint_every_n_steps=-2 must be >= 0 (0: use checkpoint_every_s), e.g. checkpoint_every_n_steps=0"),
    ("optim.lr=0", "optim.lr=0.0 must be a positive finite number, e.g. optim.lr=0.001"),
    ("optim.betas=[0.9]", "optim.betas=[0.9] must be two numbers in [0, 1), e.g. optim.betas=[0.9,0.999]"),
    ("backbone.hidden=[]", "backbone.hidden=[] must be a non-empty list of positive widths, e.g. backbone.hidden=[400,400]"),
    ("seed=4294967296", "seed=4294967296 must be in 0..4294967295 (the range numpy's generator accepts)"),
    ("metrics.probe_per_task=0", "metrics.probe_per_task=0 must be a positive integer"),
    ("logger.mode=ofline", "logger.mode='ofline' is not valid (did you mean 'offline'?); choose one of: online, offline, disabled"),
    ("method=router router.patch_size=0", "router.patch_size=0 must be a positive integer (or null for sqrt(inputs))"),
    ("method=lwf lwf.alpha=1.5", "lwf.alpha=1.5 must be in [0, 1] (or null for 1 - 1/tasks seen)"),
    ("method=packnet packnet.prune=1", "packnet.prune=1.0 must be in [0, 1)"),
    ("method=ewc ewc.gamma=-0.5", "ewc.gamma=-0.5 must be >= 0, e.g. ewc.gamma=1.0"),
    ("method=er er.batch_size=0", "er.batch_size=0 must be a positive integer (or null for data.batch_size)"),
])
def test_range_errors_word_by_word(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, override.split())
    assert str(err.value) == message


@pytest.mark.parametrize("override, key, value", [
    ("checkpoint_every_s=inf", "checkpoint_every_s", float("inf")), ("checkpoint_every_s=0", "checkpoint_every_s", 0),
    ("data.val_fraction=0", "data.val_fraction", 0), ("optim.betas=[0,0.5]", "optim.betas", [0, 0.5]),
    ("seed=4294967295", "seed", 4294967295), ("data.n_tasks=null", "data.n_tasks", None),
    ("method=lwf lwf.alpha=null", "lwf.alpha", None), ("method=lwf lwf.alpha=1", "lwf.alpha", 1),
    ("method=supsup supsup.sparsity=1", "supsup.sparsity", 1),
])
def test_values_on_a_range_boundary_or_null_pass(override, key, value):
    from omegaconf import OmegaConf

    cfg = load_config(None, override.split())
    got = OmegaConf.select(cfg, key)
    assert (list(got) if OmegaConf.is_list(got) else got) == value  # accepted and kept as given


def test_cross_key_checks_stay_beside_the_ranges(capsys):
    code, err = run_cli(capsys, "fit", "data.eval_split=val", "data.val_fraction=0", "logger.kind=none")
    assert code == 2 and err == "continual: error: data.eval_split=val needs a validation split: set data.val_fraction>0 (e.g. 0.1)"
    with pytest.raises(ConfigError, match="supsup.init=signed_constant needs backbone.activation=relu"):
        load_config(None, ["method=supsup", "backbone.activation=tanh"])


# -- keys that may differ on resume: marked in the schema --------------------------------------
@pytest.mark.parametrize("override", [
    "output_dir=/elsewhere", "resume=/elsewhere", "overwrite=true", "checkpoint_every_s=5", "checkpoint_every_n_steps=7",
    "logger.project=other", "logger.kind=csv", "trainer.devices=2", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1",
])
def test_volatile_keys_leave_the_fingerprint_alone(override):
    from continual.rundir.state import fingerprint

    assert fingerprint(load_config(None, [override])) == fingerprint(load_config(None, []))


@pytest.mark.parametrize("override", ["seed=1", "optim.lr=0.5", "trainer.max_epochs=2", "metrics.probe_per_task=8", "data.batch_size=64"])
def test_other_keys_change_the_fingerprint(override):
    from continual.rundir.state import fingerprint

    key = override.split("=")[0]
    a, b = fingerprint(load_config(None, [override])), fingerprint(load_config(None, []))
    assert a[key] != b[key] and {k for k in a if a[k] != b[k]} == {key}


def test_every_shipped_file_is_told_as_its_own_kind(tmp_path):
    """The wrong-command check (continual/config/kinds.py) must never refuse a file given to its
    own command: each shipped run config, compare grid and sweep reads as its kind, and so does the
    config.yaml a run writes."""
    import yaml

    from continual.config.kinds import kind_of

    sweeps = Path(__file__).resolve().parents[1] / "sweeps"
    files = {"run": sorted(PACKAGED_CONFIGS.glob("*.yaml")), "compare": sorted(PACKAGED_CONFIGS.glob("compare/*.yaml")),
             "sweep": sorted(sweeps.glob("*.yaml"))}
    assert all(len(paths) >= 2 for paths in files.values())
    for kind, paths in files.items():
        for path in paths:
            assert kind_of(yaml.safe_load(path.read_text())) == kind, path
    written = tmp_path / "config.yaml"
    from omegaconf import OmegaConf

    OmegaConf.save(load_config("router_split_digits.yaml"), written)
    assert kind_of(yaml.safe_load(written.read_text())) == "run"
    assert kind_of({}) is None
    assert kind_of({"method": "er", "metric": {"probe_per_task": 8}}) == "run"  # a typo of `metrics`, told as such below
    (tmp_path / "typo.yaml").write_text("method: er\nmetric: {probe_per_task: 8}\n")
    with pytest.raises(ConfigError, match="unknown config key 'metric' .*did you mean 'metrics'"):
        load_config(str(tmp_path / "typo.yaml"))


def test_a_key_under_the_wrong_section_names_the_other_section_and_this_sections_keys(capsys):
    """`data.name` is no key: `name` is backbone.name's, and the dataset is data.stream; the
    message must lead to both, not only to the spelling nearest elsewhere."""
    assert main(["config", "show", "data.name=mnist"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("continual: error: unknown config key 'data.name' in overrides under 'data' (did you mean 'backbone.name'?); "
                          "valid keys under 'data': ") and len(err.splitlines()) == 1
    listed = err.split("valid keys under 'data': ")[1].split(", ")
    assert "stream" in listed and "root" in listed and listed == sorted(listed)
