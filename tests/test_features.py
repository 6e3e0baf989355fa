"""Backbones as frozen feature extractors and the feature streams they give every method: the
torchvision networks on small images made here (random weights: nothing downloads), `conv` on
digits, `conv1d` on a sequence stream built here, the feature cache (read back, rebuilt when the
weights change or the file is corrupt), resume and DDP of runs on features."""

import json
import subprocess
import sys

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf

from continual import load_config, run
from continual.cli.main import main
from continual.data.custom import stream_from_tensors
from continual.data.streams import Stream, build_stream
from continual.data.streams.check import check_stream
from continual.errors import CheckpointError, ConfigError, DataError
from continual.features import extract as extraction, extract_features, load_stream
from continual.models.backbones import build_extractor, state_hash
from helpers import QUICK, QUIET, comparable, read_only_folder


def config(*overrides: str):
    return load_config(None, list(overrides))


def images(n: int, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def calls(monkeypatch):
    """How many times the extractor ran over a task's split (the cache's reads cost none)."""
    counted = []
    real = extraction.extract

    def counting(*args, **kwargs):
        counted.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(extraction, "extract", counting)
    return counted


# ---- the extractors ----


@pytest.mark.parametrize("name, shape, width", [
    ("resnet18", (3, 32, 32), 512),
    ("resnet18", (1, 28, 28), 512),  # grey: repeated to the three channels its stem takes
    ("vit_b_16", (1, 20, 20), 768),  # grey, resized to 32 (the next multiple of the 16-pixel patch): 2x2 patches
    ("conv", (1, 8, 8), 256),
    ("conv", (3, 32, 32), 256),
    ("conv1d", (1, 40), 256),
    ("conv1d", (40,), 256),  # a flat sequence is one channel
    ("mlp", (1, 28, 28), 784),
])
def test_extractors_give_frozen_features_of_their_width(name, shape, width):
    cfg = config(f"backbone.name={name}")
    net = build_extractor(cfg, shape)
    before = state_hash(net)
    x = images(3, shape)
    with torch.inference_mode():
        out = net(x)
    assert out.shape == (3, width) and torch.isfinite(out).all()
    assert not net.training and all(not p.requires_grad for p in net.parameters())
    assert state_hash(net) == before  # eval mode: batch norm's running statistics do not move
    if name in ("conv", "conv1d"):  # seeded: the same seed builds the same extractor, another seed another one
        assert state_hash(build_extractor(cfg, shape)) == before
        assert state_hash(build_extractor(config(f"backbone.name={name}", "seed=1"), shape)) != before


def test_building_an_extractor_leaves_the_global_random_state_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    build_extractor(config("backbone.name=conv"), (1, 8, 8))
    assert torch.equal(torch.rand(3), expected)


def test_an_extractor_for_the_wrong_kind_of_input_is_one_line(capsys):
    assert main(["fit", "backbone.name=conv1d", *QUIET]) == 2  # digits are images
    err = capsys.readouterr().err
    assert err.startswith("continual: error: backbone.name=conv1d needs sequences") and err.count("\n") == 1


# ---- the feature stream ----


def test_feature_stream_is_the_extractor_applied_to_every_split(calls):
    """Each task's splits become extractor(x) (checked against one call on the whole split),
    whatever the extraction batch; labels and classes stay."""
    cfg = config("backbone.name=conv", "data.eval_batch_size=50")
    raw = build_stream(cfg.data, cfg.seed)
    assert raw.input_shape == (1, 8, 8) and raw.n_features == 64
    feats = extract_features(cfg, raw)
    assert len(calls) == 3 * len(raw)  # once per task and split, never per sample
    net = build_extractor(cfg, raw.input_shape)
    assert feats.input_shape == (256,) and feats.n_features == 256 and feats.task_classes == raw.task_classes
    assert feats.name == raw.name and feats.meta == raw.meta and feats.n_classes == raw.n_classes
    for t, f in zip(raw.tasks, feats.tasks):
        for split in ("train", "val", "test"):
            with torch.inference_mode():
                expected = net(t.split(split)[0])
            assert torch.allclose(f.split(split)[0], expected, atol=1e-5) and f.split(split)[0].shape[1] == 256
            assert f.split(split)[1] is t.split(split)[1]
    check_stream(feats)


def test_mlp_sees_the_pixels_themselves_without_a_copy():
    cfg = config()
    raw = build_stream(cfg.data, cfg.seed)
    flat = extract_features(cfg, raw)
    x, f = raw.tasks[1].x_train, flat.tasks[1].x_train
    assert f.shape == (len(x), 64) and f.data_ptr() == x.data_ptr() and torch.equal(f, x.reshape(len(x), 64))


def test_conv1d_learns_a_sequence_stream(tmp_path, monkeypatch):
    """A stream of 40-step sequences (a bump whose position is the class) built here, through
    `conv1d`: the run learns each task (task-IL: two classes, chance 0.5)."""
    (tmp_path / "seqstreams.py").write_text(
        "import torch\nfrom continual.data.custom import stream_from_tensors\n"
        "def bumps(cfg, seed):\n"
        "    g = torch.Generator().manual_seed(seed)\n"
        "    y = torch.arange(600) % 4\n"
        "    x = 0.3 * torch.randn(600, 1, 40, generator=g)\n"
        "    x[torch.arange(600), 0, 5 + 8 * y] += 3.0\n"
        "    return stream_from_tensors('bumps', x[:400], y[:400], x[400:], y[400:], cfg, seed)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    stream = build_stream(config("data.stream=seqstreams:bumps").data, 0)
    assert stream.input_shape == (1, 40) and len(stream) == 2
    out = tmp_path / "run"
    assert main(["fit", "data.stream=seqstreams:bumps", "backbone.name=conv1d", "trainer.max_epochs=5", f"output_dir={out}", *QUIET]) == 0
    acc = json.loads((out / "metrics.json").read_text())["accuracy_matrix"]
    assert min(acc[t][t] for t in range(2)) > 0.8


def test_a_stream_whose_shape_disagrees_is_one_line():
    cfg = config()
    s = build_stream(cfg.data, cfg.seed)
    bad = Stream(s.name, s.tasks, 64, s.n_classes, input_shape=(64,))  # the tensors are [N, 1, 8, 8]
    with pytest.raises(DataError, match=r"x_train has shape \(\d+, 1, 8, 8\), not \[samples, n_features=64\]"):
        check_stream(bad)
    with pytest.raises(DataError, match=r"input_shape=\(1, 8, 9\) but n_features=64, not their product 72"):
        check_stream(Stream(s.name, s.tasks, 64, s.n_classes, input_shape=(1, 8, 9)))
    flat = stream_from_tensors("flat", torch.rand(40, 5), torch.arange(40) % 4, torch.rand(8, 5), torch.arange(8) % 4, cfg.data)
    assert flat.input_shape == (5,) and flat.n_features == 5  # user streams of vectors: as before


# ---- the cache ----


def test_second_extraction_reads_the_cache(tmp_path, calls):
    cfg = config("backbone.name=conv", "data.features=true", f"data.root={tmp_path}")
    raw = build_stream(cfg.data, cfg.seed)
    first = extract_features(cfg, raw)
    assert len(calls) == 3 * len(raw) and len(list((tmp_path / "features").glob("*.pt"))) == 3  # one file per split
    second = extract_features(cfg, build_stream(cfg.data, cfg.seed))
    assert len(calls) == 3 * len(raw)  # nothing extracted again
    for a, b in zip(first.tasks, second.tasks):
        assert all(torch.equal(a.split(s)[0], b.split(s)[0]) for s in ("train", "val", "test"))
    # another seed cuts other splits: other inputs, other files
    extract_features(OmegaConf.merge(cfg, {"seed": 1}), build_stream(cfg.data, 1))
    assert len(calls) == 6 * len(raw) and len(list((tmp_path / "features").glob("*.pt"))) == 6


def test_cache_is_rebuilt_when_the_weights_file_changes(tmp_path, calls):
    """Two state_dict files of the conv extractor: each run's features are the ones of its file,
    and switching files back reads the first file's cache."""
    files = []
    for seed in (1, 2):
        net = build_extractor(config("backbone.name=conv", f"seed={seed}"), (1, 8, 8))
        files.append(tmp_path / f"conv{seed}.pt")
        torch.save(net.state_dict(), files[-1])
    base = ["backbone.name=conv", "data.features=true", f"data.root={tmp_path}"]
    raw = build_stream(config().data, 0)
    one = extract_features(config(*base, f"backbone.weights={files[0]}"), raw)
    n = len(calls)
    two = extract_features(config(*base, f"backbone.weights={files[1]}"), raw)
    assert len(calls) == 2 * n  # a new key: extracted again
    assert not torch.equal(one.tasks[0].x_test, two.tasks[0].x_test)
    net = build_extractor(config("backbone.name=conv", "seed=1"), (1, 8, 8))
    with torch.inference_mode():
        assert torch.allclose(one.tasks[0].x_test, net(raw.tasks[0].x_test), atol=1e-5)  # file 1's weights, not the run's seed's
    again = extract_features(config(*base, f"backbone.weights={files[0]}"), raw)
    assert len(calls) == 2 * n and torch.equal(again.tasks[0].x_test, one.tasks[0].x_test)


def test_a_corrupt_cache_file_is_rebuilt_with_a_warning(tmp_path, calls):
    cfg = config("backbone.name=conv", "data.features=true", f"data.root={tmp_path}")
    raw = build_stream(cfg.data, cfg.seed)
    first = extract_features(cfg, raw)
    (test_file,) = (tmp_path / "features").glob("*-test-*.pt")
    test_file.write_bytes(test_file.read_bytes()[:100])
    n = len(calls)
    with pytest.warns(UserWarning, match="feature cache file .* is unreadable or corrupt .*; rebuilding it"):
        again = extract_features(cfg, raw)
    assert len(calls) == n + len(raw)  # the test split only
    assert torch.equal(again.tasks[2].x_test, first.tasks[2].x_test)
    digest = test_file.stem.rsplit("-", 1)[1]
    entry = torch.load(test_file, weights_only=True)  # rewritten whole
    assert entry["key"].startswith(digest) and [len(y) for y in entry["labels"]] == [len(t.y_test) for t in raw.tasks]


def mnist_files(root, seed=0):
    """A tiny MNIST (40 train, 20 test images) in the IDX files the real loader reads."""
    from test_streams_extra import write_idx

    write_idx(root / "MNIST" / "raw", seed=seed)
    return root / "MNIST" / "raw" / "train-images-idx3-ubyte"


def on_mnist(root, *overrides):
    return config("data.stream=split_mnist", f"data.root={root}", "backbone.name=conv", "data.features=true",
                  "data.val_fraction=0.25", *overrides)


def test_a_cache_hit_never_builds_the_raw_stream(tmp_path, calls, monkeypatch):
    """Every split cached: the run's stream is read back whole (labels, classes, meta) without
    reading the data set, and its features are the extractor's on the raw samples."""
    mnist_files(tmp_path)
    cfg = on_mnist(tmp_path)
    first = load_stream(cfg)
    n = len(calls)
    raw = build_stream(cfg.data, cfg.seed)

    def refused(*args):
        raise AssertionError("the raw stream was built")

    monkeypatch.setattr(extraction, "build_stream", refused)
    for same in (cfg, on_mnist(tmp_path, "data.eval_batch_size=7", "data.batch_size=3", "data.eval_split=val")):  # keys that cut no sample
        hit = load_stream(same)
        assert len(calls) == n
        assert (hit.name, hit.n_classes, hit.meta, hit.input_shape) == (raw.name, raw.n_classes, raw.meta, (256,))
        net = build_extractor(cfg, raw.input_shape)
        for r, f, h in zip(raw.tasks, first.tasks, hit.tasks):
            assert (h.id, h.classes, h.labels) == (r.id, r.classes, r.labels)
            for split in ("train", "val", "test"):
                with torch.inference_mode():
                    expected = net(r.split(split)[0])
                assert torch.allclose(h.split(split)[0], expected, atol=1e-5) and torch.equal(h.split(split)[0], f.split(split)[0])
                assert torch.equal(h.split(split)[1], r.split(split)[1])
    with pytest.raises(AssertionError, match="the raw stream was built"):  # a key that cuts other samples: a miss
        load_stream(on_mnist(tmp_path, "data.val_fraction=0.5"))


def test_a_cached_stream_is_refused_as_the_built_one_would_be(tmp_path, monkeypatch):
    """data.eval_split decides no sample (not in the key): scoring on an empty val split is refused
    with the message building the stream gives."""
    cfg = config("backbone.name=conv", "data.features=true", f"data.root={tmp_path}", "data.val_fraction=0")
    load_stream(cfg)
    monkeypatch.setattr(extraction, "build_stream", lambda *args: pytest.fail("the raw stream was built"))
    with pytest.raises(ConfigError, match=r"^task 1 \(classes \[0, 1\]\) of split_digits has no val samples to evaluate; raise data.val_fraction$"):
        load_stream(OmegaConf.merge(cfg, {"data": {"eval_split": "val"}}))


def test_cache_is_rebuilt_when_a_source_file_changes(tmp_path, calls):
    """The stream's files are keyed by path, size and modification time: new contents (other images)
    or a touched file are a new key; the features are then those of the new images."""
    import os

    images = mnist_files(tmp_path / "a")
    cfg = on_mnist(tmp_path / "a")
    before = load_stream(cfg)
    n = len(calls)
    load_stream(cfg)
    assert len(calls) == n  # unchanged: read back
    mnist_files(tmp_path / "b", seed=1)
    images.write_bytes((tmp_path / "b" / "MNIST" / "raw" / images.name).read_bytes())  # same size, other images
    st = images.stat()
    os.utime(images, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # a clock too coarse to tell writes apart, made safe
    after = load_stream(cfg)
    assert len(calls) == 2 * n  # extracted again
    net = build_extractor(cfg, (1, 28, 28))
    with torch.inference_mode():
        assert torch.allclose(after.tasks[0].x_train, net(build_stream(cfg.data, cfg.seed).tasks[0].x_train), atol=1e-5)
    assert not torch.equal(after.tasks[0].x_train, before.tasks[0].x_train)
    os.utime(images, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000))  # the same bytes, touched: rebuilt (to the same features)
    again = load_stream(cfg)
    assert len(calls) == 3 * n and torch.equal(again.tasks[0].x_train, after.tasks[0].x_train)


def test_cache_is_rebuilt_when_the_weights_file_is_overwritten(tmp_path, calls):
    """One weights path, new contents, its size and time put back: the key finds the old files, and
    the extractor's fingerprint inside them no longer matches."""
    import os

    files = []
    for seed in (1, 2):
        files.append(tmp_path / f"conv{seed}.pt")
        torch.save(build_extractor(config("backbone.name=conv", f"seed={seed}"), (1, 8, 8)).state_dict(), files[-1])
    cfg = config("backbone.name=conv", "data.features=true", f"data.root={tmp_path}", f"backbone.weights={files[0]}")
    one = load_stream(cfg)
    n = len(calls)
    st = files[0].stat()
    files[0].write_bytes(files[1].read_bytes())
    os.utime(files[0], ns=(st.st_atime_ns, st.st_mtime_ns))
    two = load_stream(cfg)
    assert len(calls) == 2 * n and len(list((tmp_path / "features").glob("*.pt"))) == 3  # the same files, rewritten
    net = build_extractor(config("backbone.name=conv", "seed=2"), (1, 8, 8))
    with torch.inference_mode():
        assert torch.allclose(two.tasks[0].x_test, net(build_stream(cfg.data, cfg.seed).tasks[0].x_test), atol=1e-5)
    assert not torch.equal(one.tasks[0].x_test, two.tasks[0].x_test)


def nan_extractor(cfg, input_shape):
    """an extractor whose features are NaN (backbone.name=test_features:nan_extractor)"""
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 8))
    with torch.no_grad():
        net[1].weight.fill_(float("nan"))
    return net


