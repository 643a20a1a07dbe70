"""Reading and writing spec files."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from .._atomic import write_text_atomic
from ._arch import ArchSpec
from ._errors import SpecError

#: Bounds on what a spec file may be: its size in bytes and its JSON nesting depth (a real spec nests < 16).
MAX_SPEC_BYTES = 64 << 20
MAX_SPEC_DEPTH = 64
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')


def _nesting(text: str) -> int:
    """The deepest ``[``/``{`` nesting of JSON ``text`` (strings skipped), without recursion."""
    depth = deepest = 0
    for m in re.finditer(r"[\[\]{}]", _STRINGS.sub("", text)):
        depth += 1 if m.group() in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def loads(text: str) -> ArchSpec:
    if len(text) > MAX_SPEC_BYTES:
        raise SpecError("", f"too large for a spec ({len(text):,} characters; at most {MAX_SPEC_BYTES:,})")
    if (text.count("[") + text.count("{") > MAX_SPEC_DEPTH) and _nesting(text) > MAX_SPEC_DEPTH:
        raise SpecError("", f"nested more than {MAX_SPEC_DEPTH} levels deep; not a spec")
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as err:
        raise SpecError("", f"not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None
    except (RecursionError, ValueError) as err:  # nesting the scan missed; a 4300+-digit integer
        raise SpecError("", f"not a valid spec ({' '.join(str(err).split()) or type(err).__name__})") from None
    return ArchSpec.from_dict(data)


def dumps(spec: ArchSpec) -> str:
    return spec.to_json(indent=1) + "\n"


def load(path: str | os.PathLike[str]) -> ArchSpec:
    """Read and validate a spec file. Errors are :class:`SpecError` naming the file and the field."""
    p = Path(path)
    try:
        if p.is_dir():
            raise SpecError("", f"spec file {str(p)!r} is a directory, not a file")
        if p.exists() and not p.is_file():
            raise SpecError("", f"spec file {str(p)!r} is not a regular file")
        if p.stat().st_size > MAX_SPEC_BYTES:
            raise SpecError("", f"spec file {str(p)!r} is too large ({p.stat().st_size:,} bytes)")
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise SpecError("", f"spec file {str(p)!r} is not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise SpecError("", f"cannot read spec file {str(p)!r}: {err.strerror}") from None
    try:
        return loads(text)
    except SpecError as err:
        raise SpecError(err.path, f"{err.reason} (in {p})") from None


def save(spec: ArchSpec, path: str | os.PathLike[str]) -> Path:
    """Write atomically (a temporary file beside ``path``, fsync, rename): never a truncated spec file."""
    p = Path(path)
    write_text_atomic(dumps(spec), p)
    return p
