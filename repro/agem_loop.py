"""A-GEM on R-MNIST and S-MNIST as Buzzega et al. 2020's code runs it, in plain PyTorch.

A cross-check for the A-GEM rows of `configs/compare/buzzega2020_rot_mnist.yaml` and
`buzzega2020_seq_mnist.yaml` that shares no code with `continual`. It follows the paper's own
code, the first commit of aimagelab/mammoth (7ab9db9: `models/agem.py`, `models/gem.py`,
`utils/buffer.py`, `datasets/rot_mnist.py`, `datasets/seq_mnist.py`, `utils/training.py`,
`utils/best_args.py`): a 784-100-100-10 MLP; plain SGD, one pass over each task. Each step: the
gradient g of the batch's cross-entropy (over all 10 outputs); once the memory holds samples, the
gradient g_ref of the cross-entropy of `--minibatch` distinct memory samples, and g replaced by
g - (g.g_ref / g_ref.g_ref) g_ref when g.g_ref < 0. At each task's end `buffer // tasks` random
samples of the task join the memory. `--method sgd` is the same loop with no memory.

  --stream rot  20 tasks, each MNIST rotated by an angle drawn uniformly from [0, 180) when the
                task starts (batch 128); accuracy on each task's test set under its own angle,
                averaged over the tasks (domain-IL);
  --stream seq  5 tasks of 2 digits (0-1, 2-3, ...; batch 10); accuracy on each task's test
                digits by the argmax over all 10 outputs, averaged over the tasks (class-IL).

The rotation is torchvision's on the uint8 tensors (nearest pixel, corners filled with 0), where
theirs rotates PIL images (also nearest, filled with 0): pixels on the edges may differ. One torch
thread (OMP_NUM_THREADS=1): on a 2-core machine shared with other jobs two threads ran 100x slower.

    OMP_NUM_THREADS=1 python repro/agem_loop.py --root ../shared/data --stream rot --buffer 200 --lr 0.1 --seeds 0-4
    OMP_NUM_THREADS=1 python repro/agem_loop.py --root ../shared/data --stream seq --buffer 5120 --lr 0.1 --batch 10 --seeds 0-4
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torchvision.datasets import MNIST
from torchvision.transforms import InterpolationMode
from torchvision.transforms.functional import rotate

def load(root: str):
    """uint8 images [N, 1, 28, 28] and labels, train and test."""
    return [(ds.data.unsqueeze(1), ds.targets.long()) for ds in (MNIST(root, train=t, download=False) for t in (True, False))]


def rotated(images: torch.Tensor, angle: float) -> torch.Tensor:
    """The images under `angle` degrees, as [N, 784] floats in [0, 1] (their ToTensor after the rotation)."""
    return rotate(images, angle, interpolation=InterpolationMode.NEAREST, fill=0).reshape(len(images), -1).float() / 255


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(784, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(), nn.Linear(100, 10))


def flat_grad(net: nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in net.parameters()])


def tasks(data, stream: str):
    """Each task's (train x, train y, test x, test y), made when the task starts (a rotation's angle is drawn then)."""
    (x_train, y_train), (x_test, y_test) = data
    if stream == "rot":
        for _ in range(20):
            angle = np.random.uniform(0, 180)  # Rotation() of the task's loaders
            yield rotated(x_train, angle), y_train, rotated(x_test, angle), y_test
    else:
        for t in range(5):
            tr, te = (y_train // 2 == t), (y_test // 2 == t)
            yield rotated(x_train[tr], 0.0), y_train[tr], rotated(x_test[te], 0.0), y_test[te]


def run(data, stream: str, method: str, buffer: int, lr: float, minibatch: int, batch: int, seed: int) -> float:
    """ACC (%) after the last task: domain-IL (rot) or class-IL (seq)."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    n_tasks = 20 if stream == "rot" else 5
    net, tests = mlp(), []
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    mem_x, mem_y = torch.empty(0, 784), torch.empty(0, dtype=torch.long)
    for x, y, x_test, y_test in tasks(data, stream):
        tests.append((x_test, y_test))
        for idx in torch.randperm(len(x)).split(batch):
            opt.zero_grad()
            F.cross_entropy(net(x[idx]), y[idx]).backward()
            if method == "agem" and len(mem_x):
                g = flat_grad(net)
                pick = torch.from_numpy(np.random.choice(len(mem_x), size=min(minibatch, len(mem_x)), replace=False))
                opt.zero_grad()
                F.cross_entropy(net(mem_x[pick]), mem_y[pick]).backward()
                g_ref = flat_grad(net)
                dot = g @ g_ref
                if dot < 0:
                    g = g - dot / (g_ref @ g_ref) * g_ref
                for p, new in zip(net.parameters(), g.split([p.numel() for p in net.parameters()])):
                    p.grad.copy_(new.view_as(p))
            opt.step()
        if method == "agem":  # end_task: buffer // tasks samples of the finished task
            pick = torch.randperm(len(x))[: buffer // n_tasks]
            mem_x, mem_y = torch.cat([mem_x, x[pick]]), torch.cat([mem_y, y[pick]])
    with torch.no_grad():
        return statistics.fmean(float((net(xt).argmax(1) == yt).float().mean()) * 100 for xt, yt in tests)


def seeds(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, help="folder holding MNIST/raw")
    ap.add_argument("--stream", choices=["rot", "seq"], default="rot")
    ap.add_argument("--method", choices=["agem", "sgd"], default="agem")
    ap.add_argument("--buffer", type=int, default=200)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--minibatch", type=int, default=128, help="memory samples of g_ref")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seeds", default="0-4", help="e.g. 0-4")
    args = ap.parse_args()
    data = load(args.root)
    accs = []
    for seed in seeds(args.seeds):
        accs.append(run(data, args.stream, args.method, args.buffer, args.lr, args.minibatch, args.batch, seed))
        print(f"seed {seed}: {accs[-1]:.2f}", flush=True)
    spread = statistics.stdev(accs) if len(accs) > 1 else float("nan")
    print(f"{args.stream} {args.method} buffer {args.buffer}: {statistics.fmean(accs):.2f} +- {spread:.2f} over {len(accs)} seed(s)")


if __name__ == "__main__":
    main()
