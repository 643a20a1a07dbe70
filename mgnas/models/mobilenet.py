"""MobileNetV2 (Sandler et al. 2018) with the 1x1-conv switch of Lee, Park & Lee (GC-2L, §4.2, Table 4).

Family ``"mobilenetv2"``. Order: blocks -> model -> builder -> named models.

Spec layout (the rows of Sandler et al. Table 2)::

    stem:   {"type": "stem", "conv": conv}                        3x3/2 conv -> BN -> ReLU6
    stages[0..6].blocks: {"type": "inverted_residual", "expand": conv | null, "dw": conv, "project": conv}
            expand 1x1 -> BN -> ReLU6, depthwise 3x3 -> BN -> ReLU6, project 1x1 -> BN (linear bottleneck);
            identity residual when the block keeps shape (stride 1, C_in == C_out)
    stages[7].blocks:    {"type": "conv_bn_act", "conv": conv}    the final 1x1 320 -> 1280 -> BN -> ReLU6
    head:   {"type": "classifier", "in_features": 1280, "dropout": 0.2}

The conv switch ``conv`` = ``"standard"`` | ``"group"`` (GC) | ``"two_level"`` (GC-2L) | ``"shuffle"``
(GC + channel shuffle), ``groups`` = N, acts on the 1x1 convs; the depthwise convs, the stem and the
classifier are unchanged. The paper's Table 4 decides which 1x1 convs (M = 1e6 parameters)::

    standard 3.50 [3.50]
    GC    N=2 2.44 [2.44]   N=4 1.91 [1.91]   N=8 1.65 [1.65]
    GC-2L N=2 2.47 [2.47]   N=4 1.95 [1.95]   N=8 1.72 [1.72]

- GC: the expansion and projection 1x1 convs of *every* inverted residual block **and the final
  320 -> 1280 conv** are grouped. Without grouping the final conv, GC would be 2.65 / 2.22 / 2.00M.
  Grouping the first block's projection (32 -> 16, expansion 1) or not changes the count by < 0.001M;
  we group it (every 1x1 of every block).
- GC-2L: the coarse branch is on the block 1x1 convs but **not** on the final conv, which stays a
  plain group conv. Giving the final conv a coarse branch as well adds 320 + 1280 N parameters
  (2.471 / 1.960 / 1.734M), which misses the paper at N=4 and N=8 (1.95 / 1.72M); only this
  choice reproduces all three GC-2L counts (measured 2.468 / 1.954 / 1.723M).
- Valid N: the widths 16, 24, ... have gcd 8, so N is one of 1, 2, 4, 8 (the paper's range).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..spec import ArchSpec, BlockReader
from ._common import ClassifierHead, ConvBNAct, build_stages, conv_spec, init_weights
from ._grouping import check_conv_choice, gc_conv_spec
from ._registry import register_family, register_model

__all__ = ["InvertedResidual", "MobileNetV2", "mobilenetv2"]

# Sandler et al. Table 2: expansion t, output channels c, repeats n, first stride s
_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def _make_divisible(v: float, divisor: int = 8) -> int:
    """Round a scaled width to a multiple of ``divisor`` without losing more than 10% (Sandler et al.'s code)."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


# --------------------------------------------------------------------------- blocks
class InvertedResidual(nn.Module):
    """Expand 1x1 -> depthwise 3x3 -> linear project 1x1, residual when shapes match (Sandler et al. Fig. 4d)."""

    def __init__(self, b: BlockReader) -> None:
        super().__init__()
        expand, dw, project = b.conv("expand", optional=True), b.conv("dw"), b.conv("project")
        cin = expand.in_channels if expand is not None else dw.in_channels
        b.check_channels(dw, "dw", expand.out_channels if expand is not None else cin, dw.in_channels)
        b.check_channels(project, "project", dw.out_channels, project.out_channels)
        self.expand = ConvBNAct(expand, act="relu6") if expand is not None else nn.Identity()
        self.dw = ConvBNAct(dw, act="relu6")
        self.project = ConvBNAct(project, act="none")
        self.residual = dw.stride == 1 and project.stride == 1 and cin == project.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.dw(self.expand(x)))
        return x + y if self.residual else y


