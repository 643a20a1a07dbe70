"""Run directories: one rule for every command that writes into ``--out`` (issue 11, "nothing overwritten").

Each of ``search``, ``train``, ``study``, ``pareto``, ``demo`` and ``nni-nas`` claims its output directory with
:func:`claim_dir` before it writes anything there.  The claim is a small marker file ``.mgnas-run.json``
(``{"kind", "created", "command", "identity"}``) written atomically.  The rule:

- a directory that holds **another kind** of run (its marker says so) is refused with the reason;
- a directory that holds **the same kind** is continued only where that kind can continue:
  ``search`` / ``train`` with ``--resume``; ``study`` and ``pareto`` when the marker names the same study
  (the same study name and storage: re-running a study resumes it, re-running ``pareto`` refreshes its
  export); ``nni-nas`` and ``demo`` only when the earlier run never finished (no ``spec.json`` /
  ``index.html``);
- ``pareto --out`` into a **study's own directory** is allowed for that same study only (the study command
  writes the same front there at its end); another study's directory is refused;
- a directory **without a marker** (written before markers existed, or by hand): known result files
  (:data:`RUN_FILES` of a search/train run, :data:`STUDY_FILES` of a study) keep today's answer: refused
  unless the command can continue them (``--resume``; the same study recorded in ``study.json``); other files
  are left alone and the directory is used.

A run that fails before writing anything but its marker (bad input found late, e.g. an unknown space or a
refused CIFAR batch) withdraws its claim (:func:`claimed`): the directory is left as it was found.  A run that
wrote something keeps it, so a kill at any moment can be continued (``search`` / ``train`` ``--resume`` on a run
killed before its first checkpoint starts it from the beginning).  Outputs are written with :mod:`mgnas._atomic`
(a temporary name, renamed on success), so a failure leaves the previous files as they were; temporary files of
killed writers are swept when a directory is claimed.  Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from mgnas._atomic import TMP_MARK, remove_stale_temps, write_json_atomic

__all__ = ["MARKER", "KINDS", "RUN_FILES", "STUDY_FILES", "RunDirError", "read_marker", "check_dir", "claim_dir",
           "claimed", "sweep_dead_temps", "sweep_all_temps", "same_storage"]

MARKER = ".mgnas-run.json"
KINDS = ("search", "train", "study", "pareto", "demo", "nni-nas")
#: Files of a search / train run (never overwritten without --resume).
RUN_FILES = ("checkpoint.pt", "result.json", "history.jsonl", "spec.json", "weights.pt", "config.yaml")
#: Files of a study's / pareto export's directory.
STUDY_FILES = ("study.json", "study.db", "trials.csv", "pareto.html", "pareto.json", "front")
_FINISHED = {"nni-nas": "spec.json", "demo": "index.html"}


class RunDirError(ValueError):
    """The output directory holds another run (one line, exit code 2 in the CLI)."""


def read_marker(out: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The marker of ``out`` (None when there is none; an unreadable marker counts as a foreign run)."""
    path = Path(out) / MARKER
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"kind": "unknown"}
    return data if isinstance(data, dict) else {"kind": "unknown"}


def same_storage(a: Any, b: Any) -> bool:
    """Do two storage URLs name the same storage (relative / absolute file paths compared resolved)?"""
    if a is None or b is None:
        return a == b

    def norm(url: str) -> str:
        for prefix in ("sqlite:///", "journal:"):
            if url.startswith(prefix):
                with contextlib.suppress(OSError, ValueError):
                    return prefix + str(Path(url[len(prefix):]).expanduser().resolve())
        return url

    return norm(str(a)) == norm(str(b))


def _same_study(identity: Mapping[str, Any] | None, other: Mapping[str, Any] | None) -> bool:
    if not identity or not other:
        return True  # nothing recorded to compare (an older marker): the study command checks its storage
    return identity.get("study_name") == other.get("study_name") and same_storage(identity.get("storage"),
                                                                                   other.get("storage"))


def _describe(marker: Mapping[str, Any]) -> str:
    kind = marker.get("kind", "unknown")
    ident = marker.get("identity") or {}
    name = f" {ident['study_name']!r}" if isinstance(ident, Mapping) and ident.get("study_name") else ""
    created = f", created {marker['created']}" if marker.get("created") else ""
    return f"a run of `mgnas {kind}`{name} ({MARKER}{created})"


