"""iCaRL on S-MNIST as Mammoth trains it, in plain PyTorch, with switches for where `continual`'s differs.

A cross-check for the iCaRL rows of `configs/compare/buzzega2020_seq_mnist.yaml` that shares no
code with `continual`: it follows aimagelab/mammoth's `models/icarl.py` and `utils/buffer.py`
(`icarl_replay`): a 784-100-100-10 MLP, plain SGD at lr 0.1, one pass over each task at batch 10,
the exemplars appended to each later task's training set; binary cross-entropy over the outputs of
the classes seen, the old classes' targets being the old network's sigmoid outputs; after each
task the old classes' exemplar sets cut to their first m = K // classes seen and m exemplars per
new class chosen by herding; classification by the nearest class mean of the exemplars' features.

Three switches, each Mammoth's way by default and `continual`'s `icarl` the other (whose replay
of a share of exemplars with each batch is, on average, the loop's appended exemplars):
  --features raw | normalized   herding and the nearest mean on the last hidden layer's features as
                                they are (Mammoth) or L2-normalised, the class means re-normalised (the paper, ours);
  --bce mean | sum              the cross-entropy averaged over samples and classes (Mammoth) or summed
                                over the classes seen and averaged over samples (ours);
  --means halving | exact       a class mean taken batch by batch as `m = (m + batch mean) / 2` (Mammoth's
                                `compute_class_means`, batches of 10) or the mean of all its exemplars (ours).

    python repro/icarl_loop.py --root ../shared/data --buffer 500 --seeds 0-2 --features normalized --bce sum --means exact
"""

from __future__ import annotations

import argparse
import copy
import statistics

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from buzzega2020_loop import N_TASKS, PER_TASK, load


class MLP(nn.Module):
    def __init__(self, hidden=(100, 100)):
        super().__init__()
        widths = [784, *hidden]
        self.body = nn.Sequential(*[m for a, b in zip(widths[:-1], widths[1:]) for m in (nn.Linear(a, b), nn.ReLU())])
        self.head = nn.Linear(widths[-1], N_TASKS * PER_TASK)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def herd(feats: torch.Tensor, m: int) -> list[int]:
    """Mammoth's herding: the row whose addition brings the running average closest to the mean."""
    feats, target, running, chosen = feats.clone(), feats.mean(0, keepdim=True), torch.zeros(1, feats.shape[1]), []
    for i in range(min(m, len(feats))):
        k = int((target - (feats + running) / (i + 1)).norm(2, 1).argmin())
        chosen.append(k)
        running += feats[k:k + 1]
        feats[k] += 1e6  # never again
    return chosen


def class_mean(feats: torch.Tensor, how: str, batch: int = 10) -> torch.Tensor:
    if how == "exact":
        return feats.mean(0)
    mean = None
    for chunk in feats.split(batch):
        mean = chunk.mean(0) if mean is None else (mean + chunk.mean(0)) / 2
    return mean


def run(data, seed: int, buffer: int, lr: float = 0.1, batch: int = 10, features: str = "raw", bce: str = "mean",
        means: str = "halving") -> tuple[float, float]:
    """Final (class-IL, task-IL) accuracy averaged over the tasks."""
    (x_tr, y_tr), (x_te, y_te) = data
    np.random.seed(seed)
    torch.manual_seed(seed)
    model, old = MLP(), None
    ex_x, ex_y = x_tr[:0], y_tr[:0]
    eye = torch.eye(N_TASKS * PER_TASK)

    def feats(x: torch.Tensor) -> torch.Tensor:
        f = model.features(x)
        return F.normalize(f, dim=1) if features == "normalized" else f

    for t in range(N_TASKS):
        pc, ac = t * PER_TASK, (t + 1) * PER_TASK
        idx = torch.nonzero((y_tr // PER_TASK) == t).squeeze(1)
        x_task, y_task = torch.cat([x_tr[idx], ex_x]), torch.cat([y_tr[idx], ex_y])  # icarl_replay: exemplars appended
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        for b in torch.randperm(len(y_task)).split(batch):
            x, y = x_task[b], y_task[b]
            out = model(x)[:, :ac]
            targets = eye[y][:, :ac]
            if old is not None:
                with torch.no_grad():
                    targets = torch.cat([torch.sigmoid(old(x))[:, :pc], targets[:, pc:]], 1)
            loss = F.binary_cross_entropy_with_logits(out, targets, reduction="none")
            loss = loss.mean() if bce == "mean" else loss.sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        old = copy.deepcopy(model).eval()
        with torch.no_grad():  # the exemplars: old sets cut to m, m herded per new class
            m = buffer // ac
            keep = [(ex_x[ex_y == c][:m], ex_y[ex_y == c][:m]) for c in range(pc)]
            for c in range(pc, ac):
                xc = x_tr[y_tr == c]
                keep.append((xc[herd(feats(xc), m)], y_tr.new_full((min(m, len(xc)),), c)))
            ex_x, ex_y = torch.cat([k[0] for k in keep]), torch.cat([k[1] for k in keep])
    with torch.no_grad():
        centers = torch.stack([class_mean(feats(ex_x[ex_y == c]), means) for c in range(N_TASKS * PER_TASK)])
        centers = F.normalize(centers, dim=1) if features == "normalized" else centers
        dist = torch.cdist(feats(x_te), centers)
        class_acc, task_acc = [], []
        for t in range(N_TASKS):
            mask = (y_te // PER_TASK) == t
            d = dist[mask]
            class_acc.append((d.argmin(1) == y_te[mask]).float().mean().item())
            task_acc.append((d[:, t * PER_TASK:(t + 1) * PER_TASK].argmin(1) + t * PER_TASK == y_te[mask]).float().mean().item())
    return statistics.fmean(class_acc), statistics.fmean(task_acc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, help="folder holding MNIST/raw")
    ap.add_argument("--buffer", type=int, default=500)
    ap.add_argument("--seeds", default="0", help="e.g. 0-4")
    ap.add_argument("--features", choices=["raw", "normalized"], default="raw")
    ap.add_argument("--bce", choices=["mean", "sum"], default="mean")
    ap.add_argument("--means", choices=["halving", "exact"], default="halving")
    args = ap.parse_args()
    data = load(args.root)
    lo, _, hi = args.seeds.partition("-")
    results = []
    for seed in range(int(lo), int(hi or lo) + 1):
        cil, til = run(data, seed, args.buffer, features=args.features, bce=args.bce, means=args.means)
        results.append((100 * cil, 100 * til))
        print(f"icarl buffer {args.buffer} features={args.features} bce={args.bce} means={args.means} seed {seed}: "
              f"class-IL {results[-1][0]:.2f} task-IL {results[-1][1]:.2f}", flush=True)
    if len(results) > 1:
        for name, column in zip(("class-IL", "task-IL"), zip(*results)):
            print(f"{name}: {statistics.fmean(column):.2f} ± {statistics.stdev(column):.2f} over {len(column)} seeds")


if __name__ == "__main__":
    main()
