"""Training progress on stderr (rank 0 only): a live bar on a terminal, one line per epoch everywhere.

The epoch line fits 100 columns and shows each quantity once::

    epoch  3/90  loss 0.4127  acc 88.1%  val 86.9%  ζ/o 0.981  lr 0.098  1,843 img/s  ETA 2:41:07

``ζ/o`` is the hard (binarised gates) complexity over the budget at the end of the epoch (the search's
``zeta_over_o_hard``), ETA the mean epoch time so far times the epochs left. Everything else a strategy logs
stays in ``history.jsonl``. Results (summaries, tables) go to stdout; this module writes only to stderr.
"""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

__all__ = ["EpochProgress", "format_stats", "format_epoch", "LINE_WIDTH"]

#: The widest epoch line (columns).
LINE_WIDTH = 100


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isfinite(value) and value != 0 and (abs(value) >= 1e4 or abs(value) < 1e-3):
            return f"{value:.3g}"
        return f"{value:.4g}"
    return str(value)


def _num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _hms(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}"


def _zeta(stats: dict[str, Any]) -> Any:
    for key in ("zeta_over_o_hard", "zeta_over_o"):
        if _num(stats.get(key)):
            return stats[key]
    return None


def format_stats(stats: dict[str, Any]) -> str:
    """The live bar's fields: ``loss 0.532  acc 83.1%  ζ/o 1.3  1,234 img/s`` (those present)."""
    parts = []
    loss = stats.get("train_loss", stats.get("loss"))
    if _num(loss):
        parts.append(f"loss {_fmt(float(loss))}")
    acc = stats.get("train_accuracy", stats.get("accuracy"))
    if _num(acc):
        parts.append(f"acc {100 * acc:.1f}%")
    zeta = _zeta(stats)
    if zeta is not None:
        parts.append(f"ζ/o {zeta:.3f}")
    if _num(stats.get("images_per_s")):
        parts.append(f"{stats['images_per_s']:,.0f} img/s")
    return "  ".join(parts)


def format_epoch(row: dict[str, Any], epochs: int, eta_seconds: float | None = None,
                 width: int = LINE_WIDTH) -> str:
    """One epoch's line from its history row, at most ``width`` columns (the least useful fields go first)."""
    digits = len(str(epochs))
    parts: list[tuple[int, str]] = [(0, f"epoch {row.get('epoch', '?'):>{digits}}/{epochs}")]  # (priority, text)
    if _num(row.get("train_loss")):
        parts.append((1, f"loss {_fmt(float(row['train_loss']))}"))
    if _num(row.get("train_accuracy")):
        parts.append((3, f"acc {100 * row['train_accuracy']:.1f}%"))
    if _num(row.get("val_accuracy")):
        parts.append((1, f"val {100 * row['val_accuracy']:.1f}%"))
    zeta = _zeta(row)
    if zeta is not None:
        parts.append((1, f"ζ/o {zeta:.3f}"))
    if _num(row.get("lr")):
        parts.append((5, f"lr {row['lr']:.2g}"))
    if _num(row.get("images_per_s")):
        parts.append((2, f"{row['images_per_s']:,.0f} img/s"))
    if eta_seconds is not None:
        parts.append((2, f"ETA {_hms(eta_seconds)}"))
    elif _num(row.get("seconds")):
        parts.append((4, f"{row['seconds']:.1f}s"))
    while len("  ".join(p for _, p in parts)) > width and len(parts) > 1:
        drop = max(range(len(parts)), key=lambda i: (parts[i][0], i))
        parts.pop(drop)
    return "  ".join(p for _, p in parts)


class EpochProgress:
    """One bar per epoch; ``enabled=False`` makes every method a no-op."""

    def __init__(self, enabled: bool, console: Console | None = None) -> None:
        self.enabled = enabled
        self.console = console or Console(stderr=True, soft_wrap=True)
        self.live = enabled and self.console.is_terminal
        self._progress: Progress | None = None
        self._task = None
        self._seconds: list[float] = []

    def start(self, epoch: int, epochs: int, steps: int) -> None:
        if not self.live:
            return
        self._progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(bar_width=24), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[stats]}"),
            console=self.console, transient=True)
        self._progress.start()
        self._task = self._progress.add_task("train", total=steps, epoch=f"{epoch}/{epochs}", stats="")

    def update(self, stats: dict[str, Any]) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=1, stats=format_stats(stats))

    def end(self, row: dict[str, Any], epochs: int) -> None:
        self.close()
        if not self.enabled:
            return
        eta = None
        if _num(row.get("seconds")):
            self._seconds.append(float(row["seconds"]))
            left = max(epochs - int(row.get("epoch", 0)), 0)
            eta = left * sum(self._seconds) / len(self._seconds)
        self.console.print(format_epoch(row, epochs, eta), highlight=False, markup=False)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
