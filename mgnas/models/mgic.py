"""MGIC networks: ResNet-56 / ResNet-50 / MobileNetV3-Large with every block an MGIC V-cycle (Eliasof et al.).

Family ``"mgic"``. Order: blocks -> model -> builder -> spec decoding -> named models.

Spec layout::

    config: {"level_rule": "code"|"paper", "transfer_init": "paper"|"code"|"code_constant"}
    stem:   {"type": "stem", "conv": conv, "act": "relu"|"hswish", "pool": bool}
    blocks: {"type": "mgic", "cnn": "basic"|"bottleneck"|"inverted_residual",
             "channels": c,                 # finest level width c_0 (planes for bottlenecks)
             "expansion": 4,                # bottleneck only: the block carries 4*c channels
             "group_size": s_g | [s_0, ..],  # R_j/P_j get c_j / s_j groups (one size per grouped level)
             "coarse_size": s_c,
             "connector": conv | null,      # stage transition (depthwise-style 3x3 strided) + BN + ReLU
             "se": bool, "act": str,        # inverted_residual only
             "levels": [{"conv1": conv, "conv2": conv, ("conv3": conv)}, ...]}   # finest first
            {"type": "conv", "conv": conv, "act": str}                     # conv + BN + act
    head:   {"type": "classifier", "in_features": int, "dropout": float}
            {"type": "mobilenetv3_head", "in_features": int, "hidden": int, "dropout": float}

``levels`` lists every level's CNN-block convs, finest first; the last entry is the coarsest, full
block (kind ``dense``), the others are the grouped blocks (kind ``group``). Their number fixes the
number of coarsenings, which must not exceed what ``config.level_rule`` allows for ``coarse_size``.
Level convs are free: setting kind ``dgconv`` on the grouped convs gives the MGIC-DGConv supernet (a
group size learned per level); the transfers R_j/P_j keep the groups given by ``group_size``.
Level convs: basic = two kxk; bottleneck = 1x1 (4c->c), 3x3, 1x1 (c->4c); inverted_residual =
expand 1x1 (or null), depthwise kxk, project 1x1 (SE and activation from the block).

Conventions (those of the authors' public code, BGUCompSci/MultigridInChannelsCNNs, unless noted):
stage transitions by a depthwise-style 3x3 strided conv + BN + ReLU, bottleneck R/P on 4*planes
channels with planes/s_g groups, all three bottleneck convs grouped, a standard bottleneck on the
coarsest level (the code adds a stray ReLU before its residual there; we do not). Not the code's:
the level rule defaults to the paper's (``level_rule="paper"``; ``"code"`` selects the code's) and the
transfer init to the paper's (``transfer_init="paper"``; the code effectively runs ``"code"``).

Initialisation: convs Kaiming-normal (fan_out), BN weight 1 / bias 0, R_j/P_j as ``transfer_init`` says.
``zero_init_residual=True`` (``mgic_resnet56`` / ``mgic_resnet50`` take it; off by default, as torchvision's
ResNet) zeroes the last BN gamma of every CNN block with a residual (``bn2`` of a basic block, ``bn3`` of a
bottleneck or inverted residual) on every level, so each V-cycle starts as transfers plus identities; it is
recorded in the spec as ``config.zero_init_residual`` (absent when off).

Measured vs paper (params / MACs at 224x224 resp. 32x32; paper "FLOPs" are multiply-adds):

=========================  ==============  ===================  ===================
model (s_g, s_c)           paper           level_rule="paper"   level_rule="code"
=========================  ==============  ===================  ===================
mgic_resnet50 (32, 64)     9.4M / 1.6G     9.15M / 2.14G        9.41M / 2.35G
mgic_resnet50 (64, 64)     15.1M / 2.5G    14.96M / 3.18G       16.30M / 4.33G
mgic_resnet50 (16, 64)     6.2M / 1.0G     6.24M / 1.62G        5.96M / 1.36G
mgic_resnet56 (8, 16)      0.41M / 60M     0.310M / 75.9M       0.284M / 63.5M
mobilenetv3_large 0.6      2.3M / 48M      3.37M / 88.9M        3.48M / 114.5M
mobilenetv3_large 1.0      5.2M / 145M     6.14M / 227.7M       6.17M / 255.0M
mobilenetv3_large 1.2      7.1M / 233M     7.66M / 292.4M       7.69M / 336.2M
=========================  ==============  ===================  ===================

**ResNet-50.** The code's rule reproduces (32, 64) to four digits (9.41M), but not the other two rows,
so Table 3 was not made by one setting of the public code with mgFcChannel = s_c; the paper's rule gives
all three within 3%. MACs are 30-60% above the paper's: R and P act on 4*planes channels with groups
of 4*s_g and cost as many MACs as the grouped convs they wrap (0.96G of the 2.14G at (32, 64)); without
them the counts (0.9 / 1.4 / 2.4G with the code rule) are near the paper's, so we suspect its counter
skipped the transfers. We count them.

**The MGIC-ResNet-56 gap.** With s_g=8, s_c=16 the code's rule gives 284,410 parameters, the 0.284M
of the authors' code (whose CIFAR defaults use a 7x7 stem: +1,920); the paper's rule gives 0.310M. No
public configuration gives the paper's 0.41M: Table 8's slope (+0.12M from s_g=8 to 16) is half of
what the grouped 3x3 convs alone add (+0.23M). Tables 7/8 (params / MACs, ``group_rule="code"``):

=========  ============  ===================  ===================
(s_g,s_c)  paper         level_rule="paper"   level_rule="code"
=========  ============  ===================  ===================
(16, 64)   0.53M / 91M   0.877M / 128.0M      0.534M / 110.9M
(16, 32)   0.50M / 76M   0.557M / 107.3M      0.499M / 108.5M
(16, 16)   0.47M / 65M   0.485M / 95.5M       0.525M / 112.5M
(32, 16)   0.79M / 100M  0.836M / 134.7M      0.875M / 151.8M
(8, 16)    0.41M / 60M   0.310M / 75.9M       0.284M / 63.5M
(4, 16)    0.29M / 45M   0.223M / 66.1M       0.164M / 39.0M
=========  ============  ===================  ===================

Neither rule tracks the tables (the code's rule matches s_c = 32/64 at s_g = 16 only); we do not fudge
the architecture to hit them. (s_g = 32 needs ``group_rule="code"``: the 16-wide stage cannot hold a
group of 32, the code silently makes that level dense.)

**MobileNetV3.** The public MobileNetV3 code is a CIFAR variant (1x1 stem, no 960 conv, expansions
multiplied by the width twice), so it cannot be Table 4's ImageNet model. We build MobileNetV3-Large
(Howard et al. Table 1) with each bneck replaced by a connector (when stride or width change) and an
MGIC block of inverted residuals (SE dense on every level, as in the code); widths
``make_divisible(c * width, 8)``, the 1280-wide head kept at 1280 (as MobileNetV3 0.75 and GhostNet do).
With s_g = 64 and widths <= 160 almost no level can be split into groups of 64, so ``group_rule="code"``
(the authors' rule: ``groups = max(c_j // s_g, 1)`` lowered until it divides c_j/2 and the expanded width)
is the default there, and MGIC *adds* a coarse block and transfers to a nearly dense block: we measure
more than the plain network (``levels=0``: 5.56M / 199M at width 1.0), where the paper reports less.
Keeping the 1280 layer fixed follows the authors' code; scaling it with the width (torchvision) would
give 2.57M / 6.14M / 8.21M. The paper's ImageNet MobileNet configuration is not public; we report the
gap rather than guess it.
``group_rule="exact"`` (s_g must divide every grouped width) is the default for the ResNets.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from ..ops.mgic import (
    LEVEL_RULES,
    TRANSFER_INITS,
    BasicCNNBlock,
    BottleneckCNNBlock,
    InvertedResidualCNNBlock,
    MGICBlock,
    MGICConnector,
    make_divisible,
    mgic_levels,
)
from ..spec import ArchSpec, BlockReader, ConvSpec, SpecError
from ._common import ACTIVATIONS, ClassifierHead, ConvBNAct, conv_from_spec, conv_spec, init_weights
from ._registry import register_family, register_model

__all__ = ["MGICUnit", "MGICNet", "mgic_resnet56", "mgic_resnet50", "mgic_mobilenetv3_large"]

CNN_TYPES = ("basic", "bottleneck", "inverted_residual")
GROUP_RULES = ("exact", "code")
IR_ACTS = ("relu", "hswish", "relu6")
_LEVEL_KEYS = {"basic": ("conv1", "conv2"), "bottleneck": ("conv1", "conv2", "conv3"),
               "inverted_residual": ("conv1", "conv2", "conv3")}
_ARG_FIELDS = ("group_size", "coarse_size", "levels", "channels", "expansion")  # ValueErrors start with one


def _field(path: str, err: ValueError, default: str) -> str:
    """The spec field a ValueError from :mod:`mgnas.ops.mgic` is about (its message starts with the name)."""
    name = str(err).split()[0]
    return f"{path}.{name if name in _ARG_FIELDS else default}"


# --------------------------------------------------------------------------- blocks
def _level_convs(b: BlockReader, cnn: str, widths: list[int], e: int) -> list[dict[str, ConvSpec | None]]:
    """Read and check every level's convs against the hierarchy ``widths`` (finest first)."""
    out = []
    for j, lv in enumerate(b.blocks("levels")):
        with lv:
            convs = {k: lv.conv(k, optional=(cnn == "inverted_residual" and k == "conv1"))
                     for k in _LEVEL_KEYS[cnn]}
        c = widths[j]
        if cnn == "basic":
            lv.check_channels(convs["conv1"], "conv1", c, c)
            lv.check_channels(convs["conv2"], "conv2", c, c)
        elif cnn == "bottleneck":
            lv.check_channels(convs["conv1"], "conv1", e * c, c)
            lv.check_channels(convs["conv2"], "conv2", c, c)
            lv.check_channels(convs["conv3"], "conv3", c, e * c)
        else:
            mid = convs["conv2"].in_channels
            if convs["conv1"] is None and mid != c:
                raise SpecError(f"{lv.path}.conv1", f"is null (no expansion) but conv2 has {mid} != {c} channels")
            lv.check_channels(convs["conv1"], "conv1", c, mid)
            lv.check_channels(convs["conv2"], "conv2", mid, mid)
            lv.check_channels(convs["conv3"], "conv3", mid, c)
        for key, conv in convs.items():
            if conv is not None and conv.stride != 1:
                raise SpecError(f"{lv.path}.{key}.stride", "must be 1 inside an MGIC block (stride in the connector)")
        out.append(convs)
    return out


