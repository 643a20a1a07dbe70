"""``@experimental``: marks an API whose behaviour may change without a deprecation period.

Calling a marked function warns once per process with
:class:`ExperimentalWarning`; the docstring gets a note. Used for the NNI backend, which rides on a library
frozen since 2023 (NNI 3.0) and so cannot promise the stability of the Optuna backend.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["ExperimentalWarning", "experimental"]

T = TypeVar("T")
_WARNED: set[str] = set()


class ExperimentalWarning(UserWarning):
    """The called API is experimental: its interface and results may change in a later release."""


def _warn(name: str, reason: str) -> None:
    if name in _WARNED:
        return
    _WARNED.add(name)
    warnings.warn(f"{name} is experimental ({reason}); its interface may change without notice",
                  ExperimentalWarning, stacklevel=3)


def experimental(reason: str) -> Callable[[T], T]:
    """Decorator for a function: warn once on first use, add a note to the docstring."""

    def mark(obj: Any) -> Any:
        name = f"{obj.__module__}.{obj.__qualname__}"
        note = f"\n\n    .. note:: Experimental ({reason}): the interface may change without notice.\n"

        @functools.wraps(obj)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            _warn(name, reason)
            return obj(*args, **kwargs)

        wrapper.__doc__ = (obj.__doc__ or "") + note
        wrapper.__experimental__ = True
        return wrapper

    return mark
