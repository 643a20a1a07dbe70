"""Constructor checks shared by the conv layers: one clear ValueError that says what to change."""

import math
from typing import Optional

from ..spec import divisors


def check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_padding(kernel_size: int, padding: Optional[int], dilation: int) -> int:
    """Resolve ``padding=None`` to same padding ``(k - 1) // 2 * dilation``; reject out-of-reach padding."""
    check_positive(kernel_size=kernel_size, dilation=dilation)
    if padding is None:
        return (kernel_size - 1) // 2 * dilation
    reach = (kernel_size - 1) * dilation
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be a non-negative integer or None, got {padding!r}")
    if padding > reach:
        raise ValueError(
            f"padding {padding} exceeds the kernel's reach {reach} (kernel_size {kernel_size}, "
            f"dilation {dilation}); use at most {reach}, or None for same padding"
        )
    return padding


def check_groups(groups: int, in_channels: int, out_channels: int) -> None:
    """``groups`` must divide both channel counts; the message lists the valid values."""
    check_positive(groups=groups)
    if in_channels % groups or out_channels % groups:
        common = math.gcd(in_channels, out_channels)
        raise ValueError(
            f"groups={groups} does not divide in_channels={in_channels} and out_channels={out_channels}; "
            f"valid groups (divisors of {common}): {', '.join(map(str, divisors(common)))}"
        )
