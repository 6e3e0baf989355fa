"""The cases the per-method tests (resume, DDP, GPU) run: every registered method, plus variants
whose state differs from their method's default. A new method or variant is covered everywhere."""

from continual.methods import builtin

METHODS = builtin()
VARIANTS = {"router_connections": ("router", ["router.gate=connections", "router.memories=4"])}  # masks kept as bits
CASES = sorted(METHODS) + sorted(VARIANTS)
# settings under which these small runs show each method's effect (a buffer that fits, penalties that bite)
EXTRA = {"er": ["er.buffer_size=50"], "ewc": ["ewc.lambda_=1e4"], "si": ["si.c=10"]}


def method_of(case: str):
    return METHODS[VARIANTS.get(case, (case,))[0]]


def case_overrides(case: str, extra: dict[str, list[str]] = EXTRA) -> list[str]:
    """`method=`, `scenario=` (class-IL where the method has it) and the case's own overrides
    (a variant's, or `extra[method]` for a plain method)."""
    method, own = VARIANTS.get(case, (case, extra.get(case, [])))
    scenario = "class" if "class" in METHODS[method].scenarios else "task"
    return [f"method={method}", f"scenario={scenario}", *own]
