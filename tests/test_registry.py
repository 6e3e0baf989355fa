"""The plug-in registries: a new file registers itself, installed packages add entries by entry
point, user code is `<module>:<attr>`, every bad name is one line with the one "did you mean"
hint; and the streams and backbones pages' walkthroughs run as written through `continual fit`."""

import json
import re
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from continual.cli.main import main
from continual.config.schema import Config
from continual.data.streams import STREAMS, build_stream
from continual.errors import ConfigError
from continual.models.backbones import BACKBONES, build_backbone
from continual.registry import Registry, did_you_mean

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["logger.kind=none", "trainer.enable_progress_bar=false", "trainer.max_epochs=1"]


def code_blocks(page: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", (ROOT / "docs" / page).read_text(), re.S)


def test_did_you_mean_names_the_closest_option_or_nothing():
    assert did_you_mean("split_mnsit", ["split_digits", "split_mnist", "permuted_mnist"]) == " (did you mean 'split_mnist'?)"
    assert did_you_mean("max_epoch", ["max_epochs", "devices"], prefix="trainer.") == " (did you mean 'trainer.max_epochs'?)"
    assert did_you_mean("zzz", ["split_mnist"]) == ""


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    """A package `plugins_pkg` of two entry files and one helper file, and an installed
    distribution whose entry point adds a third entry: each registers into the registry that
    `plugins_pkg` defines."""
    pkg = tmp_path / "plugins_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "from continual.registry import Registry\n"
        "THINGS = Registry('thing', 'thing.name', ('plugins_pkg',), 'plugins_pkg.things', user='<module>:<function>', what='a function')\n"
    )
    (pkg / "alpha.py").write_text(
        "from plugins_pkg import THINGS\n\n@THINGS.register('alpha', source='mnist')\n"
        "def alpha():\n    '''the first thing\n\n    more words'''\n    return 1\n"
    )
    (pkg / "beta.py").write_text("from plugins_pkg import THINGS\n\n@THINGS.register('beta')\ndef beta():\n    return 2\n")
    (pkg / "helpers.py").write_text("HELPER = 3  # a module that registers nothing\n")
    (tmp_path / "installed_things.py").write_text("def gamma():\n    '''an installed thing'''\n    return 4\n")
    dist = tmp_path / "installed_things-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: installed-things\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[plugins_pkg.things]\ngamma = installed_things:gamma\n")
    (tmp_path / "user_things.py").write_text("def delta():\n    return 5\nNUMBER = 6\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import plugins_pkg

    yield plugins_pkg.THINGS
    for name in ("plugins_pkg", "plugins_pkg.alpha", "plugins_pkg.beta", "plugins_pkg.helpers", "installed_things", "user_things"):
        sys.modules.pop(name, None)


def test_files_of_the_package_and_entry_points_register_themselves(plugins):
    things = plugins.builtin()
    assert {name: fn() for name, fn in things.items()} == {"alpha": 1, "beta": 2, "gamma": 4}
    assert plugins.help() == {"alpha": "the first thing", "beta": "", "gamma": "an installed thing"}
    assert plugins.facts("alpha") == {"source": "mnist"} and plugins.facts("beta") == {} and plugins.facts("x:y") == {}
    assert plugins.get("beta") is things["beta"]
    with pytest.raises(ValueError, match="thing 'beta' is registered twice"):
        plugins.register("beta")(lambda: 0)


def test_user_code_and_bad_names_are_one_line_errors(plugins):
    assert plugins.get("user_things:delta")() == 5
    cases = {
        "alpah": "thing.name='alpah' is not valid (did you mean 'alpha'?); choose one of: alpha, beta, gamma, or <module>:<function> for your own thing",
        "user_things:NUMBER": "thing.name='user_things:NUMBER': 'NUMBER' in user_things is int, not a function",
        "user_things:nothing": "thing.name='user_things:nothing': 'nothing' in user_things is nothing, not a function",
        "no_such_things:f": "thing.name='no_such_things:f': module 'no_such_things' not found; put no_such_things.py on PYTHONPATH",
        "user_things:": "thing.name='user_things:' is not <module>:<attr>; name a function as module:name",
    }
    for spec, message in cases.items():
        with pytest.raises(ConfigError) as err:
            plugins.get(spec)
        assert str(err.value).startswith(message), str(err.value)
        assert "\n" not in str(err.value)


def test_a_registry_that_accepts_only_some_objects():
    numbers = Registry("number", "n", (), "no.such.group", user="<module>:<attr>", what="an int", accepts=lambda o: isinstance(o, int))
    assert numbers.get("errno:ENOENT") == 2  # "no such file": 2 on every POSIX system
    with pytest.raises(ConfigError, match="'sqrt' in math is builtin_function_or_method, not an int"):
        numbers.get("math:sqrt")


def test_every_builtin_stream_says_what_it_is():
    helps = STREAMS.help()
    assert {"split_digits", "split_mnist", "split_fashion_mnist", "split_cifar10", "split_cifar100", "permuted_mnist", "rotated_mnist", "custom"} <= set(helps)
    assert all(helps.values()), helps
    # the streams whose data a pretraining data set is: the backbone warns when pretraining on it sees later tasks
    assert {n: STREAMS.facts(n).get("source") for n in ("split_digits", "split_mnist", "permuted_mnist", "rotated_mnist")} == {
        "split_digits": "digits", "split_mnist": "mnist", "permuted_mnist": "mnist", "rotated_mnist": None}


@pytest.mark.parametrize("override,message", [
    ("data.stream=split_digitz", "data.stream='split_digitz' is not valid (did you mean 'split_digits'?); choose one of: custom, "),
    ("backbone.name=mpl", "backbone.name='mpl' is not valid (did you mean 'mlp'?); choose one of: conv, conv1d, mlp, resnet18, vit_b_16, or <module>:<function> for your own backbone"),
    ("data.stream=no_such_streams:f", "data.stream='no_such_streams:f': module 'no_such_streams' not found"),
    ("backbone.name=torch:nn", "backbone.name='torch:nn': 'nn' in torch is module, not a function (cfg, input_shape) -> nn.Module (a feature extractor)"),
    # a function of the wrong signature: its first call would be a bare TypeError traceback
    ("data.stream=os.path:basename", "data.stream='os.path:basename': basename(p) cannot be called as a function (cfg, seed) -> Stream; give it those arguments"),
    ("backbone.name=os.path:basename", "backbone.name='os.path:basename': basename(p) cannot be called as a function (cfg, input_shape) -> nn.Module"),
])
def test_a_bad_stream_or_backbone_is_refused_before_the_run_in_one_line(override, message, capsys, tmp_path):
    assert main(["fit", override, f"output_dir={tmp_path / 'run'}", *QUIET]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"continual: error: {message}") and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


def test_build_backbone_seeds_and_builds_the_named_backbone():
    cfg = OmegaConf.merge(OmegaConf.structured(Config), {"backbone": {"hidden": [8]}, "seed": 3})
    stream = build_stream(cfg.data, 0)
    net = build_backbone(cfg, stream, 2)
    torch.manual_seed(3)
    expected = torch.nn.Linear(64, 8)  # the MLP's first layer is the first draw after the seed
    assert torch.equal(net.hidden[0].weight, expected.weight) and BACKBONES.help()["mlp"]


# ---- the pages' walkthroughs, as written ----


def test_the_streams_page_shows_the_split_digits_file_as_it_is():
    assert code_blocks("streams.md", "python")[0] == (ROOT / "continual" / "data" / "streams" / "split_digits.py").read_text()


def _metrics(run: Path) -> dict:
    out = json.loads((run / "metrics.json").read_text())
    return {k: v for k, v in out.items() if k not in ("wall_time_s", "provenance")}


def test_the_streams_walkthrough_runs_through_continual_fit(tmp_path, monkeypatch):
    _, stream_file, test_file = code_blocks("streams.md", "python")
    (tmp_path / "mystreams.py").write_text(stream_file)
    monkeypatch.syspath_prepend(str(tmp_path))
    ns: dict = {}
    exec(compile(test_file, "docs/streams.md", "exec"), ns)  # noqa: S102 - the page's own test
    ns["test_permuted_digits_permutes_the_pixels_of_each_task"]()
    run = ["fit", "data.stream=mystreams:permuted_digits", "data.n_tasks=3", "scenario=domain", *QUIET]
    assert main([*run, f"output_dir={tmp_path / 'a'}"]) == 0
    older = ["fit", "data.stream=custom", "data.custom=mystreams:permuted_digits", "data.n_tasks=3", "scenario=domain", *QUIET]
    assert main([*older, f"output_dir={tmp_path / 'b'}"]) == 0
    a, b = _metrics(tmp_path / "a"), _metrics(tmp_path / "b")
    assert a["tasks"] == [list(range(10 * t, 10 * t + 10)) for t in range(3)]  # every digit, once per permutation
    assert min(a["accuracy_matrix"][-1]) > 0.3  # domain-IL over 10 shared outputs: chance 0.1
    assert {**a, "stream": None} == {**b, "stream": None}  # both spellings: the same stream, the same run
    sys.modules.pop("mystreams", None)


def test_the_backbones_walkthrough_runs_through_continual_fit(tmp_path, monkeypatch):
    backbone_file, test_file = code_blocks("backbones.md", "python")
    (tmp_path / "mybackbones.py").write_text(backbone_file)
    monkeypatch.syspath_prepend(str(tmp_path))
    ns: dict = {}
    exec(compile(test_file, "docs/backbones.md", "exec"), ns)  # noqa: S102 - the page's own test
    ns["test_orthogonal_projection_keeps_the_geometry_of_the_inputs"]()
    out = tmp_path / "run"
    args = ["fit", "backbone.name=mybackbones:orthogonal_projection", "method=ncm"]
    assert main([*args, *QUIET, f"output_dir={out}"]) == 0
    from continual import load_run

    # the features the run used are the page's extractor, built under the run's seed, on the pixels
    r = load_run(out)
    torch.manual_seed(0)
    expected = ns["orthogonal_projection"](r.cfg, (1, 8, 8))
    raw = build_stream(r.cfg.data, r.cfg.seed).tasks[2].x_test
    assert r.stream.n_features == 32 and torch.allclose(r.stream.tasks[2].x_test, expected(raw), atol=1e-6)
    assert _metrics(out)["acc"] > 0.9  # nearest class mean on 32 orthogonal projections of the pixels, task-IL
    sys.modules.pop("mybackbones", None)
