"""Issue #26 item 6: pickled data files (the CIFAR batches) are read through one restricted
unpickler. Batches in every format CIFAR is found in load to the exact values written; a crafted
batch is refused in one line, exit 2, and its payload never runs."""

import builtins
import io
import os
import pickle
import struct

import numpy as np
import pytest

from continual.cli.main import main
from continual.data.sources import CIFAR, load_cifar
from helpers import QUICK

FOLDER, TRAIN, TEST = CIFAR["cifar10"][:3]


class Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2's `str` (BINSTRING), the way the published CIFAR batches were
    pickled by Python 2: read back with encoding='latin1' they are text, keys included."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj):
        n = len(obj)
        self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj if n < 256 else pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def py2_pickle(entry: dict) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump({k.encode(): v for k, v in entry.items()})
    return buf.getvalue().replace(b"numpy._core.", b"numpy.core.")  # numpy 1's module names, as in the real files


WRITERS = {
    "protocol2": lambda entry: pickle.dumps(entry, protocol=2),  # bytes via _codecs.encode(..., 'latin1')
    "protocol5": lambda entry: pickle.dumps(entry, protocol=5),  # arrays via numpy's _frombuffer
    "python2": py2_pickle,
}


def write_batches(root, writer, payload=None):
    """Six tiny CIFAR-10 batches (ten images each); `payload` replaces the labels of data_batch_1."""
    rng = np.random.default_rng(0)
    (root / FOLDER).mkdir(parents=True, exist_ok=True)
    written = {}
    for f in TRAIN + TEST:
        entry = {"batch_label": "training batch", "data": rng.integers(0, 256, (10, 3072), dtype=np.uint8),
                 "labels": [int(v) for v in rng.integers(0, 10, 10)], "filenames": [f"img_{i}.png" for i in range(10)]}
        written[f] = entry
        if f == "data_batch_1" and payload is not None:
            entry = {**entry, "labels": payload}
        (root / FOLDER / f).write_bytes(writer(entry))
    return written


@pytest.mark.parametrize("fmt", WRITERS)
def test_cifar_batches_load_exactly_in_every_format(tmp_path, fmt):
    written = write_batches(tmp_path, WRITERS[fmt])
    if fmt == "python2":
        assert b"cnumpy.core.multiarray\n_reconstruct\n" in (tmp_path / FOLDER / "test_batch").read_bytes()
    x_train, y_train, x_test, y_test = load_cifar(str(tmp_path), download=False, name="cifar10")
    train_data = np.concatenate([written[f]["data"] for f in TRAIN])
    assert (x_train.numpy() == train_data.astype(np.float32).reshape(-1, 3, 32, 32) / 255).all() and x_train.shape == (50, 3, 32, 32)
    assert y_train.tolist() == sum((written[f]["labels"] for f in TRAIN), [])
    assert (x_test.flatten(1).numpy() * 255).round().astype(np.uint8).tolist() == written["test_batch"]["data"].tolist()
    assert y_test.tolist() == written["test_batch"]["labels"]


class Run:
    """Pickles as a call of `fn(*args)`: what a crafted file makes `pickle.load` do."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def payloads(marker):
    return {
        "os.system": Run(os.system, f"touch {marker}"),
        "builtins.exec": Run(builtins.exec, f"open({str(marker)!r}, 'w').close()"),
        "codec": Run(__import__("_codecs").encode, "x", "rot13"),  # an admitted callable with a codec CIFAR never uses
    }


@pytest.mark.parametrize("fmt", ["protocol2", "protocol5"])
@pytest.mark.parametrize("kind", ["os.system", "builtins.exec", "codec"])
def test_crafted_cifar_batch_is_refused_and_runs_nothing(tmp_path, capsys, fmt, kind):
    marker = tmp_path / "payload_ran"
    write_batches(tmp_path / "data", WRITERS[fmt], payload=payloads(marker)[kind])
    code = main(["fit", "data.stream=split_cifar10", f"data.root={tmp_path / 'data'}", f"output_dir={tmp_path / 'run'}", *QUICK])
    err = capsys.readouterr().err.strip()
    assert not marker.exists()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("continual: error: cifar10 file "), err
    builtins_name = "__builtin__" if fmt == "protocol2" else "builtins"  # protocol 2 writes Python 2's module name
    named = {"os.system": f"{os.system.__module__}.system", "builtins.exec": f"{builtins_name}.exec", "codec": "_codecs.encode(str, 'rot13')"}[kind]
    assert f"{tmp_path / 'data' / FOLDER / 'data_batch_1'}' tries to call {named}, which no data file holds; refused without running it" in err
    assert err.endswith(f"delete {FOLDER}/ and re-run with data.download=true")


def test_damaged_batch_is_still_reported_as_corrupt(tmp_path):
    write_batches(tmp_path, WRITERS["protocol2"])
    batch = tmp_path / FOLDER / "data_batch_1"
    batch.write_bytes(batch.read_bytes()[:100])
    with pytest.raises(Exception, match=rf"cifar10 file '{batch}' is unreadable or corrupt \(UnpicklingError") as info:
        load_cifar(str(tmp_path), download=False, name="cifar10")
    assert type(info.value).__name__ == "DataError"
