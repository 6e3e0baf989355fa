"""DER++ on S-MNIST as Buzzega et al. 2020 train it, in plain PyTorch.

A cross-check for `configs/compare/buzzega2020_seq_mnist.yaml` that shares no code with
`continual`: it follows their training loop (aimagelab/mammoth, `models/derpp.py`, `utils/buffer.py`,
`datasets/seq_mnist.py`): a 784-100-100-10 MLP, plain SGD, one pass over each task at batch 10;
each step the cross-entropy of the batch, plus `alpha` times the MSE between the logits of a
buffer batch and its stored logits, plus `beta` times the cross-entropy of a second, independent
buffer batch; then the batch is offered to a reservoir buffer with the logits of this step's
forward pass (before the update). One run gives both numbers, as theirs does: class-IL over all
outputs of the tasks seen, task-IL with each test sample's own task's outputs only.

Two things are pluggable so that tests/test_repro_loop.py can feed the platform's random draws
and check the algorithm step for step: the order each task's samples come in (`order`) and the
buffer's draws (`draws`); by default both are their code's (a shuffled loader, numpy draws).
`train_mask="seen"` restricts the cross-entropy to the classes seen so far (the platform's
class-IL rule); their code uses every output ("all").

    python repro/buzzega2020_loop.py --root ../shared/data --buffer 500 --alpha 1.0 --beta 0.5 --lr 0.03 --minibatch 10 --seeds 0-4
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torchvision.datasets import MNIST

N_TASKS, PER_TASK = 5, 2


def load(root: str):
    """Images in [0, 1] as [N, 784] (their transform is ToTensor only) and labels, train and test."""
    out = []
    for train in (True, False):
        ds = MNIST(root, train=train, download=False)
        out.append((ds.data.reshape(len(ds.data), -1).float() / 255, ds.targets.long()))
    return out


class NumpyDraws:
    """Their buffer's randomness: a reservoir slot per offered sample (`np.random.randint`), a
    replay batch of distinct samples (`np.random.choice(..., replace=False)`)."""

    def slots(self, seen: int, n: int) -> list[int]:
        return [seen + k if seen + k < self.size else np.random.randint(0, seen + k + 1) for k in range(n)]

    def batch(self, held: int, n: int) -> torch.Tensor:
        return torch.from_numpy(np.random.choice(held, size=min(n, held), replace=False))


class Reservoir:
    """Samples, labels and logits; sample number i (0-based) takes slot i while there is room,
    then slot `draws.slots(...)` if that is < size (a later sample in a batch wins a shared slot)."""

    def __init__(self, size: int, draws):
        self.size, self.seen, self.draws = size, 0, draws
        draws.size = size
        self.x = self.y = self.logits = None

    def __len__(self) -> int:
        return min(self.seen, self.size)

    def add(self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> None:
        if self.x is None:
            self.x, self.y, self.logits = x.new_zeros(self.size, x.shape[1]), y.new_zeros(self.size), logits.new_zeros(self.size, logits.shape[1])
        for k, slot in enumerate(self.draws.slots(self.seen, len(x))):
            if slot < self.size:
                self.x[slot], self.y[slot], self.logits[slot] = x[k], y[k], logits[k]
        self.seen += len(x)

    def sample(self, n: int):
        i = self.draws.batch(len(self), n)
        return self.x[i], self.y[i], self.logits[i]


def shuffled(task: int, n: int) -> torch.Tensor:
    """Their loader's order: a fresh shuffle of the task's samples (one epoch)."""
    return torch.randperm(n)


def run(data, seed: int, buffer: int, alpha: float, beta: float, lr: float, minibatch: int, batch: int = 10,
        hidden=(100, 100), n_tasks: int = N_TASKS, order=None, draws=None, train_mask: str = "all"):
    """Final (class-IL, task-IL) accuracy averaged over tasks, and the per-task class-IL accuracies."""
    (x_tr, y_tr), (x_te, y_te) = data
    np.random.seed(seed)
    torch.manual_seed(seed)
    widths = [784, *hidden]
    layers = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(widths[-1], N_TASKS * PER_TASK))
    order = order or shuffled
    memory = Reservoir(buffer, draws or NumpyDraws())
    for t in range(n_tasks):
        idx = torch.nonzero((y_tr // PER_TASK) == t).squeeze(1)
        opt = torch.optim.SGD(model.parameters(), lr=lr)  # a fresh optimizer per task, as theirs
        seen = torch.zeros(N_TASKS * PER_TASK, dtype=torch.bool)
        seen[: (t + 1) * PER_TASK] = True
        for b in idx[order(t, len(idx))].split(batch):
            x, y = x_tr[b], y_tr[b]
            out = model(x)
            scores = out if train_mask == "all" else out.masked_fill(~seen, float("-inf"))
            loss = F.cross_entropy(scores, y)
            if len(memory):  # their two draws, in their order: logits first, then labels
                bx, _, blogits = memory.sample(minibatch)
                loss = loss + alpha * F.mse_loss(model(bx), blogits)
                bx, by, _ = memory.sample(minibatch)
                replayed = model(bx)
                replayed = replayed if train_mask == "all" else replayed.masked_fill(~seen, float("-inf"))
                loss = loss + beta * F.cross_entropy(replayed, by)
            opt.zero_grad()
            loss.backward()
            opt.step()
            memory.add(x, y, out.detach())
    with torch.no_grad():
        scores = model(x_te)
        class_acc, task_acc = [], []
        for t in range(n_tasks):
            m = (y_te // PER_TASK) == t
            s = scores[m][:, : n_tasks * PER_TASK]
            class_acc.append((s.argmax(1) == y_te[m]).float().mean().item())
            own = s[:, t * PER_TASK:(t + 1) * PER_TASK]
            task_acc.append((own.argmax(1) + t * PER_TASK == y_te[m]).float().mean().item())
    return statistics.fmean(class_acc), statistics.fmean(task_acc), class_acc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, help="folder holding MNIST/raw")
    ap.add_argument("--buffer", type=int, default=500)
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--beta", type=float, default=0.5)
    ap.add_argument("--lr", type=float, default=0.03)
    ap.add_argument("--minibatch", type=int, default=10, help="buffer samples per draw (their minibatch_size)")
    ap.add_argument("--seeds", default="0", help="e.g. 0-4")
    ap.add_argument("--train-mask", choices=["all", "seen"], default="all", help="seen: the platform's class-IL cross-entropy")
    args = ap.parse_args()
    data = load(args.root)
    lo, _, hi = args.seeds.partition("-")
    results = []
    for seed in range(int(lo), int(hi or lo) + 1):
        cil, til, _ = run(data, seed, args.buffer, args.alpha, args.beta, args.lr, args.minibatch, train_mask=args.train_mask)
        results.append((100 * cil, 100 * til))
        print(f"derpp buffer {args.buffer} ({args.train_mask}) seed {seed}: class-IL {results[-1][0]:.2f} task-IL {results[-1][1]:.2f}", flush=True)
    if len(results) > 1:
        for name, column in zip(("class-IL", "task-IL"), zip(*results)):
            print(f"{name}: {statistics.fmean(column):.2f} ± {statistics.stdev(column):.2f} over {len(column)} seeds")


if __name__ == "__main__":
    main()
