"""SupSup's PermutedMNIST notebook protocol in plain PyTorch: a cross-check for `method=supsup`.

It shares no code with `continual` and follows the protocol of the authors' `mnist.ipynb`
(RAIVNLab/supsup): 5 tasks, each MNIST under its own pixel permutation (`np.random.seed(seed +
t)`, task 0 permuted too); a 784-300-300-100 ReLU network without biases whose weights are
`sign(w) * sqrt(2 / fan_in)`; per task a mask over every weight, `scores >= 0` (or each layer's
top half of |scores|), trained with the straight-through gradient by RMSprop (lr 1e-4), batch
128, one epoch. It reports the accuracy with the task given and the one-shot task inference
(entropy gradient with respect to the mask coefficients at 1/k) for every test image, each
image alone, with `torch.func` per-sample gradients (the platform uses a per-sample-alpha
forward instead). `--normalize` standardizes the pixels as their notebook does; `continual`'s
streams keep them in [0, 1]. docs/reproduction.md compares the numbers.

    python repro/supsup_loop.py --root ../shared/data --seeds 0-2 [--normalize] [--mask topk]
"""

from __future__ import annotations

import argparse
import math
import statistics

import numpy as np
import torch
from torch.nn import functional as F
from torchvision.datasets import MNIST

WIDTHS = [784, 300, 300, 100]


def load(root: str, normalize: bool):
    """Train and test images as [N, 784] in [0, 1] (or standardized) and their labels."""
    out = []
    for train in (True, False):
        ds = MNIST(root, train=train, download=False)
        x = ds.data.reshape(len(ds.data), -1).float() / 255
        out += [(x - 0.1307) / 0.3081 if normalize else x, ds.targets]
    return out


class Straight(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores, hard):
        return hard

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def binary(scores: torch.Tensor, mask: str) -> torch.Tensor:
    if mask == "threshold":
        return Straight.apply(scores, (scores >= 0).float())
    a = scores.abs()
    keep = a.numel() // 2
    hard = (a >= a.flatten().kthvalue(a.numel() - keep + 1).values).float()  # the top half
    return Straight.apply(a, hard)


def logits(x: torch.Tensor, weights: list, masks: list) -> torch.Tensor:
    for i, (w, m) in enumerate(zip(weights, masks)):
        x = x @ (w * m).T
        x = F.relu(x) if i < len(weights) - 1 else x
    return x


def run(root: str, seed: int, normalize: bool, mask: str = "threshold", tasks: int = 5, epochs: int = 1) -> dict:
    torch.manual_seed(seed)
    x_tr, y_tr, x_te, y_te = load(root, normalize)
    perms = []
    for t in range(tasks):
        np.random.seed(seed + t)
        perms.append(torch.from_numpy(np.random.permutation(784)))
    weights = []
    for fan_in, fan_out in zip(WIDTHS[:-1], WIDTHS[1:]):
        w = torch.empty(fan_out, fan_in)
        torch.nn.init.kaiming_uniform_(w, a=math.sqrt(5))
        weights.append(w.sign() * math.sqrt(2 / fan_in))
    learned = []
    for t in range(tasks):
        scores = []
        for w in weights:
            s = torch.empty_like(w)
            torch.nn.init.kaiming_uniform_(s, a=math.sqrt(5))
            scores.append(s.requires_grad_())
        opt = torch.optim.RMSprop(scores, lr=1e-4)
        x = x_tr[:, perms[t]]
        for _ in range(epochs):
            for idx in torch.randperm(len(x)).split(128):
                loss = F.cross_entropy(logits(x[idx], weights, [binary(s, mask) for s in scores]), y_tr[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        learned.append([binary(s, mask).detach() for s in scores])

    given, inferred = [], []
    for t in range(tasks):
        x = x_te[:, perms[t]]
        with torch.no_grad():
            given.append((logits(x, weights, learned[t]).argmax(1) == y_te).float().mean().item())
        grads = torch.cat([entropy_gradients(part, weights, learned) for part in x.split(100)])
        inferred.append(((-grads).argmax(1) == t).float().mean().item())
    return {"task_given": given, "inference": inferred}


def entropy_gradients(x: torch.Tensor, weights: list, learned: list) -> torch.Tensor:
    """[B, k]: for each image alone, dH/dalpha_i at alpha = 1/k, H the entropy of the network
    with the masks superposed, `sum_i alpha_i M_i` (`learned[i]`: task i's per-layer masks)."""

    def entropy(alpha, image):
        superposed = [sum(a * m[i] for a, m in zip(alpha, learned)) for i in range(len(weights))]
        z = logits(image[None], weights, superposed)[0]
        return -(z.softmax(0) * z.log_softmax(0)).sum()

    alpha = torch.full((len(learned),), 1.0 / len(learned), dtype=x.dtype)
    return torch.func.vmap(torch.func.grad(entropy), in_dims=(None, 0))(alpha, x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, help="folder holding MNIST/raw")
    ap.add_argument("--seeds", default="0", help="e.g. 0-2")
    ap.add_argument("--normalize", action="store_true", help="standardize pixels as their notebook does")
    ap.add_argument("--mask", default="threshold", choices=["threshold", "topk"])
    args = ap.parse_args()
    lo, _, hi = args.seeds.partition("-")
    given, inferred = [], []
    for seed in range(int(lo), int(hi or lo) + 1):
        r = run(args.root, seed, args.normalize, args.mask)
        given.append(100 * statistics.mean(r["task_given"]))
        inferred.append(100 * statistics.mean(r["inference"]))
        print(f"seed {seed}: task given {given[-1]:.2f}  (per task {[round(100 * a, 2) for a in r['task_given']]}); "
              f"task inference {inferred[-1]:.2f} (per task {[round(100 * a, 2) for a in r['inference']]})")
    print(f"mean over {len(given)} seeds: task given {statistics.mean(given):.2f}, task inference {statistics.mean(inferred):.2f}")


if __name__ == "__main__":
    main()
