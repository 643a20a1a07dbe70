"""Import torchvision on a torch build its compiled ops do not match.

Why this exists: the only torchvision release for torch 2.13 (0.28.0) ships compiled ops (``_C.so``) built against
CUDA.  On the CPU wheel of torch that library does not load, so the ``torchvision::nms`` / ``torchvision::qnms``
operator schemas are never defined, and ``import torchvision`` dies in ``torchvision/_meta_registrations.py``
with ``RuntimeError: operator torchvision::nms does not exist`` (pytorch/vision#9085): that module registers fake
(meta) kernels for these two ops unconditionally, while every other op registration is guarded by
``torchvision.extension._has_ops()``.

The fix is to define the two missing schemas ourselves (``torch.library``, a ``FRAGMENT`` library kept alive for
the life of the process) before torchvision is imported.  The ops then exist but have no kernel: calling
``torchvision.ops.nms`` would fail, which mgnas never does.  Everything mgnas uses, ``torchvision.datasets``
(CIFAR10/100, ImageFolder) and ``torchvision.transforms.v2``, is pure Python and works.

Nothing is registered when torchvision's own compiled ops load (a CUDA machine with a matching build): we first
try to load ``_C`` exactly as ``torchvision.extension`` does and only define what is still missing afterwards.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import importlib.util
import os
import sys
from types import ModuleType

import torch

__all__ = ["import_torchvision"]

# Schemas copied from torchvision/csrc/ops/nms.cpp (``m.def(TORCH_SELECTIVE_SCHEMA(...))``).
_MISSING_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_LIBRARY: torch.library.Library | None = None  # kept alive: dropping it would unregister the schemas


def _has_op(name: str) -> bool:
    try:
        getattr(torch.ops.torchvision, name)
    except (AttributeError, RuntimeError):
        return False
    return True


def _try_load_compiled_ops(package_dir: str) -> None:
    """Load torchvision's ``_C`` the way ``torchvision.extension`` does; ignore failure (it is expected on CPU)."""
    finder = importlib.machinery.FileFinder(
        package_dir, (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES))
    spec = finder.find_spec("_C")
    if spec is None or spec.origin is None:
        return
    with contextlib.suppress(ImportError, OSError):  # expected on the CPU wheel: the CUDA libraries are absent
        torch.ops.load_library(spec.origin)


def register_missing_ops(package_dir: str) -> list[str]:
    """Define the torchvision op schemas that ``import torchvision`` needs but the compiled ops did not provide.

    Returns the names it defined (empty when torchvision's own ops loaded).
    """
    global _LIBRARY
    _try_load_compiled_ops(package_dir)
    missing = [name for name in _MISSING_SCHEMAS if not _has_op(name)]
    if missing:
        if _LIBRARY is None:
            _LIBRARY = torch.library.Library("torchvision", "FRAGMENT")
        for name in missing:
            _LIBRARY.define(_MISSING_SCHEMAS[name])
    return missing


def import_torchvision() -> ModuleType:
    """Return the ``torchvision`` module, working around the CPU-wheel import failure described above.

    Raises ``ImportError`` when torchvision is not installed (``pip install 'mgnas[vision]'``).
    """
    if "torchvision" in sys.modules:
        return sys.modules["torchvision"]
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("torchvision is not installed; install it with: pip install 'mgnas[vision]'")
    register_missing_ops(os.fspath(next(iter(spec.submodule_search_locations))))
    return importlib.import_module("torchvision")
