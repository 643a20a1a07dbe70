"""``create_conv2d``: one factory from a conv *kind* to a module (timm's ``create_conv2d`` idea).

Model builders never instantiate conv classes directly; they call this with the fields of a
:class:`mgnas.spec.ConvSpec`, so swapping dense / group / DGConv / two-level convs is a change of
spec, not of model code.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def same_padding(kernel_size: int, dilation: int = 1) -> int:
    return (kernel_size - 1) // 2 * dilation


def create_conv2d(
    kind: str,
    in_channels: int,
    out_channels: int,
    kernel_size: int = 1,
    stride: int = 1,
    padding: int | None = None,
    dilation: int = 1,
    groups: int = 1,
    bias: bool = False,
    in_perm: Sequence[int] | None = None,
    out_perm: Sequence[int] | None = None,
    shuffle: int = 0,
) -> nn.Module:
    """Build the conv of a given kind.

    ``group`` without permutations or shuffle is a plain ``nn.Conv2d(groups=...)``: the fastest and
    most export-friendly form. ``padding=None`` means "same" padding for odd kernels.
    """
    pad = same_padding(kernel_size, dilation) if padding is None else padding
    if kind == "dense" or (kind == "group" and in_perm is None and out_perm is None and not shuffle):
        if kind == "dense" and groups != 1:
            raise ValueError(f"a dense conv has groups=1, got groups={groups}; use kind='group'")
        return nn.Conv2d(in_channels, out_channels, kernel_size, stride, pad, dilation, groups=groups, bias=bias)
    if kind == "group":
        from .group import GroupConv2d

        return GroupConv2d(
            in_channels, out_channels, kernel_size, stride, pad, dilation, groups=groups, bias=bias,
            in_perm=in_perm, out_perm=out_perm, shuffle=shuffle,
        )
    if kind == "dgconv":
        from .dgconv import DGConv2d

        return DGConv2d(in_channels, out_channels, kernel_size, stride, pad, dilation, bias=bias)
    if kind == "two_level":
        from .two_level import TwoLevelGroupConv2d

        if dilation != 1:
            raise ValueError(f"a two_level conv has no dilation (Lee et al. §3.2), got dilation={dilation}")

        return TwoLevelGroupConv2d(in_channels, out_channels, kernel_size, stride, pad, groups=groups, bias=bias)
    raise ValueError(f"unknown conv kind {kind!r}; valid kinds: dense, group, dgconv, two_level")
