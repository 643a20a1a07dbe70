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
