"""MGIC structure spaces (Eliasof et al. §5.5, Tables 2-4, 7-8): s_g, s_c, level cap, level rule, width.

``level_rule`` is a dimension because the paper's rule (halve until c <= s_c) and the authors' code
(always coarsen once, threshold ~2·s_c) give different networks for the same (s_g, s_c); a study can
compare them. Infeasible combinations (s_g not dividing a level's width) are rejected by the model
factory with the reason. The DGConv supernet makes every grouped per-level conv of every MGIC block
a DGConv, so the group size is learned per level: nobody else offers this.
"""

from __future__ import annotations

import re

from mgnas.spec import ConvSpec

from ._generic import ModelArgsSpace, dgconv_supernet
from ._registry import register_space

_LEVEL_CONV = re.compile(r"stages\[\d+\]\.blocks\[\d+\]\.levels\[\d+\]\.\w+")


def _grouped_level_conv(path: str, conv: ConvSpec) -> bool:
    depthwise = conv.groups == conv.in_channels == conv.out_channels
    return conv.kind == "group" and not depthwise and _LEVEL_CONV.fullmatch(path) is not None


def _space(name: str, model: str, dims: dict, description: str) -> ModelArgsSpace:
    return ModelArgsSpace(name, model, dims, supernet=dgconv_supernet(_grouped_level_conv), description=description)


register_space("mgic_resnet56", lambda: _space("mgic_resnet56", "mgic_resnet56", {
    "group_size": ((4, 8, 16, 32), 8),
    "coarse_size": ((16, 32, 64), 16),
    "levels": ((None, 1, 2, 3), None),
    "level_rule": (("paper", "code"), "paper"),
}, "MGIC-ResNet-56 (CIFAR): the §5.5 ablation grid over s_g, s_c, plus level cap and level rule"))
register_space("mgic_resnet50", lambda: _space("mgic_resnet50", "mgic_resnet50", {
    "group_size": ((16, 32, 64), 32),
    "coarse_size": ((32, 64), 64),
    "levels": ((None, 1, 2, 3), None),
    "level_rule": (("paper", "code"), "paper"),
}, "MGIC-ResNet-50 (ImageNet, Table 3): s_g, s_c, level cap, level rule"))
register_space("mgic_mobilenetv3", lambda: _space("mgic_mobilenetv3", "mgic_mobilenetv3_large", {
    "width": ((0.6, 1.0, 1.2), 1.0),
    "group_size": ((16, 32, 64), 64),
    "coarse_size": ((32, 64), 64),
}, "MGIC-MobileNetV3-Large (ImageNet, Table 4): width, s_g, s_c"))
