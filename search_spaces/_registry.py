"""The space registry: ``get_space(name)``, ``list_spaces(pattern)``."""

from __future__ import annotations

from collections.abc import Callable

from mgnas.models._registry import filter_names, unknown_name

from ._base import SearchSpace

_SPACES: dict[str, Callable[[], SearchSpace]] = {}
_CACHE: dict[str, SearchSpace] = {}


def register_space(name: str, factory: Callable[[], SearchSpace]) -> None:
    if name in _SPACES:
        raise ValueError(f"space {name!r} is already registered")
    _SPACES[name] = factory


def list_spaces(pattern: str | None = None) -> list[str]:
    """Registered space names, sorted; ``pattern`` is a shell-style wildcard or a substring."""
    return filter_names(list(_SPACES), pattern)


def get_space(name: str) -> SearchSpace:
    """The registered space (built once, then cached: spaces are immutable)."""
    if name not in _SPACES:
        raise unknown_name("space", name, list(_SPACES))
    if name not in _CACHE:
        _CACHE[name] = _SPACES[name]()
    return _CACHE[name]
