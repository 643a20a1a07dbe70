"""Parameters and MACs, total and per layer (``mgnas count`` prints them)."""

from ._count import CountResult, LayerCount, count, parse_input_size

__all__ = ["count", "CountResult", "LayerCount", "parse_input_size"]
