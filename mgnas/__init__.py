"""mgnas: search the channel-group structure of convolutional networks.

The public entry points (``create_model``, ``list_models``, ``build_model``, ``model_spec``) and the
subpackages (``mgnas.export``, ``mgnas.profile``, ``mgnas.data``, ``mgnas.train``, ``mgnas.models``,
``mgnas.ops``, ``mgnas.viz``, ``mgnas.search_spaces``, ``mgnas.strategies``) are resolved lazily on first
use, so ``import mgnas`` is cheap (no torch, torchvision or optuna import) and ``mgnas.export.to_static``
works without an explicit ``import mgnas.export``. ``mgnas.spec`` never imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "create_model": "mgnas.models", "list_models": "mgnas.models", "build_model": "mgnas.models",
    "model_spec": "mgnas.models", "ArchSpec": "mgnas.spec", "SpecError": "mgnas.spec",
}
#: Subpackages imported on first attribute access (``mgnas.export``, ...).
_SUBPACKAGES = ("config", "data", "export", "models", "ops", "profile", "search_spaces", "spec", "strategies",
                "train", "viz")
__all__ = ["__version__", *sorted(_LAZY), *_SUBPACKAGES]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBPACKAGES:
        return importlib.import_module(f"mgnas.{name}")  # the import sets the attribute on this package
    raise AttributeError(f"module 'mgnas' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
