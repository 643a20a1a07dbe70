"""The multigrid-in-channels (MGIC) block of Eliasof, Ephrath, Ruthotto & Treister (paper Alg. 1, §4.1-4.4).

A V-cycle over a hierarchy of *channel* levels c_0 = channels, c_{j+1} = c_j / 2 (same spatial size)::

    x_{j+1} = R_j x_j                                  for j = 0 .. n-1   (restrict)
    x_n     <- CNN-block(x_n)                          full (ungrouped) block on the coarsest level
    x_j     <- x_j + BN(P_j(x_{j+1} - R_j x_j))        for j = n-1 .. 0   (prolong the coarse correction)
    x_j     <- CNN-block(x_j, group_size = s_j)

- ``R_j`` (:class:`ChannelRestriction`): grouped 1x1 conv halving the channels, ``c_j / s_g`` groups (§4.3).
- ``P_j`` (:class:`ChannelProlongation`): grouped 1x1 conv with the transposed block structure and its
  own weight (as in the authors' code; the paper does not tie it to ``R_j^T`` either).
- Bottleneck CNN blocks carry ``expansion * c_j`` channels between levels (ResNet-50: 4 * planes); the
  transfers act on those with ``c_j / s_g`` groups, exactly as the authors' code does (``expansion``).
- If every CNN block is the identity the block is the identity (§4.3): the prolonged residual is zero.

Where the paper and the authors' code differ (all selectable):

- **Level rule** (:func:`mgic_levels`). ``"paper"`` (§4.1, the default): halve while c_j > s_c, so
  c_n <= s_c (Alg. 1's ``floor(log2(c/s_c))`` agrees when c/s_c is a power of two). ``"code"`` (the
  authors' public code, ``if nOutput / 2 < mgFcChannel``): always coarsen at least once, then halve while
  c_j >= s_c, so c_n < s_c -- the test is on the *fine* width against 2 * s_c. Why "paper" is the
  default: it reproduces all three MGIC-ResNet-50 rows of Table 3 within 3% (9.15M / 14.96M / 6.24M),
  while "code" hits (s_g, s_c) = (32, 64) exactly (9.41M) but misses (64, 64) by +8% and (16, 64) by -4%.
- **Transfer init**. ``"paper"`` (default, §4.3): positive weights with row sums 1, i.e. a (random
  convex) weighted average of the channels of the group. ``"code"``: what the authors' code actually
  runs -- its constant 1/s_g init is overwritten by the network-wide Kaiming init (the name filter
  ``not 'R' in name or not 'P' in name`` is always true), so R and P are
  ``kaiming_normal_(mode="fan_out", nonlinearity="relu")``: signed, std sqrt(2 / out_channels).
  ``"code_constant"``: the constant the code *meant* to use (1/s_g): R rows sum to 1, P rows to 1/2
  (the values of basic blocks; with bottlenecks the code's constant gives 4 and 2 -- we keep 1 and 1/2).
- The CNN block's own residual and final ReLU live inside the pluggable block (as in the authors'
  ``resnetStep``), so ``MGICBlock`` adds nothing but the transfers and the prolongation BN.
- Stage transitions (:class:`MGICConnector`): a depthwise-style kxk strided conv with channel
  multiplier c_out/c_in (§4.3 "Changing resolution blocks"), + BN + ReLU. When c_in does not divide
  c_out (MobileNet widths) it uses ``gcd(c_in, c_out)`` groups.
"""

import math
from collections.abc import Callable, Sequence
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from .factory import create_conv2d

__all__ = [
    "MGICBlock", "MGICConnector", "ChannelRestriction", "ChannelProlongation",
    "BasicCNNBlock", "BottleneckCNNBlock", "InvertedResidualCNNBlock", "MGICLevel", "SqueezeExcite",
    "mgic_levels", "valid_group_sizes", "make_divisible", "LEVEL_RULES", "TRANSFER_INITS",
]

LEVEL_RULES = ("paper", "code")
TRANSFER_INITS = ("paper", "code", "code_constant")
CNNFactory = Callable[[int, int, Optional[int]], nn.Module]


