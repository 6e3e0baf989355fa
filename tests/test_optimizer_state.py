"""`optim.carry_state`: one optimizer whose state (Adam's moments and step count) runs through
the whole stream, as in van de Ven & Tolias 2019, instead of a fresh one per task."""

import lightning as L
import pytest
import torch

from continual.cli.main import main
from continual.config import load_config
from continual.data.datamodule import TaskStreamDataModule
from continual.data.streams import build_stream
from continual.features import extract_features
from continual.build import build_method

STEPS = 3


def adam_state_after_two_tasks(carry: bool):
    """Fit tasks 1 and 2 for STEPS steps each; the first hidden weight's Adam state at the end of
    each task."""
    cfg = load_config(None, [f"optim.carry_state={str(carry).lower()}"])
    stream = extract_features(cfg, build_stream(cfg.data, cfg.seed))
    module = build_method(cfg, stream)
    dm = TaskStreamDataModule(stream, cfg.data.batch_size, cfg.data.eval_batch_size, cfg.seed)
    weight = module.net.hidden[0].weight
    states = []
    for t in range(2):
        dm.set_task(t)
        module.set_task(t)
        tr = L.Trainer(max_steps=STEPS, logger=False, enable_progress_bar=False, enable_checkpointing=False,
                       enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0)
        tr.fit(module, datamodule=dm)
        s = tr.optimizers[0].state[weight]
        states.append({k: v.clone() for k, v in s.items()})
    return states


def test_carried_state_continues_the_step_count_and_moments():
    first, second = adam_state_after_two_tasks(carry=True)
    assert int(first["step"]) == STEPS and int(second["step"]) == 2 * STEPS
    # the second task's moments started from the first task's, not from zero
    fresh_first, fresh_second = adam_state_after_two_tasks(carry=False)
    assert int(fresh_second["step"]) == STEPS
    assert torch.equal(first["exp_avg"], fresh_first["exp_avg"])  # same data, same start
    assert not torch.allclose(second["exp_avg"], fresh_second["exp_avg"])


def test_carried_state_survives_in_the_task_boundary_checkpoint(tmp_path):
    out = tmp_path / "run"
    assert main(["fit", f"output_dir={out}", "logger.kind=none", "optim.carry_state=true", "trainer.max_steps=2",
                 "trainer.enable_progress_bar=false"]) == 0
    state = torch.load(out / "checkpoints" / "state.pt", weights_only=True)
    steps = {int(s["step"]) for s in state["module"]["_extra_state"]["optim"].values()}
    assert steps == {5 * 2}  # every parameter's Adam state counted the steps of all 5 tasks


@pytest.mark.parametrize("carry", [True, False])
def test_only_carry_state_stores_optimizer_state(tmp_path, carry):
    out = tmp_path / "run"
    flag = f"optim.carry_state={str(carry).lower()}"
    assert main(["fit", f"output_dir={out}", "logger.kind=none", flag, "trainer.max_steps=1", "trainer.enable_progress_bar=false"]) == 0
    state = torch.load(out / "checkpoints" / "state.pt", weights_only=True)
    assert bool(state["module"]["_extra_state"]["optim"]) is carry
