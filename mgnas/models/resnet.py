"""ResNet / ResNeXt and their DGConv supernets (He et al. 2016; Xie et al. 2017; Zhang et al. 2019).

Family ``"resnet"``. Order: blocks -> model -> builder -> named models.

Spec layout::

    stem:   {"type": "stem", "conv": conv, "pool": bool}       (CIFAR: 3x3 conv, no pool; ImageNet: 7x7/2 + maxpool)
    blocks: {"type": "basic", "conv1": conv, "conv2": conv, "shortcut": conv | null, "shortcut_type": "conv"|"pad"}
            {"type": "bottleneck", "conv1": conv, "conv2": conv, "conv3": conv, "shortcut": conv | null}
    head:   {"type": "classifier", "in_features": int, "dropout": float}

``shortcut_type: "pad"`` is He et al.'s option A for CIFAR (stride-2 subsampling + zero channel
padding, no parameters); ``"conv"`` is a 1x1 projection + BN (option B). Bottlenecks put the stride
on the 3x3 conv (torchvision "v1.5"). The DGConv supernets (``g_*``) are the same specs with the
searchable 3x3 convs of kind ``dgconv`` (Zhang et al. Table 1); freezing them gives ``group`` convs.

Initialisation (torchvision's): convs Kaiming-normal with fan_out (the DGConv weights too, as in the public
G-ResNeXt code), BatchNorm weight 1 and bias 0, the classifier N(0, 0.01). ``zero_init_residual=True`` (every
named model takes it; off by default, as in torchvision; Goyal et al. 2017) zeroes the last BN gamma of every
residual block (``conv2.bn`` of a basic block, ``conv3.bn`` of a bottleneck), so each block starts as the
identity; it is recorded in the spec as ``config: {"zero_init_residual": true}`` (absent when off).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..spec import ArchSpec, BlockReader, SpecError
from ._common import ClassifierHead, ConvBNAct, build_stages, conv_spec, init_weights
from ._registry import register_family, register_model

__all__ = [
    "BasicBlock", "Bottleneck", "ResNet",
    "resnet20_cifar", "resnet56_cifar", "resnet18_cifar", "resnet50", "resnext50_32x4d", "resnext101_32x4d",
    "g_resnext50", "g_resnext101", "g_resnet20_cifar", "g_resnet56_cifar",
]


# --------------------------------------------------------------------------- blocks
class PadShortcut(nn.Module):
    """He et al. option A: subsample by ``stride`` and zero-pad the new channels (no parameters)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.stride, self.pad = stride, cout - cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.pad)) if self.pad else x


def _shortcut(b: BlockReader, cin: int, cout: int, stride: int) -> nn.Module:
    kind = b.str("shortcut_type", default="conv", choices=("conv", "pad"))
    conv = b.conv("shortcut", optional=True)
    if conv is not None:
        if kind == "pad":
            raise SpecError(f"{b.path}.shortcut", "must be null when shortcut_type is 'pad'")
        b.check_channels(conv, "shortcut", cin, cout)
        return ConvBNAct(conv, act="none")
    if cin == cout and stride == 1:
        return nn.Identity()
    if kind == "pad" and cout >= cin:
        return PadShortcut(cin, cout, stride)
    raise SpecError(f"{b.path}.shortcut", f"a {cin}->{cout} stride-{stride} block needs a projection conv")