# --------------------------------------------------------------------------- level hierarchy
def _natural_levels(channels: int, coarse_size: int, rule: str) -> list[int]:
    """Widths per level under ``rule`` (no cap); ValueError if a width that must be halved is odd."""
    widths = [channels]

    def halve() -> None:
        c = widths[-1]
        if c % 2:
            chain = " -> ".join(map(str, widths))
            raise ValueError(f"coarse_size {coarse_size}: the hierarchy {chain} must halve the odd width {c} "
                             f"(level_rule {rule!r})")
        widths.append(c // 2)

    if rule == "code":
        halve()
        while widths[-1] >= coarse_size:
            halve()
    else:
        while widths[-1] > coarse_size:
            halve()
    return widths


def _ok(fn: Callable[[], object]) -> bool:
    try:
        fn()
    except ValueError:
        return False
    return True


def valid_group_sizes(widths: Sequence[int], expansion: int = 1) -> list[int]:
    """Group sizes valid on every grouped (non-coarsest) level of ``widths``.

    A group size must divide the level width c_j, and the restriction (``expansion * c_j`` ->
    ``expansion * c_j / 2`` channels, ``c_j / s`` groups) needs ``expansion * s`` to be even.
    """
    grouped = list(widths[:-1])
    if not grouped:
        return []
    smallest = min(grouped)
    return [s for s in range(1, smallest + 1) if all(c % s == 0 for c in grouped) and (expansion * s) % 2 == 0]


def mgic_levels(channels: int, group_size: Optional[int], coarse_size: int, rule: str = "paper",
                cap: Optional[int] = None, expansion: int = 1) -> list[int]:
    """Channel width of every level, finest first; the last entry is the coarsest (full) level.

    ``rule`` is ``"paper"`` (default) or ``"code"`` (see the module docstring); ``cap`` limits the number
    of coarsenings and must not exceed what the rule gives (``0`` = no coarsening, a plain full block).
    ``group_size`` (None: not checked) must be valid on every grouped level. Errors are ``ValueError``s
    that start with the offending argument's name and list the valid values.
    """
    for name, value in (("channels", channels), ("coarse_size", coarse_size), ("expansion", expansion)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if rule not in LEVEL_RULES:
        raise ValueError(f"level_rule {rule!r} is unknown; valid values: {', '.join(LEVEL_RULES)}")
    try:
        widths = _natural_levels(channels, coarse_size, rule)
    except ValueError as err:
        valid = [s for s in range(1, channels + 1) if _ok(lambda s=s: _natural_levels(channels, s, rule))]
        raise ValueError(f"{err}; valid coarse sizes for {channels} channels: {_ranges(valid)}") from None
    if cap is not None:
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 0:
            raise ValueError(f"levels must be a non-negative integer (a cap on the coarsenings), got {cap!r}")
        if cap > len(widths) - 1:
            raise ValueError(
                f"levels {cap} is deeper than {channels} channels allow with coarse_size {coarse_size} under "
                f"level_rule {rule!r} ({' -> '.join(map(str, widths))}); valid values: 0..{len(widths) - 1}")
        widths = widths[: cap + 1]
    if group_size is not None:
        _check_group_size(group_size, widths, expansion)
    return widths


def _check_group_size(group_size: int, widths: Sequence[int], expansion: int) -> None:
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be a positive integer, got {group_size!r}")
    valid = valid_group_sizes(widths, expansion)
    if len(widths) > 1 and group_size not in valid:
        grouped = " -> ".join(map(str, widths[:-1]))
        raise ValueError(f"group_size {group_size} is impossible on the grouped levels {grouped} "
                         f"(it must divide each width{'' if expansion % 2 == 0 else ' and be even'}); "
                         f"valid group sizes: {', '.join(map(str, valid)) or 'none'}")


def _ranges(values: Sequence[int]) -> str:
    if not values:
        return "none"
    if len(values) > 12 and values == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}..{values[-1]}"
    return ", ".join(map(str, values))


# --------------------------------------------------------------------------- transfer operators
class _Transfer(nn.Module):
    """A bias-free grouped 1x1 conv with its own weight and the MGIC init (``reset_parameters``)."""

    _mgnas_custom_init = True

    def __init__(self, in_channels: int, out_channels: int, groups: int, init: str, row_sum: float) -> None:
        super().__init__()
        if init not in TRANSFER_INITS:
            raise ValueError(f"transfer_init {init!r} is unknown; valid values: {', '.join(TRANSFER_INITS)}")
        for side, c in (("in_channels", in_channels), ("out_channels", out_channels)):
            if groups < 1 or c % groups:
                raise ValueError(f"groups {groups} does not divide {side} {c}; valid groups: "
                                 f"{', '.join(str(g) for g in range(1, c + 1) if c % g == 0)}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.init, self.code_row_sum = init, row_sum
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, 1, 1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            w = self.weight
            if self.init == "paper":  # positive, each output row a convex combination of its group
                w.uniform_(0.0, 1.0).add_(1e-3)
                w.div_(w.sum(dim=1, keepdim=True))
            elif self.init == "code":  # what the authors' network-wide init leaves behind
                nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
            else:  # "code_constant": the authors' 1/s_g constant
                w.fill_(self.code_row_sum / w.shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, None, 1, 0, 1, self.groups)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, groups={self.groups}, init={self.init!r}"


class ChannelRestriction(_Transfer):
    """R_j: grouped 1x1 conv ``in_channels -> in_channels / 2`` with ``groups`` groups (paper §4.3)."""

    def __init__(self, in_channels: int, groups: int, init: str = "paper") -> None:
        if in_channels % 2:
            raise ValueError(f"in_channels {in_channels} is odd; a restriction halves the channels")
        super().__init__(in_channels, in_channels // 2, groups, init, row_sum=1.0)


class ChannelProlongation(_Transfer):
    """P_j: grouped 1x1 conv ``out_channels / 2 -> out_channels``, the transposed block structure of R_j."""

    def __init__(self, out_channels: int, groups: int, init: str = "paper") -> None:
        if out_channels % 2:
            raise ValueError(f"out_channels {out_channels} is odd; a prolongation doubles the channels")
        super().__init__(out_channels // 2, out_channels, groups, init, row_sum=0.5)


class MGICConnector(nn.Sequential):
    """Stage transition (paper §4.3): depthwise-style kxk strided conv (channel multiplier c_out/c_in) + BN + ReLU.

    ``groups`` defaults to ``gcd(in_channels, out_channels)`` (= in_channels when it divides out_channels).
    ``conv`` replaces the conv by a prebuilt module (model builders pass one built from a spec).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, kernel_size: int = 3,
                 groups: Optional[int] = None, conv: Optional[nn.Module] = None) -> None:
        super().__init__()
        g = math.gcd(in_channels, out_channels) if groups is None else groups
        self.conv = conv if conv is not None else create_conv2d(
            "group", in_channels, out_channels, kernel_size, stride, groups=g)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True)


# --------------------------------------------------------------------------- pluggable CNN blocks
def _groups(channels: int, group_size: Optional[int], name: str = "channels") -> int:
    if group_size is None:
        return 1
    if group_size < 1 or channels % group_size:
        raise ValueError(f"group_size {group_size} does not divide {channels} {name}; valid group sizes: "
                         f"{', '.join(str(s) for s in range(1, channels + 1) if channels % s == 0)}")
    return channels // group_size


def _conv(conv: Optional[nn.Module], cin: int, cout: int, k: int, groups: int) -> nn.Module:
    return conv if conv is not None else create_conv2d("group" if groups > 1 else "dense", cin, cout, k,
                                                       groups=groups)


def _act(name: str) -> nn.Module:
    acts = {"relu": nn.ReLU, "hswish": nn.Hardswish, "relu6": nn.ReLU6}
    if name not in acts:
        raise ValueError(f"act {name!r} is unknown; valid values: {', '.join(acts)}")
    return acts[name](inplace=True)


class BasicCNNBlock(nn.Module):
    """``relu(x + BN(K2 relu(BN(K1 x))))`` with kxk convs of ``channels // group_size`` groups (None: full)."""

    def __init__(self, channels: int, group_size: Optional[int] = None, kernel_size: int = 3,
                 conv1: Optional[nn.Module] = None, conv2: Optional[nn.Module] = None) -> None:
        super().__init__()
        g = _groups(channels, group_size)
        self.conv1 = _conv(conv1, channels, channels, kernel_size, g)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = _conv(conv2, channels, channels, kernel_size, g)
        self.bn2 = nn.BatchNorm2d(channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        return self.act(x + self.bn2(self.conv2(out)))


class BottleneckCNNBlock(nn.Module):
    """Paper Eq. 2: ``relu(x + BN(K3 relu(BN(K2 relu(BN(K1 x))))))`` on ``expansion * planes`` channels.

    All three convs get ``planes // group_size`` groups (as in the authors' code); None: full block.
    """

    def __init__(self, planes: int, group_size: Optional[int] = None, expansion: int = 4, kernel_size: int = 3,
                 conv1: Optional[nn.Module] = None, conv2: Optional[nn.Module] = None,
                 conv3: Optional[nn.Module] = None) -> None:
        super().__init__()
        g = _groups(planes, group_size, "planes")
        wide = expansion * planes
        self.conv1 = _conv(conv1, wide, planes, 1, g)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv(conv2, planes, planes, kernel_size, g)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv(conv3, planes, wide, 1, g)
        self.bn3 = nn.BatchNorm2d(wide)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        out = self.act(self.bn2(self.conv2(out)))
        return self.act(x + self.bn3(self.conv3(out)))


def make_divisible(v: float, divisor: int = 8) -> int:
    """MobileNet channel rounding (TF ``_make_divisible``): nearest multiple, never 10% below ``v``."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


class SqueezeExcite(nn.Module):
    """MobileNetV3 SE: pool -> 1x1 (mid -> make_divisible(mid/4)) -> ReLU -> 1x1 -> hard-sigmoid gate."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        reduced = make_divisible(channels / 4, 8)
        self.reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.expand = nn.Conv2d(reduced, channels, 1, bias=True)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.expand(self.act(self.reduce(F.adaptive_avg_pool2d(x, 1))))
        return x * self.gate(s)


class InvertedResidualCNNBlock(nn.Module):
    """MobileNetV3 block ``x + BN(project(SE(act(BN(dw(act(BN(expand x))))))))`` (Howard et al. 2019).

    Expand and project are 1x1 convs with ``channels // group_size`` groups (None: full); the kxk
    depthwise conv and the SE are unchanged. ``mid_channels == channels`` drops the expansion conv.
    """

    def __init__(self, channels: int, mid_channels: int, kernel_size: int = 3, group_size: Optional[int] = None,
                 se: bool = False, act: str = "relu", conv1: Optional[nn.Module] = None,
                 conv2: Optional[nn.Module] = None, conv3: Optional[nn.Module] = None) -> None:
        super().__init__()
        g = _groups(channels, group_size)
        if mid_channels % g:
            raise ValueError(f"group_size {group_size}: its {g} groups do not divide mid_channels {mid_channels}")
        self.expand = mid_channels != channels or conv1 is not None
        if self.expand:
            self.conv1 = _conv(conv1, channels, mid_channels, 1, g)
            self.bn1 = nn.BatchNorm2d(mid_channels)
        else:
            self.conv1, self.bn1 = nn.Identity(), nn.Identity()
        self.conv2 = conv2 if conv2 is not None else create_conv2d(
            "group", mid_channels, mid_channels, kernel_size, groups=mid_channels)
        self.bn2 = nn.BatchNorm2d(mid_channels)
        self.se = SqueezeExcite(mid_channels) if se else nn.Identity()
        self.conv3 = _conv(conv3, mid_channels, channels, 1, g)
        self.bn3 = nn.BatchNorm2d(channels)
        self.act1 = _act(act) if self.expand else nn.Identity()
        self.act2 = _act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.se(self.act2(self.bn2(self.conv2(out))))
        return x + self.bn3(self.conv3(out))


# --------------------------------------------------------------------------- the MGIC block
class MGICLevel(nn.Module):
    """The up-cycle step of level j: ``cnn(x_j + BN(P_j(x_{j+1}^new - x_{j+1}^old)))``."""

    def __init__(self, level: int, channels: int, groups: int, cnn: nn.Module, init: str) -> None:
        super().__init__()
        self.level = level
        self.prolong = ChannelProlongation(channels, groups, init)
        self.norm = nn.BatchNorm2d(channels)
        self.cnn = cnn

    def forward(self, fine: torch.Tensor, coarse_new: torch.Tensor, coarse_old: torch.Tensor) -> torch.Tensor:
        return self.cnn(fine + self.norm(self.prolong(coarse_new - coarse_old)))


class MGICBlock(nn.Module):
    """Paper Alg. 1: restrict to the coarsest level, full CNN block there, then correct and smooth upwards.

    ``cnn_block(level, channels, group_size)`` builds the CNN block of a level (``group_size`` None on
    the coarsest level: the full block); it must map ``expansion * channels`` channels to themselves.
    ``group_size`` is s_g, or one size per grouped level (finest first). ``levels`` caps the number of
    coarsenings (None: as ``level_rule`` gives). Modules: ``down[j]`` = R_j, ``coarsest``, and ``up``
    in execution order (coarse to fine), ``up[k]`` being level ``n - 1 - k`` with ``.prolong`` = P_j.
    """

    widths: list[int]
    group_sizes: list[int]

    def __init__(self, channels: int, cnn_block: CNNFactory, group_size: Union[int, Sequence[int]],
                 coarse_size: int, levels: Optional[int] = None, level_rule: str = "paper",
                 transfer_init: str = "paper", expansion: int = 1) -> None:
        super().__init__()
        if transfer_init not in TRANSFER_INITS:
            raise ValueError(f"transfer_init {transfer_init!r} is unknown; valid values: {', '.join(TRANSFER_INITS)}")
        if isinstance(group_size, int):
            widths = mgic_levels(channels, group_size, coarse_size, level_rule, levels, expansion)
            sizes = [group_size] * (len(widths) - 1)
        else:
            widths = mgic_levels(channels, None, coarse_size, level_rule, levels, expansion)
            sizes = [int(s) for s in group_size]
            if len(sizes) != len(widths) - 1:
                raise ValueError(f"group_size lists {len(sizes)} sizes but the hierarchy "
                                 f"{' -> '.join(map(str, widths))} has {len(widths) - 1} grouped levels")
            for j, s in enumerate(sizes):
                _check_group_size(s, widths[j: j + 2], expansion)
        self.channels, self.expansion = channels, expansion
        self.widths = widths
        self.group_sizes = sizes
        groups = [c // s for c, s in zip(widths, sizes)]
        self.down = nn.ModuleList(
            [ChannelRestriction(expansion * c, g, transfer_init) for c, g in zip(widths, groups)])
        self.coarsest = cnn_block(len(sizes), widths[-1], None)
        self.up = nn.ModuleList([
            MGICLevel(j, expansion * widths[j], groups[j], cnn_block(j, widths[j], sizes[j]), transfer_init)
            for j in reversed(range(len(sizes)))
        ])

    @property
    def num_levels(self) -> int:
        """Number of levels including the coarsest (1 = no coarsening)."""
        return len(self.widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fine: list[torch.Tensor] = []
        coarse: list[torch.Tensor] = []
        for restrict in self.down:
            fine.append(x)
            x = restrict(x)
            coarse.append(x)
        x = self.coarsest(x)
        j = len(fine) - 1
        for level in self.up:
            x = level(fine[j], x, coarse[j])
            j -= 1
        return x

    def extra_repr(self) -> str:
        chain = " -> ".join(str(self.expansion * c) if self.expansion > 1 else str(c) for c in self.widths)
        return f"levels={chain}, group_sizes={self.group_sizes}"
