"""Split-MNIST fine-tuning and LwF as van de Ven & Tolias 2019 train them, in plain PyTorch.

A cross-check for `configs/compare/vandeven2019_split_mnist.yaml` that shares no code with
`continual`: it follows the authors' training loop (GMvandeVen/continual-learning, `train.py`
and `encoder.py`: one Adam for the stream, current-task loss weighted 1/t, LwF's distillation
1 - 1/t, class-IL targets padded with zero probability) and reads MNIST with torchvision.
docs/reproduction.md compares its numbers with the platform's.

    python repro/vandeven2019_loop.py --root ../shared/data --method lwf --scenario class --seeds 0-4
"""

from __future__ import annotations

import argparse
import copy
import statistics

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torchvision.datasets import MNIST


def class_order(seed: int, shuffle: bool) -> list[int]:
    """Digits in task order; shuffled as their data.py does (digit y gets label perm[y])."""
    if not shuffle:
        return list(range(10))
    return np.argsort(np.random.RandomState(seed).permutation(10)).tolist()


def load(root: str, order: list[int]):
    """Images in [0, 1] as [N, 784]; labels renamed so that task t holds labels 2t and 2t+1."""
    label_of = torch.empty(10, dtype=torch.long)
    label_of[torch.tensor(order)] = torch.arange(10)
    out = []
    for train in (True, False):
        ds = MNIST(root, train=train, download=False)
        out.append((ds.data.reshape(len(ds.data), -1).float() / 255, label_of[ds.targets]))
    return out


def outputs(scenario: str, t: int) -> list[int]:
    """Outputs trained while task t (1-based) is learned."""
    return {"task": [2 * t - 2, 2 * t - 1], "domain": [0, 1], "class": list(range(2 * t))}[scenario]


def target(scenario: str, y: torch.Tensor, t: int) -> torch.Tensor:
    return {"task": y - 2 * (t - 1), "domain": y % 2, "class": y}[scenario]


def kd(scores: torch.Tensor, teacher: torch.Tensor, T: float = 2.0, over_classes: str = "sum") -> torch.Tensor:
    """Cross-entropy to the teacher's softened scores, zero-padded to the student's width, x T^2.
    over_classes="mean" is their earlier `utils.loss_fn_kd` (`(-p * log q).mean()` over batch
    and classes: the term divided by the number of outputs); "sum" their later one."""
    p = F.softmax(teacher / T, dim=1)
    p = torch.cat([p, p.new_zeros(len(p), scores.shape[1] - p.shape[1])], dim=1)
    per_sample = -(p * F.log_softmax(scores / T, dim=1))
    per_sample = per_sample.sum(1) if over_classes == "sum" else per_sample.mean(1)
    return per_sample.mean() * T**2


def run(root: str, method: str, scenario: str, seed: int, shuffle: bool, iters: int, batch: int = 128, kd_over_classes: str = "sum") -> float:
    np.random.seed(seed)
    torch.manual_seed(seed)
    (x_tr, y_tr), (x_te, y_te) = load(root, class_order(seed, shuffle))
    n_out = 2 if scenario == "domain" else 10
    model = nn.Sequential(nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 400), nn.ReLU(), nn.Linear(400, n_out))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999))
    previous = None
    for t in range(1, 6):
        idx = torch.nonzero((y_tr // 2) == t - 1).squeeze(1)
        order = torch.empty(0, dtype=torch.long)
        for _ in range(iters):
            if len(order) < batch:  # a new epoch; the last incomplete batch is dropped
                order = idx[torch.randperm(len(idx))]
            b, order = order[:batch], order[batch:]
            x, y = x_tr[b], y_tr[b]
            scores = model(x)
            loss = F.cross_entropy(scores[:, outputs(scenario, t)], target(scenario, y, t))
            if method == "lwf" and previous is not None:
                with torch.no_grad():
                    old = previous(x)
                if scenario == "task":  # each past task's own outputs, one term per task
                    past = [outputs("task", k) for k in range(1, t)]
                    distill = sum(kd(scores[:, o], old[:, o], over_classes=kd_over_classes) for o in past) / len(past)
                else:  # class-IL: the old net's past outputs against every active output
                    distill = kd(scores[:, outputs(scenario, t)], old[:, outputs(scenario, t - 1)], over_classes=kd_over_classes)
                loss = loss / t + (1 - 1 / t) * distill
            opt.zero_grad()
            loss.backward()
            opt.step()
        previous = copy.deepcopy(model).eval()
    with torch.no_grad():
        scores = model(x_te)
        accs = []
        for t in range(1, 6):
            m = (y_te // 2) == t - 1
            allowed = outputs(scenario, t) if scenario == "task" else list(range(n_out))
            pred = torch.tensor(allowed)[scores[m][:, allowed].argmax(1)]
            accs.append((pred == target("class" if scenario == "task" else scenario, y_te[m], t)).float().mean().item())
    return sum(accs) / len(accs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, help="folder holding MNIST/raw")
    ap.add_argument("--method", choices=["none", "lwf"], default="lwf")
    ap.add_argument("--scenario", choices=["task", "domain", "class"], default="class")
    ap.add_argument("--seeds", default="0", help="e.g. 0-4")
    ap.add_argument("--shuffle", action="store_true", help="their random class order per seed")
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--kd-over-classes", choices=["sum", "mean"], default="sum", help="mean: their earlier loss_fn_kd")
    args = ap.parse_args()
    lo, _, hi = args.seeds.partition("-")
    accs = []
    for seed in range(int(lo), int(hi or lo) + 1):
        accs.append(100 * run(args.root, args.method, args.scenario, seed, args.shuffle, args.iters, kd_over_classes=args.kd_over_classes))
        print(f"{args.method} {args.scenario}-IL seed {seed}: ACC {accs[-1]:.2f}", flush=True)
    if len(accs) > 1:
        print(f"mean {statistics.fmean(accs):.2f} ± {statistics.stdev(accs):.2f} over {len(accs)} seeds")


if __name__ == "__main__":
    main()