class MGICUnit(nn.Module):
    """Optional stage-transition connector, then one :class:`~mgnas.ops.MGICBlock` built from the spec."""

    def __init__(self, b: BlockReader, in_channels: int, config: dict[str, str]) -> None:
        super().__init__()
        cnn = b.str("cnn", choices=CNN_TYPES)
        channels, coarse = b.int("channels"), b.int("coarse_size")
        e = b.int("expansion", default=4) if cnn == "bottleneck" else 1
        sizes = b.raw("group_size")
        if not all(isinstance(s, int) and not isinstance(s, bool) for s in (sizes if isinstance(sizes, list)
                                                                          else [sizes])):
            raise SpecError(f"{b.path}.group_size", f"must be an integer or a list of integers, got {sizes!r}")
        se, act = (b.bool("se", default=False), b.str("act", default="relu", choices=IR_ACTS)) \
            if cnn == "inverted_residual" else (False, "relu")
        self.out_channels = e * channels
        connector = b.conv("connector", optional=True)
        if connector is not None:
            b.check_channels(connector, "connector", in_channels, self.out_channels)
            self.connector: nn.Module = MGICConnector(in_channels, self.out_channels, connector.stride,
                                                      conv=conv_from_spec(connector))
        elif in_channels != self.out_channels:
            raise SpecError(f"{b.path}.connector", f"a {in_channels}->{self.out_channels} block needs a connector")
        else:
            self.connector = nn.Identity()
        raw_levels = b.raw("levels")
        if not isinstance(raw_levels, list) or not raw_levels:
            raise SpecError(f"{b.path}.levels", "must be a non-empty list (finest level first, coarsest last)")
        n = len(raw_levels) - 1
        try:
            widths = mgic_levels(channels, None, coarse, config["level_rule"], n, e)
        except ValueError as err:
            raise SpecError(_field(b.path, err, "levels"), str(err)) from None
        levels = _level_convs(b, cnn, widths, e)

        def make(level: int, c: int, s: int | None) -> nn.Module:
            cv = {k: (conv_from_spec(v) if v is not None else None) for k, v in levels[level].items()}
            if cnn == "basic":
                return BasicCNNBlock(c, conv1=cv["conv1"], conv2=cv["conv2"])
            if cnn == "bottleneck":
                return BottleneckCNNBlock(c, expansion=e, conv1=cv["conv1"], conv2=cv["conv2"], conv3=cv["conv3"])
            mid = levels[level]["conv2"].in_channels
            return InvertedResidualCNNBlock(c, mid, se=se, act=act, conv1=cv["conv1"], conv2=cv["conv2"],
                                            conv3=cv["conv3"])

        try:
            self.mgic = MGICBlock(channels, make, sizes, coarse, len(widths) - 1, config["level_rule"],
                                  config["transfer_init"], e)
        except ValueError as err:
            raise SpecError(_field(b.path, err, "group_size"), str(err)) from None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mgic(self.connector(x))


