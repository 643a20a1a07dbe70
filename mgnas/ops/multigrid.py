"""Multigrid convolution over a pyramid of spatial grids (Ke, Maire & Yu, CVPR 2017, arXiv:1611.07661).

A multigrid layer consumes a *list* of feature maps, finest first, each half the resolution of the
previous one, and produces a list of the same shape (paper §3, Fig. 2):

- :class:`MultigridConv2d` — Fig. 2 (multigrid convolutional layer). For grid i the input is
  ``concat[maxpool2x2(x_{i-1}), x_i, nearest_upsample_x2(x_{i+1})]`` (neighbours that do not exist
  are left out), followed by one conv per grid mapping that concatenation to grid i's width. The
  paper: "upsampling: nearest neighbor; downsampling: max-pooling" (Fig. 2); only *adjacent* grids
  communicate in one layer. The per-grid convs come from a **conv factory hook**
  ``conv_factory(grid, in_channels, out_channels, kernel_size) -> nn.Module`` so a builder can make
  them grouped convs, DGConvs or two-level group convs from a spec; the default is the paper's
  dense conv *with bias* (the authors' Torch code uses ``cudnn.SpatialConvolution``, biased).
- :class:`MultigridLayer` — conv + BatchNorm + ReLU on every grid: one layer of the MG and PMG
  networks (§3.1, Fig. 3).
- :class:`MultigridResidualUnit` — Fig. 4 (multigrid residual unit): two multigrid convs
  (conv-BN-ReLU, conv-BN), a per-grid identity shortcut, zero-padded on the channel axis where a
  grid widens (He et al.'s option A, as in the authors' code), then ReLU.
- :func:`pyramid_pool` — the input pyramid (§3.1): grid i is the image average-pooled by 2^i.
- :func:`multigrid_pool` / :class:`MultigridPool` — the transition between stages (Fig. 3): every
  grid is max-pooled 2x2, and with ``merge=True`` the two coarsest grids become one — the
  second-coarsest is max-pooled to the coarsest's resolution and the (unpooled) coarsest grid is
  concatenated to it, so the pyramid loses its coarsest level (the authors' ``mgPool``).
- Progressive multigrid (PMG, §3.2, Fig. 3 bottom) needs no extra op: a layer built for the
  ``k`` coarsest grids is applied to ``grids[-k:]`` and the finer grids pass through (``first_grid``
  of :class:`MultigridLayer` / :class:`MultigridResidualUnit`).

Departures and choices:
- Max-pooling uses ``ceil_mode=True`` (the authors' ``SpatialMaxPooling(2,2,2,2):ceil()``), and the
  upsampled coarser grid is cropped to the finer grid's size, so odd resolutions (7 -> 4 -> 8 -> 7)
  still line up. For the power-of-two inputs of the paper this is exactly x2 nearest upsampling.
- The input pyramid repeats a 2x2 average pool (``ceil_mode=True``) instead of one 2^i x 2^i pool;
  the two are identical whenever the size is divisible by 2^i (all of the paper's inputs).
- BatchNorm and ReLU live in :class:`MultigridLayer` / the residual unit, not in
  :class:`MultigridConv2d`, so a one-grid :class:`MultigridConv2d` is exactly a plain conv.
"""

from collections.abc import Callable, Sequence
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ConvFactory", "MultigridConv2d", "MultigridLayer", "MultigridResidualUnit", "MultigridPool",
    "pyramid_pool", "multigrid_pool", "concat_widths",
]

ConvFactory = Callable[[int, int, int, int], nn.Module]  # (grid, in_channels, out_channels, kernel_size)


def _widths(name: str, values: Sequence[int]) -> list[int]:
    out = [int(v) for v in values]
    if not out or any(v < 1 for v in out):
        raise ValueError(f"{name} must be a non-empty list of positive channel counts (finest grid first), "
                         f"got {list(values)}")
    return out


def _per_grid(name: str, value: Union[int, Sequence[int]], n: int) -> list[int]:
    out = [int(value)] * n if isinstance(value, int) else [int(v) for v in value]
    if len(out) != n or any(k < 1 or k % 2 == 0 for k in out):
        raise ValueError(f"{name} must be one odd positive int or one per grid ({n} values), got {value!r}")
    return out


def concat_widths(channels: Sequence[int]) -> list[int]:
    """Channels of grid i's concatenated input: its own plus those of its finer and coarser neighbours."""
    n = len(channels)
    return [sum(channels[j] for j in range(max(0, i - 1), min(n, i + 2))) for i in range(n)]


def _down(x: Tensor) -> Tensor:
    return F.max_pool2d(x, 2, 2, 0, 1, True)  # kernel, stride, padding, dilation, ceil_mode