class BasicBlock(nn.Module):
    """Two 3x3 convs + identity/projection shortcut (He et al. 2016, Fig. 2 left)."""

    def __init__(self, b: BlockReader) -> None:
        super().__init__()
        c1, c2 = b.conv("conv1"), b.conv("conv2")
        b.check_channels(c2, "conv2", c1.out_channels, c2.out_channels)
        self.conv1 = ConvBNAct(c1)
        self.conv2 = ConvBNAct(c2, act="none")
        self.shortcut = _shortcut(b, c1.in_channels, c2.out_channels, c1.stride)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))

    def last_bn(self) -> nn.Module:
        """The BN that ends the residual branch (zeroed by ``zero_init_residual``)."""
        return self.conv2.bn


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (grouped for ResNeXt, DGConv for G-ResNeXt) -> 1x1 expand (Xie et al. Fig. 3c)."""

    def __init__(self, b: BlockReader) -> None:
        super().__init__()
        c1, c2, c3 = b.conv("conv1"), b.conv("conv2"), b.conv("conv3")
        b.check_channels(c2, "conv2", c1.out_channels, c2.out_channels)
        b.check_channels(c3, "conv3", c2.out_channels, c3.out_channels)
        self.conv1 = ConvBNAct(c1)
        self.conv2 = ConvBNAct(c2)
        self.conv3 = ConvBNAct(c3, act="none")
        self.shortcut = _shortcut(b, c1.in_channels, c3.out_channels, max(c1.stride, c2.stride))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv3(self.conv2(self.conv1(x))) + self.shortcut(x))

    def last_bn(self) -> nn.Module:
        """The BN that ends the residual branch (zeroed by ``zero_init_residual``)."""
        return self.conv3.bn


_BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


def _zero_init_residual(spec: ArchSpec) -> bool:
    """``spec.config["zero_init_residual"]`` (default False); the only config key of the resnet family."""
    for key in spec.config:
        if key != "zero_init_residual":
            raise SpecError(f"config.{key}", "unknown key for family 'resnet'; valid keys: zero_init_residual")
    value = spec.config.get("zero_init_residual", False)
    if not isinstance(value, bool):
        raise SpecError("config.zero_init_residual", f"must be true or false, got {value!r}")
    return value


# --------------------------------------------------------------------------- model
class Stem(nn.Sequential):
    def __init__(self, b: BlockReader) -> None:
        super().__init__()
        self.conv = ConvBNAct(b.conv("conv"))
        if b.bool("pool", default=False):
            self.pool = nn.MaxPool2d(3, 2, 1)


class ResNet(nn.Module):
    """stem -> stages of residual blocks -> classifier."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        zero_init = _zero_init_residual(spec)
        with BlockReader(spec.stem or {}, "stem") as b:
            self.stem = Stem(b)
        self.stages = build_stages(spec, _BLOCKS)
        with BlockReader(spec.head or {}, "head") as h:
            self.head = ClassifierHead(h.int("in_features"), spec.num_classes, h.float("dropout", default=0.0))
        init_weights(self)
        if zero_init:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.last_bn().weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


# --------------------------------------------------------------------------- builder
@register_family("resnet")
def _build(spec: ArchSpec) -> nn.Module:
    return ResNet(spec)


def _resnet_spec(
    block: str, depths: list[int], widths: list[int], *, cifar: bool, stem_width: int, num_classes: int,
    groups: int = 1, base_width: int = 64, conv2_kind: str = "group", shortcut_type: str = "conv",
    dg_all: bool = False, zero_init_residual: bool = False,
) -> ArchSpec:
    """Decode (block, depths, widths, cardinality) into a full spec; ``dg_all`` makes every 3x3 a DGConv."""
    expansion = 4 if block == "bottleneck" else 1
    k3 = "dgconv" if dg_all else "dense"
    stem = {"type": "stem", "conv": conv_spec(3, stem_width, 3 if cifar else 7, 1 if cifar else 2), "pool": not cifar}
    stages: list[dict[str, Any]] = []
    cin = stem_width
    for i, (depth, planes) in enumerate(zip(depths, widths)):
        blocks = []
        for j in range(depth):
            stride = 2 if (j == 0 and i > 0) else 1
            cout = planes * expansion
            proj = (stride != 1 or cin != cout) and shortcut_type == "conv"
            shortcut = conv_spec(cin, cout, 1, stride) if proj else None
            if block == "basic":
                b = {"type": "basic", "conv1": conv_spec(cin, planes, 3, stride, kind=k3),
                     "conv2": conv_spec(planes, planes, 3, kind=k3), "shortcut": shortcut}
                if shortcut_type != "conv":
                    b["shortcut_type"] = shortcut_type
            else:
                width = planes * base_width // 64 * groups
                kind = "dgconv" if conv2_kind == "dgconv" else ("group" if groups > 1 else "dense")
                g = 1 if kind == "dgconv" else groups
                b = {"type": "bottleneck", "conv1": conv_spec(cin, width), "conv2": conv_spec(width, width, 3, stride,
                     kind=kind, groups=g), "conv3": conv_spec(width, cout), "shortcut": shortcut}
            blocks.append(b)
            cin = cout
        stages.append({"blocks": blocks})
    size = (3, 32, 32) if cifar else (3, 224, 224)
    if not isinstance(zero_init_residual, bool):
        raise ValueError(f"zero_init_residual must be True or False, got {zero_init_residual!r}")
    return ArchSpec(family="resnet", num_classes=num_classes, input_size=size, stem=stem, stages=stages,
                    head={"type": "classifier", "in_features": cin},
                    config={"zero_init_residual": True} if zero_init_residual else {})


# --------------------------------------------------------------------------- named models
@register_model
def resnet20_cifar(*, num_classes: int = 10, zero_init_residual: bool = False) -> ArchSpec:
    """ResNet-20 for CIFAR (He et al. 2016 §4.2, option A shortcuts): 0.27M parameters."""
    return _resnet_spec("basic", [3, 3, 3], [16, 32, 64], cifar=True, stem_width=16, num_classes=num_classes,
                        shortcut_type="pad", zero_init_residual=zero_init_residual)


