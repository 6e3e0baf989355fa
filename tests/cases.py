"""The cases the per-method tests (resume, DDP, mixed precision, GPU) run: every registered
method, plus variants whose state differs from their method's default. A new method or variant
is covered everywhere."""

from continual.methods import builtin
from helpers import QUICK

METHODS = builtin()
VARIANTS = {"router_connections": ("router", ["router.gate=connections", "router.memories=4"]),  # masks kept as bits
            "agem_per_task": ("agem", ["agem.buffer_size=60", "agem.memory=per_task"])}  # draws from the buffer's generator at a task's end
CASES = sorted(METHODS) + sorted(VARIANTS)
# settings under which these small runs show each method's effect (a buffer that fits, penalties that bite)
EXTRA = {"er": ["er.buffer_size=60"], "ewc": ["ewc.lambda_=1e4"], "si": ["si.c=10"],
         "ranpac": ["ranpac.m=200"],  # a projection that small runs solve quickly
         "icarl": ["icarl.buffer_size=60"], "gdumb": ["gdumb.buffer_size=60", "gdumb.epochs=3"]}
EXTRA |= {m: [f"{m}.buffer_size=60"] for m in ("der", "derpp", "agem")}  # buffers that fill from QUICK's data
# One run per case that the resume, DDP and mixed-precision tests all compare with
# (conftest.method_run): two epochs, so a resumed task crosses an epoch boundary; a checkpoint
# every 3 steps, so there is a mid-task checkpoint to resume from; an eval batch (16) that the
# 71-72 test samples per task and the DDP ranks' shards do not divide, so padding would show; the
# default width (on QUICK's smaller MLP, SI learns fine-tuning's exact counts: a penalty lost under
# DDP would not show).
RUN = [*QUICK, "trainer.max_epochs=2", "checkpoint_every_n_steps=3", "metrics.probe_per_task=16", "data.eval_batch_size=16",
       "backbone.hidden=[100,100]"]


def method_of(case: str):
    return METHODS[VARIANTS.get(case, (case,))[0]]


def case_overrides(case: str, extra: dict[str, list[str]] = EXTRA) -> list[str]:
    """`method=`, `scenario=` (class-IL where the method has it) and the case's own overrides
    (a variant's, or `extra[method]` for a plain method)."""
    method, own = VARIANTS.get(case, (case, extra.get(case, [])))
    scenario = "class" if "class" in METHODS[method].scenarios else "task"
    return [f"method={method}", f"scenario={scenario}", *own]
