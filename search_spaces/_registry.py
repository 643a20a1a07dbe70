"""The space registry: ``get_space(name)``, ``list_spaces(pattern)``."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable

from ._base import SearchSpace

_SPACES: dict[str, Callable[[], SearchSpace]] = {}
_CACHE: dict[str, SearchSpace] = {}


def register_space(name: str, factory: Callable[[], SearchSpace]) -> None:
    if name in _SPACES:
        raise ValueError(f"space {name!r} is already registered")
    _SPACES[name] = factory


def list_spaces(pattern: str | None = None) -> list[str]:
    names = sorted(_SPACES)
    if pattern:
        glob = pattern if any(c in pattern for c in "*?[") else f"*{pattern}*"
        names = [n for n in names if fnmatch.fnmatch(n, glob)]
    return names


def get_space(name: str) -> SearchSpace:
    """The registered space (built once, then cached: spaces are immutable)."""
    if name not in _SPACES:
        close = difflib.get_close_matches(name, list(_SPACES), n=4, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known spaces: {', '.join(sorted(_SPACES))}"
        raise ValueError(f"unknown space {name!r}{hint}")
    if name not in _CACHE:
        _CACHE[name] = _SPACES[name]()
    return _CACHE[name]
