"""The manifest written next to an exported artifact: ``FILE.manifest.json``.

It records what is needed to trust and reproduce the artifact: the spec's content hash, the format and
opset, the versions of torch / onnx / onnxruntime / onnxscript / mgnas, the input shape (batch dynamic),
the artifact's SHA-256 and the differences measured by the check.
"""

from __future__ import annotations

import hashlib
import time
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["manifest_path", "versions", "write_manifest"]


def manifest_path(path: Path) -> Path:
    return path.with_name(path.name + ".manifest.json")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def versions(format: str) -> dict[str, str | None]:
    import torch

    out: dict[str, str | None] = {"torch": torch.__version__, "mgnas": _version("mgnas")}
    if format == "onnx":
        out.update(onnx=_version("onnx"), onnxruntime=_version("onnxruntime"), onnxscript=_version("onnxscript"))
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(manifest: dict[str, Any], path: Path) -> Path:
    """Add the artifact's size, SHA-256 and a UTC timestamp to ``manifest``; write it next to ``path``."""
    manifest["sha256"] = _sha256(path)
    manifest["bytes"] = path.stat().st_size
    manifest["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out = manifest_path(path)
    from mgnas._atomic import write_json_atomic

    write_json_atomic(manifest, out, indent=1)
    return out
