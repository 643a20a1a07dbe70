"""Wide residual networks (Zagoruyko & Komodakis 2016) with the conv switch of Lee, Park & Lee (GC-2L).

Family ``"wrn"``. Order: blocks -> model -> builder -> named models.

Spec layout::

    stem:   {"type": "stem", "conv": conv, "bn": bool, "pool": bool}
            (CIFAR: 3x3 conv only; ImageNet: 7x7/2 conv -> BN -> ReLU -> 3x3/2 max-pool)
    blocks: {"type": "wide_basic", "conv1": conv, "conv2": conv, "shortcut": conv | null, "dropout": float}
    head:   {"type": "preact_classifier", "in_features": int, "dropout": float}

``wide_basic`` is the pre-activation wide basic block: BN-ReLU-conv3x3(stride)-BN-ReLU-dropout-conv3x3,
plus the identity, or a 1x1 projection of the *pre-activated* input when the shape changes (as in the
authors' code). The pre-activation head is BN-ReLU-pool-fc.

The conv switch (Lee et al. §4.1, Tables 1 and 3): ``conv`` = ``"standard"`` | ``"group"`` (GC) |
``"two_level"`` (GC-2L, :class:`mgnas.ops.TwoLevelGroupConv2d`) | ``"shuffle"`` (GC + ShuffleNet
channel shuffle), with ``groups`` = N. It applies to every conv inside the residual blocks, the 1x1
projection shortcuts included; stem and classifier stay dense. With this rule the measured counts
reproduce the paper's tables (M = 1e6 parameters, paper in brackets)::

    WRN-28-10 (CIFAR-10)  N=1 36.48 [36.48]
                          GC    N=2 18.25 [18.25]  N=4  9.14 [9.14]  N=8  4.58 [4.58]  N=16 2.30 [2.30]
                          GC-2L N=2 18.35 [18.35]  N=4  9.25 [9.25]  N=8  4.74 [4.74]  N=16 2.54 [2.54]
    WRN-34-2 (ImageNet)   N=1 86.03 [86.03]
                          GC    N=2 43.55 [43.55]  N=4 22.31 [22.31] N=8 11.69 [11.69] N=16 6.38 [6.38]
                          GC-2L N=2 43.71 [43.71]  N=4 22.50 [22.50] N=8 11.95 [11.95] N=16 6.78 [6.78]

WRN-34-2 is not specified in the paper; the layout that gives all nine counts above is ResNet-34's
(basic blocks 3-4-6-3, 7x7/2 stem with 64 channels + max-pool) with block widths doubled to
128-256-512-1024, in the pre-activation form. (A post-activation ResNet layout with the same
widths misses two of the nine: SC 86.04M, GC-2L N=4 22.51M; the BN placement is the difference.)

Initialisation: convs Kaiming-normal (fan_out), BN weight 1 / bias 0, the classifier N(0, 0.01). There is no
``zero_init_residual`` here: in the pre-activation block the residual branch ends in a conv, not a BN, so
torchvision's trick (zero the last BN gamma of each block) has nothing to act on.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..spec import ArchSpec, BlockReader, SpecError
from ._common import ClassifierHead, build_stages, conv_from_spec, conv_spec, init_weights
from ._grouping import check_conv_choice, gc_conv_spec
from ._registry import register_family, register_model

__all__ = [
    "WideBasicBlock", "WideResNet", "wrn28_10", "wrn34_2",
]

# --------------------------------------------------------------------------- blocks
class WideBasicBlock(nn.Module):
    """Pre-activation wide basic block (Zagoruyko & Komodakis, Fig. 1b / Lee et al. Fig. 3)."""

    def __init__(self, b: BlockReader) -> None:
        super().__init__()
        c1, c2 = b.conv("conv1"), b.conv("conv2")
        b.check_channels(c2, "conv2", c1.out_channels, c2.out_channels)
        shortcut = b.conv("shortcut", optional=True)
        b.check_channels(shortcut, "shortcut", c1.in_channels, c2.out_channels)
        if shortcut is None and (c1.in_channels != c2.out_channels or c1.stride != 1):
            raise SpecError(f"{b.path}.shortcut", f"a {c1.in_channels}->{c2.out_channels} stride-{c1.stride} "
                                                  "block needs a projection conv")
        if shortcut is not None and shortcut.stride != c1.stride:
            raise SpecError(f"{b.path}.shortcut.stride", f"is {shortcut.stride} but conv1 has stride {c1.stride}")
        dropout = b.float("dropout", default=0.0)
        self.bn1 = nn.BatchNorm2d(c1.in_channels)
        self.conv1 = conv_from_spec(c1)
        self.bn2 = nn.BatchNorm2d(c1.out_channels)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = conv_from_spec(c2)
        self.shortcut = conv_from_spec(shortcut) if shortcut is not None else None
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.act(self.bn1(x))
        y = self.conv2(self.dropout(self.act(self.bn2(self.conv1(o)))))
        return y + (self.shortcut(o) if self.shortcut is not None else x)


# --------------------------------------------------------------------------- model
class Stem(nn.Sequential):
    def __init__(self, b: BlockReader) -> None:
        super().__init__()
        conv = b.conv("conv")
        self.conv = conv_from_spec(conv)
        if b.bool("bn", default=False):
            self.bn = nn.BatchNorm2d(conv.out_channels)
            self.act = nn.ReLU(inplace=True)
        if b.bool("pool", default=False):
            self.pool = nn.MaxPool2d(3, 2, 1)


class PreActHead(nn.Module):
    """BN -> ReLU -> global average pool -> (dropout) -> linear."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(in_features)
        self.act = nn.ReLU(inplace=True)
        self.classifier = ClassifierHead(in_features, num_classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.act(self.bn(x)))