def _legacy_study(out: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((out / "study.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def check_dir(out: str | os.PathLike[str], kind: str, *, resume: bool = False,
              identity: Mapping[str, Any] | None = None, flag: str = "--out") -> None:
    """Raise :class:`RunDirError` unless a ``kind`` run may write into ``out`` (see the module docstring)."""
    if kind not in KINDS:
        raise ValueError(f"unknown run kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{flag} {out} is a file, not a directory")
    if not out.is_dir():
        return
    marker = read_marker(out)
    if marker is not None:
        held = marker.get("kind")
        if kind == "pareto" and held == "study":
            if _same_study(identity, marker.get("identity")):
                return
            raise RunDirError(f"{out} holds {_describe(marker)}: pareto writes only into the directory of the same "
                              f"study; choose another {flag}")
        if held != kind:
            raise RunDirError(f"{out} holds {_describe(marker)}, not one of `mgnas {kind}`; choose another {flag}")
        if kind in ("search", "train"):
            if not resume:
                raise RunDirError(f"{out} already holds {_describe(marker)}; pass --resume to continue it or "
                                  f"choose another {flag}")
            return
        if kind in ("study", "pareto"):
            if not _same_study(identity, marker.get("identity")):
                raise RunDirError(f"{out} holds {_describe(marker)}, another study; choose another {flag}")
            return
        done = _FINISHED.get(kind)
        if done and (out / done).exists():
            raise RunDirError(f"{out} already holds a finished run of `mgnas {kind}` ({done}); choose another {flag}")
        return
    # no marker: a directory from before markers, or the user's own files
    run_files = [f for f in RUN_FILES if (out / f).exists()]
    study_files = [f for f in STUDY_FILES if (out / f).exists()]
    if kind in ("search", "train"):
        if study_files:
            raise RunDirError(f"{out} holds a study ({study_files[0]}); choose another {flag}")
        if run_files and not resume:
            raise RunDirError(f"{out} already holds a run ({run_files[0]}); pass --resume to continue it or "
                              f"choose another {flag}")
        return
    if kind in ("study", "pareto"):
        foreign = [f for f in run_files if f != "config.yaml"]
        if foreign:
            raise RunDirError(f"{out} holds a search or train run ({foreign[0]}), not a study; choose another {flag}")
        recorded = _legacy_study(out)
        if recorded is not None and not _same_study(identity, recorded):
            raise RunDirError(f"{out} holds the study {recorded.get('study_name')!r} (study.json), another study; "
                              f"choose another {flag}")
        exported = [f for f in study_files if f not in ("study.json", "study.db")]
        if recorded is None and kind == "study" and exported:  # a bare `mgnas pareto` export of some study
            raise RunDirError(f"{out} holds a Pareto export ({exported[0]}); choose another {flag}")
        return
    if run_files or study_files:  # demo / nni-nas never continue a foreign or older run
        raise RunDirError(f"{out} already holds a run ({(run_files or study_files)[0]}); choose another {flag}")


def claim_dir(out: str | os.PathLike[str], kind: str, *, resume: bool = False,
              identity: Mapping[str, Any] | None = None, command: Sequence[str] | None = None,
              flag: str = "--out") -> Path:
    """:func:`check_dir`, then create ``out`` and write its marker (kept when it is already ours).

    Also sweeps the temporary files that killed writers left in ``out`` (see :func:`sweep_dead_temps`).
    Returns ``out`` as a ``Path``.
    """
    check_dir(out, kind, resume=resume, identity=identity, flag=flag)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if read_marker(out) is None:  # an existing marker stays (a pareto export inside its study's dir: "study")
        write_json_atomic({"kind": kind, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                           "command": list(command) if command is not None else ["mgnas", *sys.argv[1:]],
                           "identity": dict(identity) if identity else None}, out / MARKER)
    sweep_dead_temps(out)
    return out


@contextlib.contextmanager
def claimed(out: str | os.PathLike[str], kind: str, *, resume: bool = False,
            identity: Mapping[str, Any] | None = None, command: Sequence[str] | None = None,
            flag: str = "--out") -> Iterator[Path]:
    """:func:`claim_dir` for the duration of a run; if the run fails before writing anything but the marker
    (bad input found late, e.g. an unknown space), the directory is left exactly as it was found.

    A run that wrote anything keeps its marker, so ``--resume`` (or the same study) can continue it.
    """
    path = Path(out)
    existed = path.is_dir()
    had_marker = existed and read_marker(path) is not None
    path = claim_dir(path, kind, resume=resume, identity=identity, command=command, flag=flag)
    found = _entries(path)
    try:
        yield path
    except BaseException:
        with contextlib.suppress(OSError):
            if not had_marker and _entries(path) == found:  # the run wrote nothing: withdraw the claim
                (path / MARKER).unlink()
                if not existed:
                    sweep_dead_temps(path)
                    path.rmdir()
        raise


def _entries(path: Path) -> dict[str, float]:
    """Names and modification times of ``path``'s entries (marker and temporary files aside)."""
    return {p.name: p.stat().st_mtime for p in path.iterdir() if p.name != MARKER and TMP_MARK not in p.name}


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def sweep_dead_temps(directory: str | os.PathLike[str], *, recursive: bool = True) -> list[Path]:
    """Delete ``.NAME.tmpPID`` files whose writer process is gone (a live writer's are kept: study workers
    share one directory).  Sub-folders (``front/``) are swept too when ``recursive``."""
    removed: list[Path] = []
    d = Path(directory)
    if not d.is_dir():
        return removed
    dirs = [d, *(p for p in d.iterdir() if p.is_dir() and not p.is_symlink())] if recursive else [d]
    for folder in dirs:
        for p in folder.iterdir():
            name = p.name
            if not (name.startswith(".") and TMP_MARK in name and p.is_file()):
                continue
            tail = name.rsplit(TMP_MARK, 1)[1]
            if tail.isdigit() and _pid_alive(int(tail)):
                continue
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed


def sweep_all_temps(directory: str | os.PathLike[str]) -> list[Path]:
    """Delete every temporary file in ``directory`` (only for a directory this process holds alone)."""
    return remove_stale_temps(directory)
