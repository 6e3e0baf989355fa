"""The feature-stream row of `python -m bench`: a run on cached features (`backbone.name=conv`,
`data.features=true`) against the same method on raw inputs of the same width (the very feature
tensors, handed over as a plain stream of vectors with `backbone.name=mlp`), and the time spent
extracting in the first run (cold cache) and in every later one (it must be none).

The cache goes to a temporary data root whose entries link to the real one's (also its
`data.cache_dir`), so a read-only data folder is never written and the first run finds no cache.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import torch

from bench import workloads
from bench.timing import repeat, summary
from continual.data.streams import Stream, Task
from continual.features import extract as extraction

SPLITS = ("train", "val", "test")
_SAVED: dict = {}  # the path `saved_features` reads: set by `feature_rows` (the runs are in-process)


def saved_features(cfg, seed):
    """the feature tensors of the cached run, given as raw inputs (flat vectors of the same width)"""
    s = torch.load(_SAVED["path"], weights_only=True)
    tasks = [Task(i, t["classes"], t["labels"], *(t[f"{k}_{split}"] for split in SPLITS for k in "xy")) for i, t in enumerate(s["tasks"])]
    return Stream(s["name"], tasks, tasks[0].x_train.shape[1], s["n_classes"])


def _linked_root(root: str) -> str:
    """A fresh folder whose entries are links to `root`'s (the data), with room for features/."""
    linked = Path(tempfile.mkdtemp(prefix="bench_features_"))
    if Path(root).is_dir():
        for entry in Path(root).iterdir():
            if entry.name != "features":
                (linked / entry.name).symlink_to(entry.resolve())
    return str(linked)


class _ExtractionTimer:
    """Seconds spent in the extractor's passes while active (wraps `continual.features.extract.extract`)."""

    def __enter__(self):
        self.seconds, self._real = 0.0, extraction.extract

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return self._real(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        extraction.extract = timed
        return self

    def __exit__(self, *exc):
        extraction.extract = self._real


def feature_rows(config: str, overrides: list[str], repeats: int, device: str) -> dict:
    root = next((o.split("=", 1)[1] for o in reversed(overrides) if o.startswith("data.root=")), "data")
    linked = _linked_root(root)
    feats = workloads.config(config, [*overrides, f"data.root={linked}", f"data.cache_dir={linked}", "backbone.name=conv", "data.features=true"])
    rows = {}
    with _ExtractionTimer() as first:
        r = repeat(lambda: workloads.platform(feats), 1, device)
    rows["features_first"] = {**r, "extraction_s": first.seconds}
    from continual.features import load_stream

    stream = load_stream(feats)  # from the cache
    _SAVED["path"] = Path(linked) / "features_as_raw.pt"
    torch.save({"name": stream.name, "n_classes": stream.n_classes, "tasks": [
        {"classes": t.classes, "labels": t.labels, **{f"{k}_{s}": getattr(t, f"{k}_{s}") for s in SPLITS for k in "xy"}} for t in stream.tasks
    ]}, _SAVED["path"])
    raw = workloads.config(config, [*overrides, "data.stream=bench.features:saved_features", "backbone.name=mlp"])
    later, plain = [], []
    with _ExtractionTimer() as timer:
        for _ in range(repeats):  # interleaved: a machine whose load drifts slows both alike
            later.append(repeat(lambda: workloads.platform(feats), 1, device))
            plain.append(repeat(lambda: workloads.platform(raw), 1, device))
    rows["features"] = {**_merged(later), "extraction_s": timer.seconds}
    rows["raw_width"] = _merged(plain)
    for name, row in rows.items():
        accs = row.pop("result")
        row["final_acc"] = sum(accs[-1]) / len(accs[-1])
    shutil.rmtree(linked)  # the links, the cache and the saved tensors: nothing of the row stays behind
    rows["width"] = stream.n_features
    rows["ratio"] = rows["features"]["wall_s"]["median"] / rows["raw_width"]["wall_s"]["median"]
    return rows


def _merged(runs: list[dict]) -> dict:
    """One row from single repeats: the wall-time summary over all, the highest peak, the last result."""
    return {"wall_s": summary([r["wall_s"]["median"] for r in runs]), "peak_mem_mb": max(r["peak_mem_mb"] for r in runs),
            "result": runs[-1]["result"]}


def table(rows: dict) -> str:
    lines = [f"{'run (conv features, D=' + str(rows['width']) + ')':<34} {'wall s median [min-max]':>24} {'extracting s':>13} {'acc':>6}"]
    for name, what in (("features_first", "first run: extracts, writes cache"), ("features", "later runs: read the cache"),
                       ("raw_width", "raw inputs of the same width")):
        r = rows[name]
        w = r["wall_s"]
        extracting = f"{r['extraction_s']:.2f}" if "extraction_s" in r else "-"
        lines.append(f"{what:<34} {w['median']:>8.2f} [{w['min']:.2f}-{w['max']:.2f}]".ljust(59) + f" {extracting:>13} {100 * r['final_acc']:>6.1f}")
    lines.append(f"cached features over raw inputs of the same width: {rows['ratio']:.2f} x (target <= 1.1)")
    return "\n".join(lines)