def test_non_finite_features_are_one_line_and_never_cached(tmp_path, capsys):
    code = main(["fit", "backbone.name=test_features:nan_extractor", "data.features=true", f"data.root={tmp_path}",
                 f"output_dir={tmp_path / 'run'}", *QUIET])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("continual: error: backbone.name=test_features:nan_extractor with backbone.weights=none (random) gives "
                          "non-finite features (NaN or inf) on task 1's train split; fix the extractor or give other backbone.weights")
    assert not (tmp_path / "features").exists() and not (tmp_path / "run").exists()


def test_a_read_only_cache_folder_is_refused_before_any_extraction(tmp_path, calls, capsys):
    """A shared data set's folder (mode 0555) as the cache: refused before the first split is
    extracted (not after minutes of extraction), with the key that moves the cache; root, who
    could write there, must not either."""
    with read_only_folder(tmp_path / "shared") as shared:
        code = main(["fit", "backbone.name=conv", "data.features=true", f"data.root={shared}", f"output_dir={tmp_path / 'run'}", *QUIET])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1, err
        assert err.startswith(f"continual: error: cannot cache the train features under '{shared / 'features'}': '{shared}' is ")
        assert err.endswith("; set data.cache_dir=<a writable folder> (data.root is only read)\n")
        assert calls == [] and list(shared.iterdir()) == [] and not (tmp_path / "run").exists()
        assert main(["fit", "backbone.name=conv", "data.features=true", f"data.root={shared}", f"data.cache_dir={tmp_path / 'cache'}",
                     f"output_dir={tmp_path / 'run'}", *QUICK]) == 0  # the fix the line names
        assert list(shared.iterdir()) == [] and len(list((tmp_path / "cache" / "features").glob("*.pt"))) == 3


