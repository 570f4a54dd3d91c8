"""Loading the pickled .npy files of the circulated Pororo-SV release without letting them run code.

``np.load(allow_pickle=True)`` would run whatever a pickle asks for. Here a pickle may only build what these
files legitimately hold: dicts, lists, tuples, strings, numbers and numpy arrays (and numpy scalars). Anything
else, ``os.system`` say, is refused before it is called.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from sv_data.errors import SvkitError

# (module, name) pairs that rebuild numpy arrays, dtypes and scalars, under numpy 1 and numpy 2 module names,
# and the codec call that Python 3 pickles of bytes use at protocol 2.
_ALLOWED = {
    *((module, name) for module in ("numpy.core.multiarray", "numpy._core.multiarray")
      for name in ("_reconstruct", "scalar")),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class UnsafePickleError(SvkitError):
    pass


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, path: Path):
        super().__init__(file, encoding="latin1")  # the release was written by Python 2
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise UnsafePickleError(
                f"{self.path}: refused: the pickle asks for {module}.{name}; only dicts, lists, strings and numpy "
                "arrays are loaded from these files"
            )
        return super().find_class(module, name)


def load_npy(path: Path | str):
    """The content of a .npy file (or a bare pickle), loaded safely: a 0-d object array becomes its object."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SvkitError(f"{path}: no such file") from None
    stream = io.BytesIO(data)
    try:
        if data.startswith(b"\x93NUMPY"):
            version = np.lib.format.read_magic(stream)
            # Version 3 differs from 2 only in allowing UTF-8 in the header, which numpy writes only for field names.
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            _, _, dtype = read_header(stream)
            if not dtype.hasobject:
                stream.seek(0)
                return np.load(stream, allow_pickle=False)
            value = _RestrictedUnpickler(stream, path).load()
        else:
            value = _RestrictedUnpickler(stream, path).load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # a damaged file: numpy's and pickle's errors differ by the damage
        raise SvkitError(f"{path}: cannot be read as a .npy file or pickle ({type(exc).__name__}: {exc})") from None
    if isinstance(value, np.ndarray) and value.dtype.hasobject and value.shape == ():
        return value.item()
    return value
