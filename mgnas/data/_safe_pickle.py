"""A restricted unpickler for CIFAR's python-pickle batches (DESIGN.md: ``pickle.load`` on them runs code).

A pickle is a small program: its ``GLOBAL``/``STACK_GLOBAL`` opcodes import any callable and ``REDUCE`` calls
it, so ``pickle.load`` on a crafted ``data_batch_1`` runs ``os.system`` or anything else.  A CIFAR batch holds
only plain containers (dict, list, str/bytes, int/float) and NumPy arrays; the only globals its pickle needs are
NumPy's array reconstructors.  :class:`CifarUnpickler` resolves exactly those (under both the NumPy 1 name
``numpy.core`` and the NumPy 2 name ``numpy._core``) plus ``_codecs.encode`` (Python 3's protocol-2 spelling of a
``bytes`` object) and refuses every other global before anything is called; persistent ids and the copyreg
extension registry go through the same check.  :func:`load_cifar_pickle` wraps it and turns every failure into
one line naming the file.
"""

from __future__ import annotations

import codecs
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ._bundle import DataError

__all__ = ["CifarUnpickler", "UnsafePickleError", "load_cifar_pickle"]

#: What a CIFAR batch holds, in words (for the error message).
CIFAR_CONTENTS = "dicts, lists, strings, bytes, numbers and numpy arrays"


def _numpy_core(name: str) -> Any:
    """``numpy._core.<name>`` (NumPy 2) or ``numpy.core.<name>`` (NumPy 1), without NumPy 2's deprecated alias."""
    import importlib

    try:
        return importlib.import_module(f"numpy._core.{name}")
    except ImportError:
        return importlib.import_module(f"numpy.core.{name}")


def _encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it (``bytes`` as latin-1 text); other codecs are refused."""
    if encoding.lower().replace("_", "-") not in ("latin1", "latin-1", "iso-8859-1", "utf-8", "utf8", "ascii"):
        raise UnsafePickleError(f"_codecs.encode with codec {encoding[:40]!r}")
    return codecs.encode(text, encoding, errors)


def _allowed() -> dict[tuple[str, str], Any]:
    multiarray, numeric = _numpy_core("multiarray"), _numpy_core("numeric")
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _encode,
    }
    for core in ("numpy.core", "numpy._core"):  # a file written under either NumPy major version
        allowed[(f"{core}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = multiarray.scalar
        if hasattr(numeric, "_frombuffer"):  # protocol-5 arrays
            allowed[(f"{core}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asks for a global outside the allow-list (it would run code)."""


class CifarUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only the globals a CIFAR batch needs (see the module docstring)."""

    _ALLOWED: dict[tuple[str, str], Any] | None = None

    def find_class(self, module: str, name: str) -> Any:
        if CifarUnpickler._ALLOWED is None:
            CifarUnpickler._ALLOWED = _allowed()
        try:
            return CifarUnpickler._ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"{module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"persistent id {str(pid)[:40]!r}")


def load_cifar_pickle(path: str | os.PathLike[str]) -> Any:
    """Unpickle one CIFAR batch or meta file with :class:`CifarUnpickler` (``encoding="latin1"``, as torchvision).

    Raises :class:`DataError` (a ``ValueError``) in one line naming the file: a forbidden global ("refuses to
    unpickle os.system"), or a damaged / truncated pickle.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return CifarUnpickler(f, encoding="latin1").load()
    except UnsafePickleError as err:
        raise DataError(f"CIFAR batch file {path} refuses to unpickle {err}: a CIFAR batch holds only "
                        f"{CIFAR_CONTENTS}; this file is not one (it would run code)") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, AttributeError, IndexError,
            MemoryError, RecursionError, OverflowError, UnicodeDecodeError) as err:
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise DataError(f"corrupt CIFAR batch file {path}: {type(err).__name__}: {first}") from None
    except OSError as err:
        raise DataError(f"cannot read CIFAR batch file {path}: {err.strerror or err}") from None
