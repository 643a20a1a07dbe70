"""Shared CLI plumbing: the command interface, exit codes, one-line errors, value parsing."""

from __future__ import annotations

import argparse
import json
from typing import Any

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


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
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def parse_value(text: str) -> Any:
    """``"16"`` -> 16, ``"0.5"`` -> 0.5, ``"true"`` -> True, ``"[1,2]"`` -> [1, 2], else the string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_kwargs(items: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--arg expects KEY=VALUE, got {item!r}")
        out[key.strip()] = parse_value(value)
    return out