@register_model
def resnet56_cifar(*, num_classes: int = 10, zero_init_residual: bool = False) -> ArchSpec:
    """ResNet-56 for CIFAR (He et al. 2016 §4.2, option A shortcuts): 0.85M parameters."""
    return _resnet_spec("basic", [9, 9, 9], [16, 32, 64], cifar=True, stem_width=16, num_classes=num_classes,
                        shortcut_type="pad", zero_init_residual=zero_init_residual)


@register_model
def resnet18_cifar(*, num_classes: int = 10, zero_init_residual: bool = False) -> ArchSpec:
    """ResNet-18 with a 3x3 CIFAR stem, 4 stages 64..512 (MGiaD Table I baseline): 11,174k parameters."""
    return _resnet_spec("basic", [2, 2, 2, 2], [64, 128, 256, 512], cifar=True, stem_width=64,
                        num_classes=num_classes, zero_init_residual=zero_init_residual)


@register_model
def resnet50(*, num_classes: int = 1000, zero_init_residual: bool = False) -> ArchSpec:
    """ResNet-50 (He et al. 2016, torchvision v1.5 layout): 25.6M parameters."""
    return _resnet_spec("bottleneck", [3, 4, 6, 3], [64, 128, 256, 512], cifar=False, stem_width=64,
                        num_classes=num_classes, zero_init_residual=zero_init_residual)


@register_model
def resnext50_32x4d(*, num_classes: int = 1000, groups: int = 32, zero_init_residual: bool = False) -> ArchSpec:
    """ResNeXt-50 32x4d (Xie et al. 2017): 25.0M parameters. ``groups`` changes the 3x3 cardinality."""
    return _resnet_spec("bottleneck", [3, 4, 6, 3], [64, 128, 256, 512], cifar=False, stem_width=64,
                        num_classes=num_classes, groups=groups, base_width=4 * 32 // groups,
                        zero_init_residual=zero_init_residual)


@register_model
def resnext101_32x4d(*, num_classes: int = 1000, groups: int = 32, zero_init_residual: bool = False) -> ArchSpec:
    """ResNeXt-101 32x4d (Xie et al. 2017): 44.2M parameters."""
    return _resnet_spec("bottleneck", [3, 4, 23, 3], [64, 128, 256, 512], cifar=False, stem_width=64,
                        num_classes=num_classes, groups=groups, base_width=4 * 32 // groups,
                        zero_init_residual=zero_init_residual)


@register_model
def g_resnext50(*, num_classes: int = 1000, zero_init_residual: bool = False) -> ArchSpec:
    """G-ResNeXt-50 supernet (Zhang et al. Table 1): ResNeXt-50 32x4d widths, every 3x3 a DGConv."""
    return _resnet_spec("bottleneck", [3, 4, 6, 3], [64, 128, 256, 512], cifar=False, stem_width=64,
                        num_classes=num_classes, groups=32, base_width=4, conv2_kind="dgconv",
                        zero_init_residual=zero_init_residual)


@register_model
def g_resnext101(*, num_classes: int = 1000, zero_init_residual: bool = False) -> ArchSpec:
    """G-ResNeXt-101 supernet (Zhang et al. Table 1): ResNeXt-101 32x4d widths, every 3x3 a DGConv."""
    return _resnet_spec("bottleneck", [3, 4, 23, 3], [64, 128, 256, 512], cifar=False, stem_width=64,
                        num_classes=num_classes, groups=32, base_width=4, conv2_kind="dgconv",
                        zero_init_residual=zero_init_residual)


@register_model
def g_resnet20_cifar(*, num_classes: int = 10, zero_init_residual: bool = False) -> ArchSpec:
    """ResNet-20 (CIFAR) supernet with every 3x3 conv a DGConv: small enough for a search on a laptop (`mgnas demo`)."""
    return _resnet_spec("basic", [3, 3, 3], [16, 32, 64], cifar=True, stem_width=16, num_classes=num_classes,
                        shortcut_type="pad", dg_all=True, zero_init_residual=zero_init_residual)


@register_model
def g_resnet56_cifar(*, num_classes: int = 10, zero_init_residual: bool = False) -> ArchSpec:
    """ResNet-56 (CIFAR) supernet with every 3x3 conv a DGConv (16->32 / 32->64 transitions have C_in != C_out)."""
    return _resnet_spec("basic", [9, 9, 9], [16, 32, 64], cifar=True, stem_width=16, num_classes=num_classes,
                        shortcut_type="pad", dg_all=True, zero_init_residual=zero_init_residual)