def test_wrong_weights_file_is_one_line(tmp_path):
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="does not fit the extractor: '0.weight' is missing"):
        build_extractor(config("backbone.name=conv", f"backbone.weights={tmp_path / 'other.pt'}"), (1, 8, 8))


def test_named_torchvision_weights_without_download_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty hub cache: nothing to find
    assert main(["fit", "backbone.name=resnet18", "backbone.weights=ResNet18_Weights.IMAGENET1K_V1", f"output_dir={tmp_path / 'run'}", *QUIET]) == 2
    err = capsys.readouterr().err
    assert err.startswith("continual: error: backbone.weights=ResNet18_Weights.IMAGENET1K_V1 is not downloaded") and err.count("\n") == 1, err
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in err and "data.download=true" in err
    assert not (tmp_path / "run").exists()
    assert main(["fit", "backbone.name=resnet18", "backbone.weights=ViT_B_16_Weights.IMAGENET1K_V1", *QUIET]) == 2
    assert "weights of another network than backbone.name=resnet18" in capsys.readouterr().err
    assert main(["fit", "backbone.name=conv", "backbone.weights=ResNet18_Weights.IMAGENET1K_V1", *QUIET]) == 2
    assert "backbone.name=conv takes a state_dict file" in capsys.readouterr().err


