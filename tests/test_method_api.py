"""The method API: the docs' code runs as written, a method file is all a new method needs,
user methods load from outside the package with the same checks, and config sections belong
to their method only."""

import json
import re
import sys
from pathlib import Path

import pytest
import torch

from continual.cli.main import main
from continual.config import load_config
from continual.errors import ConfigError
from continual.methods import builtin

DOCS = Path(__file__).resolve().parents[1] / "docs"
QUIET = ["logger.kind=none", "trainer.enable_progress_bar=false", "trainer.max_epochs=1"]


def code_blocks(page: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", (DOCS / page).read_text(), re.S)


def test_the_python_api_page_runs_as_written(tmp_path):
    ns: dict = {}
    for block in code_blocks("api.md", "python"):
        exec(compile(block, "docs/api.md", "exec"), ns)  # noqa: S102 - the doc's own code
    stored = json.loads((tmp_path / "runs" / "api_demo" / "metrics.json").read_text())
    assert ns["metrics"]["acc"] == stored["acc"] and stored["method"] == "ewc"
    assert ns["counter"].steps == [(0, 9), (1, 9), (2, 9), (3, 9), (4, 8)]  # as the page says
    # the page's "the same number": exactly, where the run trained on the CPU that load_run evaluates on
    n = len(ns["task"].y_test)
    assert ns["accuracy"] == pytest.approx(stored["accuracy_matrix"][-1][0], abs=1e-6 if not torch.cuda.is_available() else 2 / n)
    # the own-Trainer loop (last block) trained the router on the Trainer's device, every task's memory set up
    module, stream = ns["module"], ns["stream"]
    assert type(module).__name__ == "RouterModule" and len(stream) == 5
    assert all(bool(m.initialized) for m in module.memories)
    task = stream.tasks[-1]  # on the Trainer's device (dm.to); the module is back on the CPU after test
    with torch.no_grad():
        pred = module.to(task.x_test.device).eval().predict({"x": task.x_test, "task": torch.full_like(task.y_test, task.id)})
    assert (pred == module.labels.targets(task.y_test)).float().mean() > 0.8  # class-IL, 10 classes: chance 0.1


def test_the_methods_page_shows_the_l2_file_as_it_is():
    shown = code_blocks("methods.md", "python")[0]
    assert shown == (Path(__file__).resolve().parents[1] / "continual" / "baselines" / "l2.py").read_text()


def test_l2_penalty_matches_hand_computation():
    from omegaconf import OmegaConf

    from continual.baselines.l2 import L2
    from continual.config.schema import OptimConfig
    from continual.models.mlp import MLP

    torch.manual_seed(0)
    m = L2(MLP(3, [4], 2), hp=OmegaConf.structured(L2.Config(strength=3.0)), task_classes=[[0, 1]], n_classes=2,
           scenario="task", optim=OmegaConf.structured(OptimConfig))
    m.on_task_end(None)  # anchor = the current weights: no penalty
    assert float(m.penalty().detach()) == 0.0
    with torch.no_grad():
        for p in m.net.parameters():
            p.add_(0.5)
    n_params = sum(p.numel() for p in m.net.parameters())
    assert float(m.penalty().detach()) == pytest.approx(0.5 * n_params * 0.25)
    batch = {"x": torch.randn(4, 3), "y": torch.tensor([0, 1, 0, 1]), "task": torch.zeros(4, dtype=torch.long), "global_size": 4}
    plain = torch.nn.functional.cross_entropy(m.net(batch["x"]), batch["y"]).detach()
    assert float(m.training_step(batch, 0).detach()) == pytest.approx(float(plain) + 3.0 * 0.5 * n_params * 0.25, rel=1e-5)


USER_METHOD = '''
from dataclasses import dataclass
from continual import ContinualModule

class Shrink(ContinualModule):
    @dataclass
    class Config:
        factor: float = 0.9

    def __init__(self, net, hp, **kwargs):
        super().__init__(**kwargs)
        self.net, self.hp = net, hp

    def logits(self, batch):
        return self.net(batch["x"])

    def on_task_end(self, data):
        for p in self.net.parameters():
            p.data.mul_(self.hp.factor)

NOT_A_METHOD = 3
'''


def test_a_user_method_from_outside_the_package_runs(tmp_path, monkeypatch, capsys):
    (tmp_path / "mymod.py").write_text(USER_METHOD)
    (tmp_path / "broken.py").write_text("import no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "run"
    assert main(["fit", "method=mymod:Shrink", "shrink.factor=0.0", f"output_dir={out}", *QUIET]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["method"] == "mymod:Shrink"
    # factor 0 zeroes the network after every task: each row of the matrix is the zero network's
    zero_row = m["accuracy_matrix"][0]
    assert all(row == zero_row for row in m["accuracy_matrix"])
    assert "factor: 0.0" in (out / "config.yaml").read_text()
    capsys.readouterr()
    for spec, expected in [("nosuchmod:X", "module 'nosuchmod' not found"), ("mymod:Nope", "'Nope' in mymod is nothing"),
                           ("mymod:NOT_A_METHOD", "is int, not a ContinualModule"), ("broken:X", "module 'no_such_dependency' not found")]:
        assert main(["fit", f"method={spec}", *QUIET]) == 2
        err = capsys.readouterr().err.strip()
        assert expected in err and len(err.splitlines()) == 1, err
    assert main(["fit", "method=mymod:Shrink", "shrink.factr=1", *QUIET]) == 2
    assert "did you mean 'factor'" in capsys.readouterr().err


def test_a_user_methods_init_that_cannot_take_its_arguments_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "oddmod.py").write_text(
        "from continual.baselines.finetune import FineTune\n\n\n"
        "class Odd(FineTune):\n    def __init__(self, net):  # drops the common arguments\n        super().__init__(net)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["fit", "method=oddmod:Odd", f"output_dir={tmp_path / 'run'}", *QUIET]) == 2
    assert capsys.readouterr().err == (
        "continual: error: method=oddmod:Odd: Odd(net) cannot take what it is built with (net, task_classes, n_classes, scenario, "
        "optim, class_il_train_outputs): got an unexpected keyword argument 'task_classes'; give its __init__ (net, **kwargs) "
        "and pass **kwargs on to super().__init__ (docs/methods.md)\n")
    assert not (tmp_path / "run").exists()


def test_only_the_selected_methods_section_is_in_the_config(tmp_path):
    cfg = load_config(None, ["method=ewc"])
    assert "ewc" in cfg and not any(name in cfg for name in builtin() if name != "ewc")
    with pytest.raises(ConfigError, match="configures method=si, but method=ewc; drop it or add method=si"):
        load_config(None, ["method=ewc", "si.c=1"])
    # a file with other methods' sections (a config.yaml of an earlier version): dropped
    old = tmp_path / "old.yaml"
    old.write_text("method: finetune\nsi:\n  c: 3.0\nrouter:\n  h: 8\n")
    assert "si" not in load_config(str(old), []) and "router" not in load_config(str(old), [])


def test_every_builtin_declares_its_config_scenarios_and_a_docstring():
    for name, cls in builtin().items():
        assert cls.name == name and sys.modules[cls.__module__].__doc__  # the file says what the method is
        assert set(cls.scenarios) <= {"task", "class", "domain"} and cls.scenarios
        load_config(None, [f"method={name}", f"scenario={cls.scenarios[0]}"])  # its defaults validate
        for refused in {"task", "class", "domain"} - set(cls.scenarios):  # the refusal says why, in the method's words
            assert cls.scenarios_why, name
            with pytest.raises(ConfigError) as err:
                load_config(None, [f"method={name}", f"scenario={refused}"])
            assert str(err.value) == (f"method={name} supports scenario={'|'.join(cls.scenarios)} only ({cls.scenarios_why}), "
                                      f"not scenario={refused}; use scenario={cls.scenarios[0]}")
