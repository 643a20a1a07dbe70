"""Export discovered architectures: ``to_static`` (search-free exact model), ``fuse_bn``, ``export``
(ONNX / torch.export / TorchScript, resolved lazily from ``._export``)."""

from __future__ import annotations

import importlib
from typing import Any

from ._static import fuse_bn, to_static

__all__ = ["export", "fuse_bn", "to_static"]


def __getattr__(name: str) -> Any:
    if name == "export":
        value = importlib.import_module("._export", __name__).export
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mgnas.export' has no attribute {name!r}")