class WideResNet(nn.Module):
    """stem -> stages of wide basic blocks -> BN-ReLU-pool-fc."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        with BlockReader(spec.stem or {}, "stem") as b:
            self.stem = Stem(b)
        self.stages = build_stages(spec, {"wide_basic": WideBasicBlock})
        with BlockReader(spec.head or {}, "head") as h:
            if h.type != "preact_classifier":
                raise SpecError("head.type", f"unknown head type {h.type!r}; valid: preact_classifier")
            self.head = PreActHead(h.int("in_features"), spec.num_classes, h.float("dropout", default=0.0))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


# --------------------------------------------------------------------------- builder
@register_family("wrn")
def _build(spec: ArchSpec) -> nn.Module:
    return WideResNet(spec)


def _wrn_spec(depths: list[int], widths: list[int], *, imagenet: bool, stem_width: int, num_classes: int,
              conv: str, groups: int, dropout: float, name: str) -> ArchSpec:
    """Decode (blocks per stage, widths, conv switch) into a full spec."""
    check_conv_choice(name, conv, groups, [stem_width, *widths])
    if imagenet:
        stem: dict[str, Any] = {"type": "stem", "conv": conv_spec(3, stem_width, 7, 2), "bn": True, "pool": True}
    else:
        stem = {"type": "stem", "conv": conv_spec(3, stem_width, 3)}
    stages: list[dict[str, Any]] = []
    cin = stem_width
    for i, (depth, width) in enumerate(zip(depths, widths)):
        blocks = []
        for j in range(depth):
            stride = 2 if (j == 0 and i > 0) else 1
            proj = stride != 1 or cin != width
            block: dict[str, Any] = {
                "type": "wide_basic",
                "conv1": gc_conv_spec(cin, width, 3, stride, conv, groups),
                "conv2": gc_conv_spec(width, width, 3, 1, conv, groups),
                "shortcut": gc_conv_spec(cin, width, 1, stride, conv, groups) if proj else None,
            }
            if dropout:
                block["dropout"] = dropout
            blocks.append(block)
            cin = width
        stages.append({"blocks": blocks})
    size = (3, 224, 224) if imagenet else (3, 32, 32)
    return ArchSpec(family="wrn", num_classes=num_classes, input_size=size, stem=stem, stages=stages,
                    head={"type": "preact_classifier", "in_features": cin},
                    provenance={"paper": "Lee, Park & Lee, Two-level group convolution, Tables 1 and 3"})


# --------------------------------------------------------------------------- named models
@register_model
def wrn28_10(*, num_classes: int = 10, conv: str = "standard", groups: int = 1, dropout: float = 0.0) -> ArchSpec:
    """WRN-28-10 for CIFAR (Zagoruyko & Komodakis): 36.48M. conv='group'|'two_level'|'shuffle' with groups=N
    groups every conv in the blocks (Lee et al. Table 3: GC N=2 18.25M, GC-2L N=2 18.35M, N=16 2.30M/2.54M)."""
    return _wrn_spec([4, 4, 4], [160, 320, 640], imagenet=False, stem_width=16, num_classes=num_classes,
                     conv=conv, groups=groups, dropout=dropout, name="wrn28_10")


@register_model
def wrn34_2(*, num_classes: int = 1000, conv: str = "standard", groups: int = 1, dropout: float = 0.0) -> ArchSpec:
    """WRN-34-2 for ImageNet (ResNet-34 layout, widths x2, pre-activation): 86.03M. conv/groups as wrn28_10
    (Lee et al. Table 3: GC N=2 43.55M, GC-2L N=2 43.71M, N=16 6.38M/6.78M)."""
    return _wrn_spec([3, 4, 6, 3], [128, 256, 512, 1024], imagenet=True, stem_width=64, num_classes=num_classes,
                     conv=conv, groups=groups, dropout=dropout, name="wrn34_2")
