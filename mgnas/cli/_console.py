"""Where the CLI writes: results to stdout, progress and errors to stderr, lines never cut mid-word.

Rich wraps at 80 columns when the output is not a terminal (a log file, a pipe, CI), which splits numbers and
paths over lines. These consoles never hard-wrap text (a long line stays one line) and give tables room; a table
is at least as wide as its title, so the title is never broken either.
"""

from __future__ import annotations

from typing import Any

__all__ = ["console", "table"]

#: The width assumed for tables when the output is not a terminal.
PIPE_WIDTH = 160


def console(stderr: bool = False) -> Any:
    """A rich Console on stdout (results) or stderr (progress) that does not hard-wrap text."""
    from rich.console import Console

    out = Console(stderr=stderr, soft_wrap=True)
    if not out.is_terminal:
        out = Console(stderr=stderr, soft_wrap=True, width=PIPE_WIDTH)
    return out


def table(title: str = "", **kwargs: Any) -> Any:
    """A rich Table whose title fits on one line."""
    from rich.table import Table

    kwargs.setdefault("min_width", len(title) + 2 if title else None)
    return Table(title=title or None, **kwargs)