class FinalConv(ConvBNAct):
    def __init__(self, b: BlockReader) -> None:
        super().__init__(b.conv("conv"), act="relu6")


_BLOCKS = {"inverted_residual": InvertedResidual, "conv_bn_act": FinalConv}


# --------------------------------------------------------------------------- model
class MobileNetV2(nn.Module):
    """stem -> inverted residual stages -> final 1x1 conv -> pool -> dropout -> fc."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        with BlockReader(spec.stem or {}, "stem") as b:
            self.stem = ConvBNAct(b.conv("conv"), act="relu6")
        self.stages = build_stages(spec, _BLOCKS)
        with BlockReader(spec.head or {}, "head") as h:
            self.head = ClassifierHead(h.int("in_features"), spec.num_classes, h.float("dropout", default=0.0))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


# --------------------------------------------------------------------------- builder
@register_family("mobilenetv2")
def _build(spec: ArchSpec) -> nn.Module:
    return MobileNetV2(spec)


def _mobilenetv2_spec(*, width_mult: float, num_classes: int, conv: str, groups: int, dropout: float) -> ArchSpec:
    """Decode Table 2 of Sandler et al. plus the 1x1-conv switch into a full spec."""
    if not width_mult > 0:
        raise ValueError(f"mobilenetv2: width_mult must be > 0, got {width_mult!r}")
    stem_width = _make_divisible(32 * width_mult)
    last = _make_divisible(1280 * max(1.0, width_mult))
    widths = [stem_width, last]
    cin = stem_width
    for t, c, n, _ in _SETTINGS:
        out = _make_divisible(c * width_mult)
        widths += [out] + [c_in * t for c_in in [cin] + [out] * (n - 1)]
        cin = out
    check_conv_choice("mobilenetv2", conv, groups, widths)

    stages: list[dict[str, Any]] = []
    cin = stem_width
    for t, c, n, s in _SETTINGS:
        out = _make_divisible(c * width_mult)
        blocks = []
        for j in range(n):
            hidden = cin * t
            blocks.append({
                "type": "inverted_residual",
                "expand": gc_conv_spec(cin, hidden, 1, 1, conv, groups) if t != 1 else None,
                "dw": conv_spec(hidden, hidden, 3, s if j == 0 else 1, kind="group", groups=hidden),
                "project": gc_conv_spec(hidden, out, 1, 1, conv, groups),
            })
            cin = out
        stages.append({"blocks": blocks})
    # the final 1x1 is grouped for GC but gets no coarse branch under GC-2L (Table 4, see module docstring)
    final = gc_conv_spec(cin, last, 1, 1, conv, groups, coarse=False)
    stages.append({"blocks": [{"type": "conv_bn_act", "conv": final}]})
    return ArchSpec(
        family="mobilenetv2", num_classes=num_classes, input_size=(3, 224, 224),
        stem={"type": "stem", "conv": conv_spec(3, stem_width, 3, 2)}, stages=stages,
        head={"type": "classifier", "in_features": last, "dropout": dropout},
        provenance={"paper": "Lee, Park & Lee, Two-level group convolution, Table 4"},
    )


# --------------------------------------------------------------------------- named models
@register_model
def mobilenetv2(*, num_classes: int = 1000, width_mult: float = 1.0, conv: str = "standard", groups: int = 1,
                dropout: float = 0.2) -> ArchSpec:
    """MobileNetV2 1.0 (Sandler et al.): 3.50M. conv='group'|'two_level'|'shuffle' with groups=N (1, 2, 4, 8) on the
    1x1 convs (Lee et al. Table 4: GC N=2 2.44M, GC-2L N=2 2.47M, N=8 1.65M/1.72M)."""
    return _mobilenetv2_spec(width_mult=width_mult, num_classes=num_classes, conv=conv, groups=groups,
                             dropout=dropout)
