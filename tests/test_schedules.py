"""Learning-rate schedules (`optim.scheduler`): the learning rate of every optimizer step of a real
run against the formulas written out here, the formulas against torch's own schedulers, the step
counts Lightning's settings give, exact resume, and the one-line errors."""

import math
import signal

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf

from cases import RUN
from continual import load_config
from continual.build import build_method
from continual.features import extract_features
from continual.cli.main import main
from continual.config.schema import OptimConfig
from continual.data.datamodule import TaskStreamDataModule
from continual.data.streams import build_stream
from continual.models import schedules
from helpers import QUICK, comparable
import test_resume_methods
from test_resume_methods import final_state, same

killer = test_resume_methods.killer  # the fixture of runs that SIGKILL themselves

LR, LO = 0.01, 0.001
# two tasks of different sizes (291 and 283 samples: 10 and 9 batches), three epochs of 90% of the
# batches each, a step every 4 batches: 9 and 6 optimizer steps, counted by hand below
SMALL = [*QUICK, "data.n_tasks=2", "data.batch_size=32", "trainer.max_epochs=3", "trainer.limit_train_batches=0.9",
         "trainer.accumulate_grad_batches=4", "data.val_fraction=0", "data.class_order=[4,5,8,9,0,1,2,3,6,7]", f"optim.lr={LR}",
         f"optim.min_lr={LO}"]
SETTINGS = {
    "cosine": [],
    "step": ["optim.step_size=3", "optim.gamma=0.5"],
    "onecycle": ["optim.warmup_fraction=0.5", "optim.div_factor=10"],
    "linear_warmup_cosine": ["optim.warmup_steps=3"],
}


