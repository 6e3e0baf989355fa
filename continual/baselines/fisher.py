"""The diagonal Fisher information of a method's MLP on one task's training data.

Per-sample gradients come from `torch.func.vmap(grad(...))` over a whole batch at once (no
per-sample Python loop); the Fisher is the mean of their squares. The label whose
log-likelihood is differentiated is the model's prediction (`predicted`, as van de Ven &
Tolias 2019), the true label (`empirical`), or a draw from the model's softmax (`sampled`,
the true Fisher).
"""

from __future__ import annotations

import torch
from torch.func import functional_call, grad, vmap
from torch.nn import functional as F

from continual.data.loader import TensorLoader


def fisher_diagonal(module, loader: TensorLoader, label: str, max_samples: int | None, batch_size: int) -> dict:
    net = module.net
    params = {n: p.detach() for n, p in net.named_parameters()}

    def nll(params, x, allowed, target):
        logits = functional_call(net, params, (x[None],)).masked_fill(~allowed[None], float("-inf"))
        return F.cross_entropy(logits, target[None])

    per_sample = vmap(grad(nll), in_dims=(None, 0, 0, 0))
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    seen = 0
    data = TensorLoader(loader.x, loader.y, loader.task_id, batch_size, train=False, task=loader.task)
    for batch in data:
        if max_samples is not None:
            batch = {k: v[: max_samples - seen] if torch.is_tensor(v) else v for k, v in batch.items()}
        allowed = module.labels.allowed(batch["task"], module.current_task)
        with torch.no_grad():
            logits = net(batch["x"]).masked_fill(~allowed, float("-inf"))
        if label == "empirical":
            target = module.labels.targets(batch["y"])
        elif label == "predicted":
            target = logits.argmax(1)
        else:
            target = torch.multinomial(logits.softmax(1), 1).squeeze(1)
        for n, g in per_sample(params, batch["x"], allowed, target).items():
            total[n] += g.pow(2).sum(0)
        seen += len(target)
        if max_samples is not None and seen >= max_samples:
            break
    count = torch.tensor(float(seen), device=module.device)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        for v in (*total.values(), count):
            torch.distributed.all_reduce(v)
    return {n: v / count.clamp(min=1) for n, v in total.items()}
