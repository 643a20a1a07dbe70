"""Reading and writing spec files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ._arch import ArchSpec
from ._errors import SpecError


def loads(text: str) -> ArchSpec:
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as err:
        raise SpecError("", f"not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None
    return ArchSpec.from_dict(data)


def dumps(spec: ArchSpec) -> str:
    return spec.to_json(indent=1) + "\n"


def load(path: str | os.PathLike[str]) -> ArchSpec:
    """Read and validate a spec file. Errors are :class:`SpecError` naming the file and the field."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as err:
        raise SpecError("", f"cannot read spec file {str(p)!r}: {err.strerror}") from None
    try:
        return loads(text)
    except SpecError as err:
        raise SpecError(err.path, f"{err.reason} (in {p})") from None


def save(spec: ArchSpec, path: str | os.PathLike[str]) -> Path:
    """Write atomically (write to a temporary file, then rename)."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(dumps(spec))
    os.replace(tmp, p)
    return p
