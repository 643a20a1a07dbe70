"""``ConvSpec``: what one convolution of a network *is* (kind, shape, grouping, permutations).

A conv spec is stored in the JSON as an object with a ``"kind"`` key, e.g.::

    {"kind": "group", "in_channels": 128, "out_channels": 128, "kernel_size": 3, "groups": 32}

Kinds (the op each builds is named in brackets, see :func:`mgnas.ops.create_conv2d`):

- ``dense``     a plain convolution, ``groups`` must be 1                  [``nn.Conv2d``]
- ``group``     grouped convolution with optional input/output channel permutations and an optional
                ShuffleNet channel shuffle of the output (``shuffle`` = groups to shuffle across)
                                                                           [``GroupConv2d``]
- ``dgconv``    searchable: groups learned by DGConv gates (Zhang et al., Eq. 3-7)    [``DGConv2d``]
- ``two_level`` group conv plus the fused coarse branch of Lee et al. Eq. 3.5, ``groups`` = N
                                                                           [``TwoLevelGroupConv2d``]

Depthwise is ``group`` with ``groups == in_channels == out_channels``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from ._errors import SpecError

CONV_KINDS = ("dense", "group", "dgconv", "two_level")


@dataclass(frozen=True)
class ConvSpec:
    """A single convolution. Validated on construction; errors name the field."""

    in_channels: int
    out_channels: int
    kernel_size: int = 1
    stride: int = 1
    kind: str = "dense"
    groups: int = 1
    padding: int | None = None  # None: "same"-style (k - 1) // 2 * dilation
    dilation: int = 1
    bias: bool = False
    in_perm: tuple[int, ...] | None = None
    out_perm: tuple[int, ...] | None = None
    shuffle: int = 0

    def __post_init__(self) -> None:  # normalise lists from JSON into tuples
        for name in ("in_perm", "out_perm"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        self.check()

    # ------------------------------------------------------------------ validation
    def check(self, path: str = "") -> None:
        """Raise :class:`SpecError` (prefixed by ``path``) if this conv cannot be built."""
        p = (path + ".") if path else ""
        for name in ("in_channels", "out_channels", "kernel_size", "stride", "groups", "dilation"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SpecError(p + name, f"must be a positive integer, got {value!r}")
        if self.kind not in CONV_KINDS:
            raise SpecError(p + "kind", f"unknown conv kind {self.kind!r}; valid kinds: {', '.join(CONV_KINDS)}")
        if self.padding is not None and (not isinstance(self.padding, int) or self.padding < 0):
            raise SpecError(p + "padding", f"must be a non-negative integer or null, got {self.padding!r}")
        if self.padding is not None and self.padding > (self.kernel_size - 1) * self.dilation:
            raise SpecError(
                p + "padding",
                f"{self.padding} exceeds the kernel's reach {(self.kernel_size - 1) * self.dilation} "
                f"(kernel_size {self.kernel_size}, dilation {self.dilation}); use at most that",
            )
        if self.kind == "dense" and self.groups != 1:
            raise SpecError(p + "groups", f"a dense conv has groups 1, got {self.groups}; use kind 'group'")
        if self.kind in ("group", "two_level"):
            for side in ("in_channels", "out_channels"):
                c = getattr(self, side)
                if c % self.groups:
                    raise SpecError(p + "groups", f"{self.groups} does not divide {c} ({side})")
        if self.kind == "two_level" and self.dilation != 1:
            raise SpecError(p + "dilation", "a two_level conv has no dilation (Lee et al. §3.2); use 1")
        if self.kind == "dgconv" and self.groups != 1:
            raise SpecError(p + "groups", "a dgconv learns its groups; leave groups at 1")
        for name, n in (("in_perm", self.in_channels), ("out_perm", self.out_channels)):
            perm = getattr(self, name)
            if perm is None:
                continue
            if self.kind != "group":
                raise SpecError(p + name, f"permutations are only allowed on kind 'group', not {self.kind!r}")
            if len(perm) != n or sorted(perm) != list(range(n)):
                raise SpecError(p + name, f"must be a permutation of 0..{n - 1} (length {n}), got length {len(perm)}")
        if self.shuffle:
            if self.kind != "group":
                raise SpecError(p + "shuffle", "channel shuffle is only allowed on kind 'group'")
            if self.out_channels % self.shuffle:
                raise SpecError(p + "shuffle", f"{self.shuffle} does not divide {self.out_channels} (out_channels)")

    # ------------------------------------------------------------------ derived values
    @property
    def group_size(self) -> int:
        return self.in_channels // self.groups

    def num_params(self) -> int:
        """Weight (+ bias) count of the static conv this spec builds (not defined for ``dgconv``)."""
        k2 = self.kernel_size * self.kernel_size
        n = self.in_channels * self.out_channels * k2 // self.groups
        if self.kind == "two_level":  # Lee et al. §3.2: d^2 n / N per group (R0) + m N (P0)
            n += self.in_channels * k2 + self.out_channels * self.groups
        if self.kind == "dgconv":
            n = self.in_channels * self.out_channels * k2
        return n + (self.out_channels if self.bias else 0)

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        """JSON form; fields at their default value are omitted (``kind`` and channels always kept)."""
        out: dict[str, Any] = {"kind": self.kind}
        defaults = {f.name: f.default for f in fields(self)}
        for name, value in asdict(self).items():
            if name == "kind":
                continue
            if name in ("in_channels", "out_channels") or value != defaults[name]:
                out[name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str = "") -> ConvSpec:
        p = (path + ".") if path else ""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpecError(p + unknown[0], f"unknown conv key; valid keys: {', '.join(sorted(known))}")
        for required in ("in_channels", "out_channels"):
            if required not in data:
                raise SpecError(p + required, "missing")
        try:
            spec = cls(**dict(data))
        except SpecError as err:
            raise SpecError(p + err.path, err.reason) from None
        except TypeError as err:  # wrong value types that dataclass init rejects
            raise SpecError(path, str(err)) from None
        object.__setattr__(spec, "path", path)  # where it was read (not a field: not hashed, not saved)
        return spec

    def replace(self, **changes: Any) -> ConvSpec:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data.update(changes)
        return ConvSpec(**data)


def is_conv(value: Any) -> bool:
    """True for the JSON form of a conv spec (a mapping with a ``kind`` key)."""
    return isinstance(value, Mapping) and "kind" in value


def divisors(n: int) -> list[int]:
    """All divisors of ``n`` in increasing order (used for valid-value hints)."""
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))
