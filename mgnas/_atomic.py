"""Atomic file outputs: write to a temporary file beside the target, fsync, then ``os.replace``.

Every result file mgnas writes (``weights.pt``, ``result.json``, ``spec.json``, ``report.html``,
``trials.csv``, exported models) goes through here, so a kill or a full disk never leaves a truncated
file under the real name, and an existing file is replaced only by a complete new one.
Temporary names start with ``.`` and contain ``.tmp``; :func:`remove_stale_temps` sweeps leftovers of
killed processes. Standard library only (no torch import).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "write_text_atomic", "write_bytes_atomic", "write_json_atomic", "remove_stale_temps",
           "is_disk_full", "TMP_MARK"]

TMP_MARK = ".tmp"


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it onto ``path``.

    On any exception the temporary file is removed and ``path`` is left exactly as it was.
    """
    path = Path(path)
    tmp = _tmp_name(path)
    try:
        yield tmp
        if tmp.exists():
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_bytes_atomic(data: bytes, path: str | os.PathLike[str]) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()


def write_text_atomic(text: str, path: str | os.PathLike[str]) -> None:
    write_bytes_atomic(text.encode("utf-8"), path)


def write_json_atomic(obj: Any, path: str | os.PathLike[str], *, indent: int | None = 2) -> None:
    write_text_atomic(json.dumps(obj, indent=indent) + "\n", path)


def remove_stale_temps(directory: str | os.PathLike[str]) -> list[Path]:
    """Delete temporary files left in ``directory`` by killed writers (``.NAME.tmpPID``); return them."""
    removed: list[Path] = []
    d = Path(directory)
    if not d.is_dir():
        return removed
    for p in d.iterdir():
        if p.name.startswith(".") and TMP_MARK in p.name and p.is_file():
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed


def is_disk_full(err: BaseException) -> bool:
    """True for 'no space left on device' / 'disk quota exceeded', however deep torch wrapped it."""
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(e).lower()
        if "no space left" in text or "disk quota" in text:
            return True
        e = e.__cause__ or e.__context__
    return False