def expected_lr(name: str, s: int, n: int) -> float:
    """The learning rate of step s of n, written out from each schedule's definition (docs)."""
    def cos(a, b, p):
        return b + (a - b) * (1 + math.cos(math.pi * p)) / 2
    if name == "cosine":
        return cos(LR, LO, s / n)
    if name == "step":
        return LR * 0.5 ** (s // 3)
    if name == "linear_warmup_cosine":
        return LR * (s + 1) / 3 if s < 3 else cos(LR, LO, (s - 3) / (n - 3))
    w = int(0.5 * n)  # onecycle: up over steps 0..w-1, down over w-1..n-1
    return cos(LR / 10, LR, s / (w - 1)) if s < w else cos(LR, LO, (s - (w - 1)) / (n - 1 - (w - 1)))


def hand_steps(cfg) -> list[int]:
    """Each task's optimizer steps: 90% of its batches per epoch, a step per 4 (and one for a rest), 3 epochs."""
    stream = build_stream(cfg.data, cfg.seed)
    return [math.ceil(int(math.ceil(len(t.y_train) / 32) * 0.9) / 4) * 3 for t in stream.tasks]


class Rates(L.Callback):
    """The learning rate each optimizer step is taken with, per task."""

    def __init__(self):
        self.lrs: dict[int, list[float]] = {}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.lrs.setdefault(pl_module.current_task, []).append(optimizer.param_groups[0]["lr"])


def learning_rates(overrides: list[str]) -> dict[int, list[float]]:
    """The learning rate of every optimizer step of each task, fitted as the task loop fits them
    (one Trainer per task, one module throughout), without the test passes a whole run adds."""
    cfg = load_config(None, [*SMALL, *overrides])
    stream = extract_features(cfg, build_stream(cfg.data, cfg.seed))  # the flat features the method sees
    module = build_method(cfg, stream)
    dm = TaskStreamDataModule(stream, cfg.data.batch_size, cfg.data.eval_batch_size, cfg.seed)
    rates = Rates()
    for t in range(len(stream)):
        dm.set_task(t)
        module.set_task(t)
        L.Trainer(**cfg.trainer, logger=False, callbacks=[rates]).fit(module, datamodule=dm)
    return rates.lrs


@pytest.mark.parametrize("scope", ["task", "stream"])
@pytest.mark.parametrize("name", list(SETTINGS))
def test_the_learning_rate_of_every_step_follows_the_formula(name, scope):
    steps = hand_steps(load_config(None, SMALL))
    assert steps == [9, 6]  # tasks of different lengths: a stream schedule must sum them
    lrs = learning_rates([f"optim.scheduler={name}", f"optim.scheduler_scope={scope}", *SETTINGS[name]])
    if scope == "task":
        want = {t: [expected_lr(name, s, n) for s in range(n)] for t, n in enumerate(steps)}
    else:
        total, start = sum(steps), [0, steps[0]]
        want = {t: [expected_lr(name, start[t] + s, total) for s in range(n)] for t, n in enumerate(steps)}
    assert lrs.keys() == want.keys()
    for t in want:
        assert lrs[t] == pytest.approx(want[t], rel=1e-12, abs=0)


def test_without_a_schedule_the_learning_rate_stays():
    """`optim.scheduler=none` (the default) leaves the learning rate at optim.lr: no scheduler."""
    assert {lr for lrs in learning_rates([]).values() for lr in lrs} == {LR}


def optim(**keys):
    return OmegaConf.merge(OmegaConf.structured(OptimConfig), {"lr": LR, "min_lr": LO, **keys})


def torch_lrs(make, n: int) -> list[float]:
    """The learning rates torch's scheduler `make(optimizer)` sets for n steps."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=LR)
    sched, lrs = make(opt), []
    for _ in range(n):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


@pytest.mark.parametrize("n", [10, 37])
def test_the_formulas_are_torchs_schedulers(n):
    cos = torch_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=n, eta_min=LO), n)
    assert [schedules.lr_at(optim(scheduler="cosine"), s, n) for s in range(n)] == pytest.approx(cos, rel=1e-9)
    step = torch_lrs(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=4, gamma=0.3), n)
    assert [schedules.lr_at(optim(scheduler="step", step_size=4, gamma=0.3), s, n) for s in range(n)] == pytest.approx(step, rel=1e-9)
    w = 5  # OneCycleLR's pct_start = w / n; its final lr = initial / final_div_factor = LO
    one = torch_lrs(lambda o: torch.optim.lr_scheduler.OneCycleLR(
        o, max_lr=LR, total_steps=n, pct_start=w / n, div_factor=10, final_div_factor=LR / 10 / LO, cycle_momentum=False), n)
    assert [schedules.lr_at(optim(scheduler="onecycle", warmup_steps=w, div_factor=10), s, n) for s in range(n)] == pytest.approx(one, rel=1e-9)


class Steps(L.LightningModule):
    """A module that counts its optimizer steps."""

    def __init__(self):
        super().__init__()
        self.w, self.taken = torch.nn.Parameter(torch.zeros(1)), 0

    def training_step(self, batch, i):
        return (self.w * batch[0]).sum()

    def on_before_optimizer_step(self, optimizer):
        self.taken += 1

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("kw", [
    dict(max_epochs=3), dict(max_epochs=2, limit_train_batches=4), dict(max_epochs=2, limit_train_batches=0.3),
    dict(max_epochs=2, accumulate_grad_batches=3), dict(max_epochs=3, accumulate_grad_batches=4, limit_train_batches=0.7),
    dict(max_epochs=5, max_steps=7), dict(max_epochs=-1, max_steps=6),
])
def test_task_steps_counts_the_steps_a_fit_takes(kw):
    """`task_steps` (the stream schedule's count of every task's steps) is Lightning's estimate and
    the steps a fit really takes, under each setting that changes them."""
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(23, 1)), batch_size=2)  # 12 batches
    module = Steps()
    tr = L.Trainer(logger=False, enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False, **kw)
    tr.fit(module, loader)
    assert schedules.task_steps(tr, len(loader)) == tr.estimated_stepping_batches == module.taken


def assert_resumes_exactly(tmp_path, killer, overrides: list[str]) -> None:
    """A run killed mid-way through task 2 and resumed ends with the uninterrupted run's metrics,
    weights and method state, bit for bit."""
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert main(["fit", f"output_dir={full}", *overrides]) == 0
    assert killer(1, "mid", [*overrides, f"output_dir={killed}"], tmp_path / "mid.log") == -signal.SIGKILL
    assert main(["fit", f"resume={killed}", *overrides]) == 0
    assert comparable(killed) == comparable(full)
    assert same(final_state(killed), final_state(full))


@pytest.mark.parametrize("scope", ["stream", pytest.param("task", marks=pytest.mark.slow)])
def test_a_run_killed_mid_task_resumes_to_the_uninterrupted_one_with_a_schedule(tmp_path, killer, scope):
    """Killed at step 5 of task 2 (its scheduler part-way, the stream position carried from task 1),
    resumed: the same metrics, weights and state as a run never stopped. (Before the step counts
    were taken from the data module, the resumed task replayed its epoch from the start.)"""
    overrides = [*RUN, "method=finetune", "optim.scheduler=linear_warmup_cosine", "optim.warmup_fraction=0.2",
                 f"optim.scheduler_scope={scope}", "optim.lr=0.01"]
    assert_resumes_exactly(tmp_path, killer, overrides)


@pytest.mark.slow  # the test above covers the mechanism; this runs each other schedule through it
@pytest.mark.parametrize("name", ["cosine", "step", "onecycle"])
def test_every_schedule_resumes_exactly(tmp_path, killer, name):
    overrides = [*RUN, "method=finetune", f"optim.scheduler={name}", "optim.scheduler_scope=stream", "optim.lr=0.01",
                 *{"step": ["optim.step_size=4"], "onecycle": ["optim.warmup_fraction=0.3"]}.get(name, [])]
    assert_resumes_exactly(tmp_path, killer, overrides)


def test_the_stream_position_is_saved_with_the_module(tmp_path):
    out = tmp_path / "run"
    assert main(["fit", f"output_dir={out}", *SMALL, "optim.scheduler=cosine", "optim.scheduler_scope=stream"]) == 0
    position = torch.load(out / "checkpoints" / "state.pt", weights_only=True)["module"]["_extra_state"]["schedule_position"]
    assert position == sum(hand_steps(load_config(None, SMALL)))


@pytest.mark.parametrize("overrides, words", [
    (["optim.scheduler=step"], "optim.scheduler=step needs optim.step_size"),
    (["optim.scheduler=onecycle"], "needs one of optim.warmup_fraction (e.g. 0.3) or optim.warmup_steps"),
    (["optim.scheduler=onecycle", "optim.warmup_steps=2", "optim.warmup_fraction=0.1"], "not both or neither"),
    (["optim.scheduler=cosine", "optim.warmup_steps=2"], "optim.warmup_steps is read by optim.scheduler=onecycle|linear_warmup_cosine only"),
    (["optim.scheduler=cosine", "optim.min_lr=0.1"], "optim.min_lr=0.1 must be below optim.lr=0.01"),
    (["optim.scheduler=bogus"], "optim.scheduler='bogus' is not valid"),
    (["optim.scheduler_scope=tasks"], "did you mean 'task'"),
    # found as the run starts, from Lightning's count: 290 and 278 samples, 5 batches of 64, 2 epochs
    (["optim.scheduler=linear_warmup_cosine", "optim.warmup_steps=500"], "a warm-up of 500 steps is not shorter than the task's 10 optimizer steps"),
    (["optim.scheduler=onecycle", "optim.warmup_steps=500", "optim.scheduler_scope=stream"], "not shorter than the stream's 20 optimizer steps"),
    (["optim.scheduler=onecycle", "optim.warmup_fraction=0.01"], "optim.warmup_fraction=0.01 of the task's 10 optimizer steps is no step of warm-up"),
])
def test_bad_schedule_settings_are_one_line(tmp_path, capsys, overrides, words):
    assert main(["fit", f"output_dir={tmp_path / 'run'}", *QUICK, "data.n_tasks=2", "data.batch_size=64", "trainer.max_epochs=2",
                 "optim.lr=0.01", *overrides]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("continual: error:") and len(err.splitlines()) == 1 and words in err, err
