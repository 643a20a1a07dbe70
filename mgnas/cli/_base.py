"""Shared CLI plumbing: the command interface, exit codes, one-line errors, value parsing."""

from __future__ import annotations

import argparse
import json
import math
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE = 0, 1, 2

#: Documented ranges of the numeric flags, by argparse ``dest`` (inclusive). A flag outside its range is an
#: argparse error naming it, before any work. Config keys have their own ranges (``mgnas.config.LIMITS``).
FLAG_RANGES: dict[str, tuple[float, float]] = {
    "epochs": (1, 100_000), "epochs_per_trial": (1, 100_000), "gate_warmup_epochs": (0, 100_000),
    "trials": (1, 1_000_000), "study_trials": (0, 10_000), "oneshot_samples": (1, 1_000_000),
    "batch_size": (1, 1 << 20), "workers": (0, 1024), "image_size": (8, 4096), "seed": (0, 2**32 - 1),
    "max_params": (1, 10**12), "nni_port": (1, 65535), "per_device": (1, 64),
    "lr": (0.0, 1e6), "weight_decay": (0.0, 1e6), "gate_lr": (0.0, 1e6), "lambda_lr": (0.0, 1e6),
}
#: Flags whose values are KEY=VALUE pairs (``dest`` -> the flag to name in an error).
PAIR_FLAGS = {"sets": "--set", "arg": "--arg"}
#: The largest number an int flag or a KEY=VALUE number may hold (anything above is a typo or an attack).
MAX_INT = 2**63 - 1


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


def finite_float(text: str) -> float:
    """argparse ``type`` for every float flag: a finite number (``nan``/``inf`` are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def bounded_int(text: str) -> int:
    """argparse ``type`` for every int flag: an integer written as one (``1e20``, ``2.5`` are refused)."""
    try:
        value = int(text.strip().replace("_", ""), 10) if len(text) <= 40 else None
    except ValueError:
        value = None
    if value is None or abs(value) > MAX_INT:
        raise argparse.ArgumentTypeError(f"invalid integer: {text[:40]!r}")
    return value


class Parser(argparse.ArgumentParser):
    """The parser of ``mgnas`` and of every subcommand.

    - an error is ONE line, ``mgnas CMD: error: ...`` (no usage block), exit code 2;
    - ``type=float`` is :func:`finite_float` and ``type=int`` is :func:`bounded_int` for every flag;
    - numeric flags are checked against :data:`FLAG_RANGES` and KEY=VALUE flags for their ``=``, naming the flag.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register("type", float, finite_float)
        self.register("type", int, bounded_int)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        bounds = FLAG_RANGES.get(action.dest)
        if bounds is not None and action.help is not argparse.SUPPRESS:  # the documented range, in --help
            note = "range " + "..".join(f"{b:g}" if isinstance(b, float) else str(b) for b in bounds)
            action.help = f"{action.help} ({note})" if action.help else note
        return action

    def error(self, message: str) -> NoReturn:
        line = " ".join(str(message).split())
        self.exit(EXIT_USAGE, f"{self.prog}: error: {line}\n")

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        ns, extras = super().parse_known_args(args, namespace)
        for action in self._actions:
            value = getattr(ns, action.dest, None)
            if value is None or value is action.default or not action.option_strings:
                continue
            flag = action.option_strings[-1] if action.option_strings[-1].startswith("--") else action.option_strings[0]
            if action.dest in FLAG_RANGES and isinstance(value, (int, float)) and not isinstance(value, bool):
                lo, hi = FLAG_RANGES[action.dest]
                if not lo <= value <= hi:
                    self.error(f"argument {flag}: {value} is outside the valid range [{lo}, {hi}]")
            if action.dest in PAIR_FLAGS and isinstance(value, list):
                for item in value:
                    key, sep, _ = str(item).partition("=")
                    if not sep or not key.strip():
                        self.error(f"argument {flag}: expected KEY=VALUE, got {item!r}")
        return ns, extras


def check_input_file(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` as a readable regular file, else a UsageError saying why (missing, a directory, a FIFO ...)."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise UsageError(f"{what} {str(p)!r} does not exist") from None
    except OSError as err:
        raise UsageError(f"{what} {str(p)!r} cannot be read: {err.strerror or err}") from None
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{what} {str(p)!r} is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{what} {str(p)!r} is not a regular file")
    if not os.access(p, os.R_OK):
        raise UsageError(f"{what} {str(p)!r} is not readable (permission denied)")
    return p


class Command:
    """One subcommand (Optuna's ``add_arguments`` / ``take_action`` split)."""

    name: str = ""
    help: str = ""
    description: str = ""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def take_action(self, args: argparse.Namespace) -> int:  # pragma: no cover - interface
        raise NotImplementedError


def add_training_flags(parser: argparse.ArgumentParser, *, image_size_help: str, set_help: str) -> None:
    """The training flags shared by ``mgnas search`` and ``mgnas train`` (each maps them to its config keys)."""
    parser.add_argument("--seed", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--weight-decay", type=float)
    parser.add_argument("--optimizer", choices=("sgd", "adamw"))
    parser.add_argument("--workers", type=int, help="data loader worker processes")
    parser.add_argument("--amp", choices=("none", "bf16"))
    parser.add_argument("--image-size", type=int, help=image_size_help)
    parser.add_argument("--download", action="store_true", help="cifar: download if missing (needs a network)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", dest="sets", help=set_help)
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="progress bars on a terminal, one line per epoch elsewhere (on stderr)")


def _finite(value: Any, where: str, depth: int = 0) -> Any:
    if depth > 32:
        raise UsageError(f"{where}: the value is nested too deeply (more than 32 levels)")
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"{where}: must be a finite number, got {value}")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        raise UsageError(f"{where}: the integer {str(value)[:20]}... is too large")
    if isinstance(value, list):
        for v in value:
            _finite(v, where, depth + 1)
    elif isinstance(value, dict):
        for v in value.values():
            _finite(v, where, depth + 1)
    return value


def parse_value(text: str, where: str = "value") -> Any:
    """``"16"`` -> 16, ``"0.5"`` -> 0.5, ``"true"`` -> True, ``"[1,2]"`` -> [1, 2], else the string.

    ``NaN``/``Infinity`` (which JSON would accept), integers beyond 64 bits and values nested more than 32
    deep are a :class:`UsageError` naming ``where``.
    """
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    if len(text) > 100_000:
        raise UsageError(f"{where}: the value is too long ({len(text):,} characters)")
    if text.count("[") + text.count("{") > 32 and _nesting(text) > 32:
        raise UsageError(f"{where}: the value is nested too deeply (more than 32 levels)")
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return text
    except ValueError:  # e.g. an integer of more than 4300 digits
        raise UsageError(f"{where}: the number {text[:20]}... is too large") from None
    return _finite(value, where)


def _nesting(text: str) -> int:
    depth = deepest = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def parse_kwargs(items: list[str] | None, flag: str = "--arg") -> dict[str, Any]:
    """``["k=v", ...]`` (``--arg``/``-a`` model arguments, or ``--set`` config keys) -> ``{k: parse_value(v)}``."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{flag} expects KEY=VALUE, got {item!r}")
        out[key.strip()] = parse_value(value, where=f"{flag} {key.strip()}")
    return out
