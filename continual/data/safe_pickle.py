"""The one way the platform reads a pickled data file (the CIFAR batches).

`pickle.load` calls whatever callables the file names, so a crafted data file runs its payload
the moment it is read. Data pickles hold only numpy arrays and plain containers: this unpickler
admits the few callables numpy needs to rebuild its arrays (under numpy 1's and numpy 2's module
names) and refuses any other before it is called, in one line naming the file and the callable.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from continual.errors import DataError

# (module, name) of what rebuilding a numpy array, dtype or scalar from a pickle calls
_NUMPY = {
    (module, name)
    for core in ("numpy.core", "numpy._core")
    for module, name in ((f"{core}.multiarray", "_reconstruct"), (f"{core}.multiarray", "scalar"), (f"{core}.numeric", "_frombuffer"))
} | {("numpy", "ndarray"), ("numpy", "dtype")}


class _Refused(pickle.UnpicklingError):
    """The file names a callable outside the admitted set (told apart from a damaged file)."""


def _latin1(text: str, encoding: str) -> bytes:
    """How Python 3 pickles bytes at protocol 2: `_codecs.encode(text, 'latin1')`. Admitted only
    with that codec and a str, so the file reaches no other codec."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused(f"_codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin1")


class _DataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _NUMPY:
            return super().find_class(module, name)
        if (module, name) == ("_codecs", "encode"):
            return _latin1
        raise _Refused(f"{module}.{name}")


def load(path: Path, what: str, fix: str) -> object:
    """The object pickled in `path`, text decoded as latin1 (files pickled by Python 2 need it).

    A file that names any other callable is refused before the callable runs: a `DataError`
    naming `what` (e.g. "cifar10 file"), the path, the callable and `fix` (how to get the
    original). Any other failure (a damaged file) is raised as it is, for the caller to word.
    """
    with open(path, "rb") as fh:
        try:
            return _DataUnpickler(fh, encoding="latin1").load()
        except _Refused as err:
            raise DataError(
                f"{what} '{path}' tries to call {err}, which no data file holds; refused without running it: "
                f"it is not the original file, {fix}"
            ) from None