def test_continual_features_precomputes_what_a_run_reads(tmp_path, calls, capsys):
    assert main(["features", "backbone.name=conv", f"data.root={tmp_path}", "data.n_tasks=3"]) == 0  # QUICK's tasks
    captured = capsys.readouterr()
    assert f"features cached under {tmp_path / 'features'}" in captured.out and "features (conv)" in captured.err  # the bar: stderr
    n = len(calls)
    assert n == 9 and len(list((tmp_path / "features").glob("*.pt"))) == 3
    assert main(["fit", "backbone.name=conv", "data.features=true", f"data.root={tmp_path}", f"output_dir={tmp_path / 'run'}", *QUICK]) == 0
    assert len(calls) == n  # the run extracted nothing


# ---- runs on features: resume and DDP as exact as on pixels ----

FEATURES = [*QUICK, "backbone.name=conv", "data.features=true", "checkpoint_every_n_steps=3", "trainer.max_epochs=2"]


class Stop(L.Callback):
    """Stop the run (an exception, as a crash would) at `task`'s start or at its 5th step."""

    def __init__(self, task: int, mid: bool):
        self.task, self.mid = task, mid

    def setup(self, trainer, pl_module, stage):
        if not self.mid and stage == "fit" and pl_module.current_task == self.task:
            raise RuntimeError("stopped")

    def on_train_batch_end(self, trainer, pl_module, *args):
        if self.mid and pl_module.current_task == self.task and trainer.global_step == 5:
            raise RuntimeError("stopped")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    base = tmp_path_factory.mktemp("features_run")
    return base, run(config(*FEATURES, f"data.root={base}", f"output_dir={base / 'whole'}", "method=er"))