class ConvBlock(ConvBNAct):
    """A plain conv + BN + activation inside a stage (MobileNetV3's last 1x1 conv)."""

    def __init__(self, b: BlockReader, in_channels: int) -> None:
        conv = b.conv("conv")
        b.check_channels(conv, "conv", in_channels, conv.out_channels)
        super().__init__(conv, act=b.str("act", default="relu", choices=tuple(ACTIVATIONS)))
        self.out_channels = conv.out_channels


class Stem(nn.Sequential):
    def __init__(self, b: BlockReader) -> None:
        super().__init__()
        conv = b.conv("conv")
        self.conv = ConvBNAct(conv, act=b.str("act", default="relu", choices=tuple(ACTIVATIONS)))
        if b.bool("pool", default=False):
            self.pool = nn.MaxPool2d(3, 2, 1)
        self.out_channels = conv.out_channels


class MobileNetV3Head(nn.Module):
    """Global pool -> linear (in -> hidden) -> hardswish -> dropout -> linear (Howard et al. Table 1)."""

    def __init__(self, in_features: int, hidden: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.pre = nn.Linear(in_features, hidden)
        self.act = nn.Hardswish(inplace=True)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.act(self.pre(torch.flatten(self.pool(x), 1)))))


# --------------------------------------------------------------------------- model
def _config(spec: ArchSpec) -> dict[str, Any]:
    config: dict[str, Any] = {"level_rule": "paper", "transfer_init": "paper", "zero_init_residual": False}
    for key, value in spec.config.items():
        choices = {"level_rule": LEVEL_RULES, "transfer_init": TRANSFER_INITS,
                   "zero_init_residual": (True, False)}.get(key)
        if choices is None:
            raise SpecError(f"config.{key}", "unknown key for family 'mgic'; valid keys: level_rule, transfer_init, "
                            "zero_init_residual")
        if key == "zero_init_residual" and not isinstance(value, bool):
            raise SpecError(f"config.{key}", f"must be true or false, got {value!r}")
        if value not in choices:
            raise SpecError(f"config.{key}", f"{value!r} is not one of {', '.join(map(repr, choices))}")
        config[key] = value
    return config


