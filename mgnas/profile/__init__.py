"""Parameters and MACs, total and per layer (``mgnas count`` prints them)."""

from ._count import CountResult, LayerCount, check_input_size, count, parse_input_size

__all__ = ["count", "CountResult", "LayerCount", "parse_input_size", "check_input_size"]
