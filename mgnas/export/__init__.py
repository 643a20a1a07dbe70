"""Export discovered architectures: ``to_static`` (search-free exact model), ``fuse_bn``, ``export``
(ONNX / torch.export / TorchScript, resolved lazily from ``._export``)."""

from __future__ import annotations

import importlib
from typing import Any

from ._static import fuse_bn, to_static

__all__ = ["export", "fuse_bn", "to_static", "load_state_dict", "match_state_dict", "resolve_spec", "FORMATS",
           "ExportCheckFailed"]
#: Names resolved lazily from ``._export`` (it imports the exporters' machinery).
_LAZY = ("export", "load_state_dict", "match_state_dict", "resolve_spec", "FORMATS", "ExportCheckFailed")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module("._export", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mgnas.export' has no attribute {name!r}")
