"""The diagonal Fisher information of a method's MLP on one task's training data.

The Fisher is the mean of squared per-sample gradients. For a linear layer `out = W a + b` one
sample's gradient is `delta a^T` (delta = dL/d out), so the squares summed over a batch are
`(delta^2)^T (a^2)` for W and `sum delta^2` for b: one ordinary forward and backward per batch
gives them exactly, with no per-sample gradient ever held in memory (vmap over 480k-parameter
gradients was 3x slower than training itself on Split-MNIST). The label whose log-likelihood is
differentiated is the model's prediction (`predicted`, as van de Ven & Tolias 2019), the true
label (`empirical`), or a draw from the model's softmax (`sampled`, the true Fisher).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from continual.data.loader import TensorLoader


def _linear_layers(net: nn.Module) -> dict[str, nn.Linear]:
    layers = {name: m for name, m in net.named_modules() if isinstance(m, nn.Linear)}
    covered = {f"{name}.{p}" for name, m in layers.items() for p, _ in m.named_parameters(recurse=False)}
    other = sorted(n for n, _ in net.named_parameters() if n not in covered)
    if other:
        raise TypeError(f"fisher_diagonal handles networks of nn.Linear layers only; {other} belong to other layers")
    return layers


def fisher_diagonal(module, data: TensorLoader, label: str, max_samples: int | None) -> dict:
    """The mean over `data`'s batches (each rank's share, summed over ranks) of the squared gradients."""
    net = module.net
    layers = _linear_layers(net)
    total = {n: torch.zeros_like(p) for n, p in net.named_parameters()}
    seen = 0
    for batch in data:
        if max_samples is not None:
            batch = {k: v[: max_samples - seen] if torch.is_tensor(v) else v for k, v in batch.items()}
        io: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        hooks = [m.register_forward_hook(lambda m, a, out, name=name: io.__setitem__(name, (a[0], out))) for name, m in layers.items()]
        try:
            with torch.enable_grad():
                logits = module.loss_logits(net(batch["x"]), batch)  # the training loss's outputs
                if label == "empirical":
                    target = module.labels.targets(batch["y"])
                elif label == "predicted":
                    target = logits.detach().argmax(1)
                else:
                    target = torch.multinomial(logits.detach().softmax(1), 1).squeeze(1)
                # a sum of per-sample losses: each output's gradient is its own sample's delta
                loss = F.cross_entropy(logits, target, reduction="sum")
                deltas = torch.autograd.grad(loss, [out for _, out in io.values()])
        finally:
            for h in hooks:
                h.remove()
        for (name, (a, _)), delta in zip(io.items(), deltas):
            d2 = delta.detach().pow(2)
            total[f"{name}.weight"] += d2.T @ a.detach().pow(2)
            if layers[name].bias is not None:
                total[f"{name}.bias"] += d2.sum(0)
        seen += len(target)
        if max_samples is not None and seen >= max_samples:
            break
    count = torch.tensor(float(seen), device=module.device)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        for v in (*total.values(), count):
            torch.distributed.all_reduce(v)
    return {n: v / count.clamp(min=1) for n, v in total.items()}