@pytest.mark.parametrize("mid", [pytest.param(False, marks=pytest.mark.slow), True], ids=["boundary", "mid-task"])  # mid-task resumes from both
def test_a_resumed_run_on_features_equals_the_uninterrupted_one(uninterrupted, tmp_path, mid, capsys):
    root, whole = uninterrupted  # its feature cache is read here, as a later run reads it
    part = [*FEATURES, f"data.root={root}", f"output_dir={tmp_path / 'part'}", "method=er"]
    with pytest.raises(RuntimeError, match="stopped"):
        run(config(*part), callbacks=[Stop(1, mid)])
    capsys.readouterr()
    resumed = run(config(*part, f"resume={tmp_path / 'part'}"))
    out = capsys.readouterr().out
    assert "1 of 3 tasks already done" in out and ("resuming task 2 mid-way" in out) == mid
    assert comparable(resumed) == comparable(whole)


@pytest.mark.slow  # a two-process launch: tens of seconds
def test_ddp_on_features_equals_one_process(tmp_path):
    from test_ddp import DDP, SMALL, child_env

    common = [*SMALL, "backbone.name=conv", "data.features=true", f"data.root={tmp_path}", "logger.kind=none"]
    assert main(["fit", f"output_dir={tmp_path / 'one'}", *common]) == 0
    cmd = [sys.executable, "-m", "continual.cli.main", "fit", f"output_dir={tmp_path / 'two'}", *common, *DDP]
    out = subprocess.run(cmd, env=child_env(), capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert comparable(tmp_path / "two") == comparable(tmp_path / "one")

