"""Rich progress bar for training epochs (rank 0 only): loss, accuracy, images/s and the loss_fn's logs.

The live bar is drawn only on a terminal; elsewhere (logs, CI) one summary line per epoch is printed.
"""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

__all__ = ["EpochProgress", "format_stats"]

#: Short display names for well-known log keys.
ALIASES = {"zeta_over_o": "ζ/o", "images_per_s": "img/s", "train_accuracy": "acc", "train_loss": "loss"}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isfinite(value) and value != 0 and (abs(value) >= 1e4 or abs(value) < 1e-3):
            return f"{value:.3g}"
        return f"{value:.4g}"
    return str(value)


def format_stats(stats: dict[str, Any]) -> str:
    """``loss 0.532 · acc 83.1% · 1234 img/s · ζ/o 1.3`` (scalars only; lists are skipped)."""
    parts = []
    for key, value in stats.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        name = ALIASES.get(key, key)
        if key.endswith("accuracy"):
            parts.append(f"{name} {100 * value:.1f}%")
        elif key == "images_per_s":
            parts.append(f"{value:.0f} {name}")
        else:
            parts.append(f"{name} {_fmt(value)}")
    return " · ".join(parts)


class EpochProgress:
    """One bar per epoch; ``enabled=False`` makes every method a no-op."""

    def __init__(self, enabled: bool, console: Console | None = None) -> None:
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self.live = enabled and self.console.is_terminal
        self._progress: Progress | None = None
        self._task = None

    def start(self, epoch: int, epochs: int, steps: int) -> None:
        if not self.live:
            return
        self._progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[stats]}"),
            console=self.console, transient=True)
        self._progress.start()
        self._task = self._progress.add_task("train", total=steps, epoch=f"{epoch}/{epochs}", stats="")

    def update(self, stats: dict[str, Any]) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=1, stats=format_stats(stats))

    def end(self, row: dict[str, Any], epochs: int) -> None:
        self.close()
        if self.enabled:
            shown = {k: v for k, v in row.items() if k not in ("epoch", "seconds")}
            self.console.print(f"epoch {row['epoch']}/{epochs} · {format_stats(shown)} · {row['seconds']:.1f}s",
                               highlight=False)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
