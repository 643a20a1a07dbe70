"""``BlockReader``: strict, path-aware reading of one block object by a family builder.

Every builder reads its blocks through a reader, so a misspelt or unknown key, a missing field
or a wrong type is a :class:`SpecError` that names the exact field path, and the builder's reads
*are* the schema (no separate schema to drift out of sync)::

    with BlockReader(block, "stages[1].blocks[0]") as b:
        stride = b.int("stride", default=1)
        conv1 = b.conv("conv1")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._conv import ConvSpec
from ._errors import SpecError

_MISSING = object()


class BlockReader:
    def __init__(self, block: Mapping[str, Any], path: str) -> None:
        if not isinstance(block, Mapping):
            raise SpecError(path, f"expected a JSON object, got {type(block).__name__}")
        self.block = block
        self.path = path
        self._used: set[str] = {"type"}

    @property
    def type(self) -> str:
        return str(self.block.get("type", ""))

    def _field(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        self._used.add(key)
        if key in self.block:
            return self.block[key]
        if default is _MISSING:
            raise SpecError(self._field(key), "missing")
        return default

    def has(self, key: str) -> bool:
        return key in self.block

    def int(self, key: str, default: Any = _MISSING, minimum: int = 1) -> int:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise SpecError(self._field(key), f"must be an integer >= {minimum}, got {value!r}")
        return value

    def float(self, key: str, default: Any = _MISSING) -> float:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(self._field(key), f"must be a number, got {value!r}")
        return float(value)

    def bool(self, key: str, default: Any = _MISSING) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise SpecError(self._field(key), f"must be true or false, got {value!r}")
        return value

    def str(self, key: str, default: Any = _MISSING, choices: Sequence[str] | None = None) -> str:
        value = self.raw(key, default)
        if not isinstance(value, str):
            raise SpecError(self._field(key), f"must be a string, got {value!r}")
        if choices is not None and value not in choices:
            raise SpecError(self._field(key), f"{value!r} is not one of {', '.join(map(repr, choices))}")
        return value

    def ints(self, key: str, default: Any = _MISSING) -> list[int]:
        value = self.raw(key, default)
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise SpecError(self._field(key), f"must be a list of integers, got {value!r}")
        return list(value)

    def conv(self, key: str, optional: bool = False) -> ConvSpec | None:
        value = self.raw(key, None if optional else _MISSING)
        if value is None:
            return None
        return ConvSpec.from_dict(value, self._field(key))

    def blocks(self, key: str) -> list[BlockReader]:
        """A nested list of sub-blocks (e.g. MGIC levels), each with its own reader."""
        value = self.raw(key)
        if not isinstance(value, list):
            raise SpecError(self._field(key), f"must be a list, got {type(value).__name__}")
        return [BlockReader(v, f"{self._field(key)}[{i}]") for i, v in enumerate(value)]

    def sub(self, key: str) -> BlockReader:
        return BlockReader(self.raw(key), self._field(key))

    def check_channels(self, conv: ConvSpec | None, key: str, cin: int, cout: int) -> None:
        """Assert that a conv of this block has the channel counts the block's wiring needs."""
        if conv is None:
            return
        if conv.in_channels != cin:
            raise SpecError(self._field(f"{key}.in_channels"), f"is {conv.in_channels} but the block feeds it {cin}")
        if conv.out_channels != cout:
            raise SpecError(self._field(f"{key}.out_channels"), f"is {conv.out_channels} but the block needs {cout}")

    def done(self) -> None:
        unknown = sorted(set(self.block) - self._used)
        if unknown:
            used = ", ".join(sorted(self._used - {"type"}))
            raise SpecError(self._field(unknown[0]), f"unknown key for block type {self.type!r}; valid keys: {used}")

    def __enter__(self) -> BlockReader:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.done()
