"""mgnas: search the channel-group structure of convolutional networks.

The public entry points (``create_model``, ``list_models``, ``build_model``) are resolved lazily so
that ``import mgnas`` is cheap; ``mgnas.spec`` never imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "create_model": "mgnas.models", "list_models": "mgnas.models", "build_model": "mgnas.models",
    "model_spec": "mgnas.models", "ArchSpec": "mgnas.spec", "SpecError": "mgnas.spec",
}
__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mgnas' has no attribute {name!r}")