def _up(x: Tensor, like: Tensor) -> Tensor:
    y = F.interpolate(x, scale_factor=2.0, mode="nearest")
    return y[:, :, : like.shape[-2], : like.shape[-1]]


def _default_factory(bias: bool) -> ConvFactory:
    def make(grid: int, cin: int, cout: int, k: int) -> nn.Module:
        return nn.Conv2d(cin, cout, k, 1, (k - 1) // 2, bias=bias)

    return make


class MultigridConv2d(nn.Module):
    """One multigrid convolution (Fig. 2): per grid, conv of [down(finer), self, up(coarser)].

    Args:
        in_channels: width of every input grid, finest first.
        out_channels: width of every output grid (same number of grids).
        kernel_size: one odd size, or one per grid (the paper uses 1x1 on 1x1/2x2 grids).
        bias: bias of the default per-grid convs (the paper's convs have one).
        conv_factory: ``(grid, in_channels, out_channels, kernel_size) -> nn.Module``, called once per
            grid with ``in_channels`` the concatenated width; the module must keep the spatial size.

    ``forward(grids)`` takes and returns a list of tensors ``N x C_i x H_i x W_i`` with
    ``H_{i+1} = ceil(H_i / 2)``.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: Sequence[int],
        kernel_size: Union[int, Sequence[int]] = 3,
        bias: bool = True,
        conv_factory: Optional[ConvFactory] = None,
    ) -> None:
        super().__init__()
        self.in_channels = _widths("in_channels", in_channels)
        self.out_channels = _widths("out_channels", out_channels)
        if len(self.in_channels) != len(self.out_channels):
            raise ValueError(f"in_channels has {len(self.in_channels)} grids but out_channels has "
                             f"{len(self.out_channels)}; give one width per grid on both sides")
        n = len(self.in_channels)
        self.kernel_size = _per_grid("kernel_size", kernel_size, n)
        self.concat_channels = concat_widths(self.in_channels)
        make = conv_factory if conv_factory is not None else _default_factory(bias)
        self.convs = nn.ModuleList(
            [make(i, self.concat_channels[i], self.out_channels[i], self.kernel_size[i]) for i in range(n)]
        )

    @property
    def num_grids(self) -> int:
        return len(self.in_channels)

    def forward(self, grids: list[Tensor]) -> list[Tensor]:
        n = len(self.in_channels)
        if len(grids) != n:
            raise ValueError(f"MultigridConv2d expects {n} grids, got {len(grids)}")
        out: list[Tensor] = []
        for i, conv in enumerate(self.convs):
            parts: list[Tensor] = []
            if i > 0:
                parts.append(_down(grids[i - 1]))
            parts.append(grids[i])
            if i + 1 < n:
                parts.append(_up(grids[i + 1], grids[i]))
            out.append(conv(torch.cat(parts, 1) if len(parts) > 1 else parts[0]))
        return out

    def extra_repr(self) -> str:
        return f"{self.in_channels} -> {self.out_channels}, kernel_size={self.kernel_size}"


class _GridBN(nn.Module):
    """BatchNorm (and optionally ReLU) on every grid."""

    def __init__(self, channels: Sequence[int], relu: bool) -> None:
        super().__init__()
        self.bns = nn.ModuleList([nn.BatchNorm2d(c) for c in channels])
        self.relu = relu

    def forward(self, grids: list[Tensor]) -> list[Tensor]:
        out: list[Tensor] = []
        for i, bn in enumerate(self.bns):
            y = bn(grids[i])
            out.append(F.relu(y) if self.relu else y)
        return out


def _split(grids: list[Tensor], first: int, n: int) -> list[Tensor]:
    if len(grids) != first + n:
        raise ValueError(f"the layer expects {first + n} grids ({first} passed through), got {len(grids)}")
    return grids[first:]


class MultigridLayer(nn.Module):
    """Multigrid conv -> BN -> ReLU on every grid: one layer of MG / PMG (§3.1-3.2, Fig. 3).

    ``first_grid`` > 0 makes a progressive layer: it acts on ``grids[first_grid:]`` (sized by
    ``in_channels``) and the finer grids are passed through unchanged.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: Sequence[int],
        kernel_size: Union[int, Sequence[int]] = 3,
        bias: bool = True,
        conv_factory: Optional[ConvFactory] = None,
        first_grid: int = 0,
    ) -> None:
        super().__init__()
        if first_grid < 0:
            raise ValueError(f"first_grid must be >= 0, got {first_grid}")
        self.first_grid = first_grid
        self.conv = MultigridConv2d(in_channels, out_channels, kernel_size, bias, conv_factory)
        self.bn = _GridBN(self.conv.out_channels, relu=True)

    def forward(self, grids: list[Tensor]) -> list[Tensor]:
        active = _split(grids, self.first_grid, len(self.conv.in_channels))
        return grids[: self.first_grid] + self.bn(self.conv(active))