class MGICNet(nn.Module):
    """stem -> stages of MGIC units (and plain conv blocks) -> classifier / MobileNetV3 head."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        config = _config(spec)
        with BlockReader(spec.stem or {}, "stem") as b:
            self.stem = Stem(b)
        channels = self.stem.out_channels
        stages = []
        for i, stage in enumerate(spec.stages):
            blocks: list[nn.Module] = []
            for j, block in enumerate(stage["blocks"]):
                path = f"stages[{i}].blocks[{j}]"
                with BlockReader(block, path) as b:
                    if b.type == "mgic":
                        blocks.append(MGICUnit(b, channels, config))
                    elif b.type == "conv":
                        blocks.append(ConvBlock(b, channels))
                    else:
                        raise SpecError(f"{path}.type", f"unknown block type {b.type!r}; valid: mgic, conv")
                channels = blocks[-1].out_channels
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        with BlockReader(spec.head or {}, "head") as h:
            kind = h.str("type", choices=("classifier", "mobilenetv3_head"))
            features = h.int("in_features")
            if features != channels:
                raise SpecError("head.in_features", f"is {features} but the last stage gives {channels}")
            dropout = h.float("dropout", default=0.0)
            if kind == "classifier":
                self.head: nn.Module = ClassifierHead(features, spec.num_classes, dropout)
            else:
                self.head = MobileNetV3Head(features, h.int("hidden"), spec.num_classes, dropout)
        init_weights(self)
        if config["zero_init_residual"]:
            for m in self.modules():
                if isinstance(m, BasicCNNBlock):
                    nn.init.zeros_(m.bn2.weight)
                elif isinstance(m, (BottleneckCNNBlock, InvertedResidualCNNBlock)):
                    nn.init.zeros_(m.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


# --------------------------------------------------------------------------- builder
@register_family("mgic")
def _build(spec: ArchSpec) -> nn.Module:
    return MGICNet(spec)


# --------------------------------------------------------------------------- spec decoding
def _fmt(values: Sequence[int]) -> str:
    if not values:
        return "none"
    if len(values) > 12 and list(values) == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}..{values[-1]}"
    return ", ".join(map(str, values))


def _ok(fn: Callable[[], Any]) -> bool:
    try:
        fn()
    except ValueError:
        return False
    return True


def _sizes(widths: list[int], mid: int | None, s_g: int, group_rule: str, e: int) -> list[int]:
    """Group size per grouped level. "exact": s_g (ValueError if impossible); "code": the authors' rule."""
    sizes = []
    for j, c in enumerate(widths[:-1]):
        m = None if mid is None else mid >> j
        if group_rule == "exact":
            if c % s_g or (e * s_g) % 2 or (m is not None and m % (c // s_g)):
                raise ValueError(f"group_size {s_g} is impossible on a {c}-channel level")
            sizes.append(s_g)
            continue
        g = max(c // s_g, 1)
        while c % g or (e * c // 2) % g or (m is not None and m % g):
            g -= 1
        sizes.append(c // g)
    return sizes


#: The widest level MGIC models accept (the error messages list valid sizes up to it).
_LISTED = 16384


def _plan(model: str, blocks: Sequence[tuple[int, int | None]], s_g: int, s_c: int, levels: int | None,
          rule: str, group_rule: str, e: int = 1) -> list[tuple[list[int], list[int]]]:
    """(widths, group sizes) of each MGIC block (channels, mid); model-wide ValueErrors naming the argument."""
    if rule not in LEVEL_RULES:
        raise ValueError(f"{model}: level_rule {rule!r} is unknown; valid values: {', '.join(LEVEL_RULES)}")
    if group_rule not in GROUP_RULES:
        raise ValueError(f"{model}: group_rule {group_rule!r} is unknown; valid values: {', '.join(GROUP_RULES)}")
    for name, value in (("group_size", s_g), ("coarse_size", s_c)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{model}: {name} must be a positive integer, got {value!r}")
    chans = sorted({c for c, _ in blocks})
    if max(chans) > _LISTED:  # listing the valid sizes would enumerate (and check) millions of candidates
        raise ValueError(f"{model}: widths up to {max(chans):,} channels are beyond the MGIC models' range "
                         f"(at most {_LISTED:,}); pass a smaller width")
    if not all(_ok(lambda c=c: mgic_levels(c, None, s_c, rule, expansion=e)) for c in chans):
        valid = [s for s in range(1, max(chans) + 1)
                 if all(_ok(lambda c=c, s=s: mgic_levels(c, None, s, rule, expansion=e)) for c in chans)]
        raise ValueError(f"{model}: coarse_size {s_c} is impossible for the widths {chans} under level_rule "
                         f"{rule!r} (a width that must be halved is odd); valid coarse sizes: {_fmt(valid)}"
                         f"{' and above' if valid and valid[-1] == max(chans) else ''}")
    natural = {c: mgic_levels(c, None, s_c, rule, expansion=e) for c in chans}
    deepest = max(len(w) - 1 for w in natural.values())
    if levels is not None and (isinstance(levels, bool) or not isinstance(levels, int) or not 0 <= levels <= deepest):
        raise ValueError(f"{model}: levels {levels!r} is deeper than the widths {chans} allow with coarse_size "
                         f"{s_c} under level_rule {rule!r}; valid values: 0..{deepest}")
    cap = deepest if levels is None else levels
    plans = [(natural[c][: cap + 1], mid) for c, mid in blocks]
    for w, mid in plans:
        if mid is not None and mid % (1 << (len(w) - 1)):
            raise ValueError(f"{model}: the expanded width {mid} of the {w[0]}-channel blocks cannot be halved "
                             f"{len(w) - 1} times; pass a smaller levels or a larger coarse_size")
    try:
        return [(w, _sizes(w, mid, s_g, group_rule, e)) for w, mid in plans]
    except ValueError:
        top = max(w[0] for w, _ in plans)
        valid = [s for s in range(1, top + 1) if all(_ok(lambda w=w, m=m, s=s: _sizes(w, m, s, "exact", e))
                                                     for w, m in plans)]
        grouped = sorted({c for w, _ in plans for c in w[:-1]})
        raise ValueError(f"{model}: group_size {s_g} is impossible: it must divide every grouped level width "
                         f"{grouped}{'' if e % 2 == 0 else ' and be even'}; valid group sizes: {_fmt(valid)} "
                         f"(or group_rule='code' to clamp it per level as the authors' code does)") from None


def _level(cnn: str, c: int, s: int | None, e: int = 1, mid: int | None = None, k: int = 3) -> dict[str, Any]:
    """The convs of one level's CNN block: grouped (kind "group") or, on the coarsest level, full ("dense")."""
    kind, g = ("dense", 1) if s is None else ("group", c // s)
    if cnn == "basic":
        return {"conv1": conv_spec(c, c, k, kind=kind, groups=g), "conv2": conv_spec(c, c, k, kind=kind, groups=g)}
    if cnn == "bottleneck":
        return {"conv1": conv_spec(e * c, c, 1, kind=kind, groups=g), "conv2": conv_spec(c, c, k, kind=kind, groups=g),
                "conv3": conv_spec(c, e * c, 1, kind=kind, groups=g)}
    assert mid is not None
    return {"conv1": conv_spec(c, mid, 1, kind=kind, groups=g) if mid != c else None,
            "conv2": conv_spec(mid, mid, k, kind="group", groups=mid),
            "conv3": conv_spec(mid, c, 1, kind=kind, groups=g)}


def _mgic_block(cnn: str, cin: int, channels: int, stride: int, widths: list[int], sizes: list[int],
                s_g: int, s_c: int, e: int = 1, mid: int | None = None, k: int = 3, **extra: Any) -> dict[str, Any]:
    cout = e * channels
    connector = conv_spec(cin, cout, 3, stride, groups=math.gcd(cin, cout)) if stride != 1 or cin != cout else None
    levels = [_level(cnn, c, s, e, None if mid is None else mid >> j, k)
              for j, (c, s) in enumerate(zip(widths, [*sizes, None]))]
    block: dict[str, Any] = {"type": "mgic", "cnn": cnn, "channels": channels}
    if cnn == "bottleneck":
        block["expansion"] = e
    block.update({"group_size": s_g if all(s == s_g for s in sizes) else sizes, "coarse_size": s_c,
                  "connector": connector, **extra, "levels": levels})
    return block


def _check_init(model: str, transfer_init: str) -> None:
    if transfer_init not in TRANSFER_INITS:
        raise ValueError(f"{model}: transfer_init {transfer_init!r} is unknown; "
                         f"valid values: {', '.join(TRANSFER_INITS)}")


def _check_width(width: float) -> None:
    if isinstance(width, bool) or not isinstance(width, (int, float)) or width <= 0:
        raise ValueError(f"width must be a positive number, got {width!r}")


def _scaled(values: Sequence[int], width: float) -> list[int]:
    _check_width(width)
    return [max(1, int(round(v * width))) for v in values]


def _resnet_spec(name: str, cnn: str, depths: list[int], planes: list[int], *, cifar: bool, stem_width: int,
                 num_classes: int, group_size: int, coarse_size: int, levels: int | None, width: float,
                 level_rule: str, transfer_init: str, group_rule: str, zero_init_residual: bool = False) -> ArchSpec:
    """Decode a ResNet layout into an MGIC spec: every residual block becomes connector + MGIC block."""
    if not isinstance(zero_init_residual, bool):
        raise ValueError(f"{name}: zero_init_residual must be True or False, got {zero_init_residual!r}")
    _check_init(name, transfer_init)
    e = 4 if cnn == "bottleneck" else 1
    planes = _scaled(planes, width)
    stem_width = _scaled([stem_width], width)[0]
    plan = _plan(name, [(p, None) for p in planes], group_size, coarse_size, levels, level_rule, group_rule, e)
    stem = {"type": "stem", "conv": conv_spec(3, stem_width, 3 if cifar else 7, 1 if cifar else 2),
            "act": "relu", "pool": not cifar}
    stages, cin = [], stem_width
    for i, (depth, p, (widths, sizes)) in enumerate(zip(depths, planes, plan)):
        blocks = []
        for j in range(depth):
            blocks.append(_mgic_block(cnn, cin, p, 2 if (j == 0 and i > 0) else 1, widths, sizes,
                                      group_size, coarse_size, e))
            cin = e * p
        stages.append({"blocks": blocks})
    config: dict[str, Any] = {"level_rule": level_rule, "transfer_init": transfer_init}
    if zero_init_residual:
        config["zero_init_residual"] = True
    return ArchSpec(family="mgic", num_classes=num_classes, input_size=(3, 32, 32) if cifar else (3, 224, 224),
                    config=config, stem=stem, stages=stages,
                    head={"type": "classifier", "in_features": cin})


class _IRRow(NamedTuple):
    """One bneck row of MobileNetV3-Large (Howard et al. 2019, Table 1)."""

    kernel: int
    expand: int  # expanded (mid) width at width 1.0
    out: int
    se: bool
    act: str
    stride: int


_MBV3_LARGE = [
    _IRRow(3, 16, 16, False, "relu", 1),
    _IRRow(3, 64, 24, False, "relu", 2), _IRRow(3, 72, 24, False, "relu", 1),
    _IRRow(5, 72, 40, True, "relu", 2), _IRRow(5, 120, 40, True, "relu", 1), _IRRow(5, 120, 40, True, "relu", 1),
    _IRRow(3, 240, 80, False, "hswish", 2), _IRRow(3, 200, 80, False, "hswish", 1),
    _IRRow(3, 184, 80, False, "hswish", 1), _IRRow(3, 184, 80, False, "hswish", 1),
    _IRRow(3, 480, 112, True, "hswish", 1), _IRRow(3, 672, 112, True, "hswish", 1),
    _IRRow(5, 672, 160, True, "hswish", 2), _IRRow(5, 960, 160, True, "hswish", 1),
    _IRRow(5, 960, 160, True, "hswish", 1),
]


def _mobilenetv3_spec(name: str, *, width: float, num_classes: int, group_size: int, coarse_size: int,
                      levels: int | None, level_rule: str, transfer_init: str, group_rule: str) -> ArchSpec:
    """MobileNetV3-Large with every bneck a connector (if the shape changes) + MGIC of inverted residuals."""
    _check_init(name, transfer_init)
    _check_width(width)
    rows = [r._replace(expand=make_divisible(r.expand * width), out=make_divisible(r.out * width))
            for r in _MBV3_LARGE]
    plan = _plan(name, [(r.out, r.expand) for r in rows], group_size, coarse_size, levels, level_rule, group_rule)
    stem_width = make_divisible(16 * width)
    stem = {"type": "stem", "conv": conv_spec(3, stem_width, 3, 2), "act": "hswish", "pool": False}
    stages: list[dict[str, Any]] = []
    cin = stem_width
    for r, (widths, sizes) in zip(rows, plan):
        if r.stride != 1 or not stages:
            stages.append({"blocks": []})
        stages[-1]["blocks"].append(_mgic_block("inverted_residual", cin, r.out, r.stride, widths, sizes, group_size,
                                                coarse_size, mid=r.expand, k=r.kernel, se=r.se, act=r.act))
        cin = r.out
    last = make_divisible(960 * width)
    stages[-1]["blocks"].append({"type": "conv", "conv": conv_spec(cin, last, 1), "act": "hswish"})
    return ArchSpec(family="mgic", num_classes=num_classes, input_size=(3, 224, 224),
                    config={"level_rule": level_rule, "transfer_init": transfer_init}, stem=stem, stages=stages,
                    head={"type": "mobilenetv3_head", "in_features": last, "hidden": 1280, "dropout": 0.2})


# --------------------------------------------------------------------------- named models
@register_model
def mgic_resnet56(*, num_classes: int = 10, group_size: int = 8, coarse_size: int = 16, levels: int | None = None,
                  width: float = 1.0, level_rule: str = "paper", transfer_init: str = "paper",
                  group_rule: str = "exact", zero_init_residual: bool = False) -> ArchSpec:
    """MGIC-ResNet-56 for CIFAR (Table 2, s_g=8, s_c=16): 0.310M params (level_rule="code": 0.284M; paper 0.41M)."""
    return _resnet_spec("mgic_resnet56", "basic", [9, 9, 9], [16, 32, 64], cifar=True, stem_width=16,
                        num_classes=num_classes, group_size=group_size, coarse_size=coarse_size, levels=levels,
                        width=width, level_rule=level_rule, transfer_init=transfer_init, group_rule=group_rule,
                        zero_init_residual=zero_init_residual)


@register_model
def mgic_resnet50(*, num_classes: int = 1000, group_size: int = 32, coarse_size: int = 64, levels: int | None = None,
                  width: float = 1.0, level_rule: str = "paper", transfer_init: str = "paper",
                  group_rule: str = "exact", zero_init_residual: bool = False) -> ArchSpec:
    """MGIC-ResNet-50 (Table 3): (s_g,s_c) = (32,64) 9.15M, (64,64) 14.96M, (16,64) 6.24M (paper 9.4/15.1/6.2M)."""
    return _resnet_spec("mgic_resnet50", "bottleneck", [3, 4, 6, 3], [64, 128, 256, 512], cifar=False,
                        stem_width=64, num_classes=num_classes, group_size=group_size, coarse_size=coarse_size,
                        levels=levels, width=width, level_rule=level_rule, transfer_init=transfer_init,
                        group_rule=group_rule, zero_init_residual=zero_init_residual)


@register_model
def mgic_mobilenetv3_large(*, num_classes: int = 1000, width: float = 1.0, group_size: int = 64,
                           coarse_size: int = 64, levels: int | None = None, level_rule: str = "paper",
                           transfer_init: str = "paper", group_rule: str = "code") -> ArchSpec:
    """MGIC-MobileNetV3-Large (Table 4, s_g=s_c=64): width 0.6/1.0/1.2 = 3.37/6.14/7.66M (paper 2.3/5.2/7.1M)."""
    return _mobilenetv3_spec("mgic_mobilenetv3_large", width=width, num_classes=num_classes, group_size=group_size,
                             coarse_size=coarse_size, levels=levels, level_rule=level_rule,
                             transfer_init=transfer_init, group_rule=group_rule)
