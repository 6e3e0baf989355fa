"""Settings are discoverable: `fit --help` names methods, streams, backbones and scenarios; `config keys` lists the schema."""

import re

import pytest
from omegaconf import OmegaConf

from continual.cli.main import main
from continual.config.load import schema
from continual.config.schema import SCENARIOS
from continual.data.streams import STREAMS
from continual.methods import builtin
from continual.models.backbones import BACKBONES


def test_fit_help_names_the_methods_streams_backbones_scenarios_and_config_keys(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for name in [*builtin(), *SCENARIOS, "split_digits.yaml", "router_split_digits.yaml"]:
        assert name in out, name
    for registry in (STREAMS, BACKBONES):  # each with its own help line
        for name, text in registry.help().items():
            assert re.search(rf"^  {name} +{re.escape(text)}$", out, re.M), name
    assert "split_mnist" in STREAMS.help() and "mlp" in BACKBONES.help()
    assert "continual config keys [prefix]" in out


def _leaves(node, prefix=""):
    for k, v in node.items():
        if isinstance(v, dict) and not prefix + k == "trainer":
            yield from _leaves(v, f"{prefix}{k}.")
        elif isinstance(v, dict):
            yield from ((f"trainer.{a}", b) for a, b in v.items())
        else:
            yield prefix + k, v


def test_config_keys_lists_every_schema_key_with_its_type_default_and_meaning(capsys):
    assert main(["config", "keys"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    expected = {}
    for method in builtin().values():  # every method's section, besides the common keys
        expected.update(_leaves(OmegaConf.to_container(schema(method))))
    assert set(rows) == set(expected) | {"trainer.<argument>"}
    for key, default in expected.items():
        _, typ, shown, meaning = re.split(r"\s{2,}", rows[key], maxsplit=3)
        assert shown == repr(default), key
        assert meaning.strip(), f"{key} has no meaning: comment it in its dataclass"
    assert rows["data.root"].endswith("folder holding MNIST/raw (torchvision layout)")  # the schema's comment
    assert "(one of: task, class, domain)" in rows["scenario"]
    assert f"(one of: {', '.join(STREAMS.builtin())}, or <module>:<function> for your own)" in rows["data.stream"]
    assert "(one of: conv, conv1d, mlp, resnet18, vit_b_16, or <module>:<function> for your own)" in rows["backbone.name"]


def test_config_keys_takes_a_prefix_and_refuses_an_unknown_one(capsys):
    assert main(["config", "keys", "logger"]) == 0
    keys = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert "logger.kind" in keys and all(k.startswith("logger.") for k in keys)
    assert main(["config", "keys", "loggr"]) == 2
    assert "no config key is or starts with 'loggr'; give a key or a section: " in capsys.readouterr().err


def test_config_keys_shows_each_keys_range_beside_its_meaning(capsys):
    assert main(["config", "keys"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert rows["data.batch_size"].endswith("the global training batch (split over DDP processes) (a positive integer)")
    assert rows["data.val_fraction"].endswith("(in [0, 1))")
    assert rows["seed"].endswith("(in 0..4294967295)")
    assert rows["optim.lr"].endswith("(a positive finite number)")
    assert rows["optim.betas"].endswith("(two numbers in [0, 1))")
    assert rows["router.h"].endswith("head size (a positive integer)")
    assert rows["supsup.sparsity"].endswith("(in (0, 1])")
    assert rows["logger.mode"].endswith("(one of: online, offline, disabled)")
    # the metric registry's section: each switch's help, the option's range
    assert rows["metrics.task_inference"].endswith("accuracy and confusion matrix of the inferred task")
    assert rows["metrics.probe_per_task"].endswith("mask stability: the first K test samples of each task (a positive integer)")