class MultigridResidualUnit(nn.Module):
    """Multigrid residual unit (Fig. 4): ``relu(BN(mgconv2(relu(BN(mgconv1(x))))) + pad(x))`` per grid.

    The shortcut of grid i is the identity, zero-padded on the channel axis when
    ``out_channels[i] > in_channels[i]`` (no parameters, as in the authors' code); a grid may not
    narrow. ``conv2_factory`` defaults to ``conv_factory``; ``first_grid`` as in :class:`MultigridLayer`.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: Sequence[int],
        kernel_size: Union[int, Sequence[int]] = 3,
        bias: bool = True,
        conv_factory: Optional[ConvFactory] = None,
        conv2_factory: Optional[ConvFactory] = None,
        first_grid: int = 0,
    ) -> None:
        super().__init__()
        if first_grid < 0:
            raise ValueError(f"first_grid must be >= 0, got {first_grid}")
        self.first_grid = first_grid
        self.conv1 = MultigridConv2d(in_channels, out_channels, kernel_size, bias, conv_factory)
        self.bn1 = _GridBN(self.conv1.out_channels, relu=True)
        self.conv2 = MultigridConv2d(out_channels, out_channels, kernel_size, bias,
                                     conv2_factory if conv2_factory is not None else conv_factory)
        self.bn2 = _GridBN(self.conv1.out_channels, relu=False)
        narrow = [i for i, (a, b) in enumerate(zip(self.conv1.in_channels, self.conv1.out_channels)) if b < a]
        if narrow:
            i = narrow[0]
            raise ValueError(f"grid {i} narrows from {self.conv1.in_channels[i]} to {self.conv1.out_channels[i]} "
                             f"channels; a zero-padded identity shortcut needs out_channels >= in_channels")
        self.pads = [b - a for a, b in zip(self.conv1.in_channels, self.conv1.out_channels)]

    def forward(self, grids: list[Tensor]) -> list[Tensor]:
        active = _split(grids, self.first_grid, len(self.pads))
        h = self.bn2(self.conv2(self.bn1(self.conv1(active))))
        out: list[Tensor] = []
        for i, x in enumerate(active):
            pad = self.pads[i]
            short = F.pad(x, [0, 0, 0, 0, 0, pad]) if pad > 0 else x
            out.append(F.relu(h[i] + short))
        return grids[: self.first_grid] + out


def pyramid_pool(x: Tensor, num_grids: int) -> list[Tensor]:
    """The input pyramid (§3.1): ``[x, avgpool2(x), avgpool4(x), ...]`` with ``num_grids`` levels."""
    if num_grids < 1:
        raise ValueError(f"num_grids must be >= 1, got {num_grids}")
    out = [x]
    for _ in range(num_grids - 1):
        out.append(F.avg_pool2d(out[-1], 2, 2, 0, True))  # kernel, stride, padding, ceil_mode
    return out


def multigrid_pool(grids: list[Tensor], merge: bool = False) -> list[Tensor]:
    """Stage transition (Fig. 3): max-pool every grid; ``merge`` joins the two coarsest grids.

    With ``merge`` the second-coarsest grid is max-pooled to the coarsest grid's resolution and the
    coarsest grid (not pooled) is concatenated to it: widths ``[.., a, b] -> [.., a + b]``.
    """
    if merge and len(grids) < 2:
        raise ValueError("merge needs at least two grids")
    last = len(grids) - 1 if merge else len(grids)
    out = [_down(g) for g in grids[:last]]
    if merge:
        coarse = grids[last]
        if out[-1].shape[-2:] != coarse.shape[-2:]:
            raise ValueError(f"cannot merge grids: the pooled grid is {list(out[-1].shape[-2:])} but the coarsest "
                             f"is {list(coarse.shape[-2:])}; use input sizes divisible by 2^(number of grids)")
        out[-1] = torch.cat([out[-1], coarse], 1)
    return out


class MultigridPool(nn.Module):
    """Module form of :func:`multigrid_pool`."""

    def __init__(self, merge: bool = False) -> None:
        super().__init__()
        self.merge = merge

    def forward(self, grids: list[Tensor]) -> list[Tensor]:
        return multigrid_pool(grids, self.merge)

    def extra_repr(self) -> str:
        return f"merge={self.merge}"
