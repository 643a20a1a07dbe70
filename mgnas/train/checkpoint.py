"""Checkpoints: atomic writes, ``torch.load(weights_only=True)``-safe contents, RNG state capture.

A checkpoint holds only tensors and primitive containers (dict, list, str, int, float, bool, None), so
it loads with ``weights_only=True``: no pickled code runs when a checkpoint is read. RNG states are
stored as a byte tensor (torch) and lists (Python ``random``, NumPy).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mgnas._atomic import atomic_path, write_text_atomic

__all__ = ["CHECKPOINT", "HISTORY", "FORMAT", "TrainingDiverged", "ResumeError", "save_atomic", "write_text_atomic",
           "load_checkpoint", "capture_rng", "restore_rng", "to_primitive"]

CHECKPOINT = "checkpoint.pt"
HISTORY = "history.jsonl"
FORMAT = "mgnas.checkpoint/1"


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint was kept."""


class ResumeError(ValueError):
    """A run cannot be resumed: no checkpoint, a corrupt one, or one from another spec / config."""


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then ``os.replace`` (:mod:`mgnas._atomic`).

    A kill or a full disk leaves the previous file at ``path`` intact and no temporary file behind."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; any failure is a :class:`ResumeError`."""
    path = Path(path)
    if not path.is_file():
        raise ResumeError(f"cannot resume: no checkpoint at {path}; run without --resume to start a new run")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a damaged file
        raise ResumeError(f"cannot resume: {path} is corrupt or not a checkpoint ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}); delete it to start over") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ResumeError(f"cannot resume: {path} is not an mgnas training checkpoint (format {FORMAT})")
    return ckpt


def capture_rng() -> dict[str, Any]:
    """The torch (CPU and CUDA), Python and NumPy RNG states as weights_only-safe values."""
    version, state, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    out: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": {"version": version, "state": list(state), "gauss": gauss},
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state()
    return out


def restore_rng(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def to_primitive(obj: Any, where: str = "value") -> Any:
    """Convert logs to JSON values: tensors and NumPy scalars/arrays become numbers and lists."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().tolist()
    if isinstance(obj, np.generic | np.ndarray):
        return obj.tolist()
    if isinstance(obj, Mapping):
        return {str(k): to_primitive(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_primitive(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    raise TypeError(f"{where}: {type(obj).__name__} cannot be logged or checkpointed; "
                    "use numbers, strings, lists, dicts or tensors")


def check_safe(obj: Any, where: str) -> None:
    """Raise TypeError if ``obj`` would not load with ``weights_only=True``."""
    if obj is None or isinstance(obj, (bool, int, float, str, torch.Tensor)):
        return
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            check_safe(v, f"{where}.{k}")
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            check_safe(v, f"{where}[{i}]")
        return
    raise TypeError(f"{where}: {type(obj).__name__} cannot go into a checkpoint (it must load with "
                    "torch.load(weights_only=True)); use tensors, numbers, strings, lists or dicts")
