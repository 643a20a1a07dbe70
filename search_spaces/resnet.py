"""Group-count spaces for ResNeXt / ResNet and their DGConv supernets (Zhang et al. Table 1)."""

from __future__ import annotations

from ._generic import ConvGroupsSpace, path_matches
from ._registry import register_space

POW2 = (1, 2, 4, 8, 16, 32, 64)


def _resnext(model: str) -> ConvGroupsSpace:
    return ConvGroupsSpace(
        f"{model.split('_')[0]}_groups", model, path_matches(r"stages\[\d+\]\.blocks\[\d+\]\.conv2"), POW2,
        default_groups=32,
        description=f"groups of every bottleneck 3x3 conv of {model} (1..64); supernet = G-ResNeXt (all DGConv)",
    )


register_space("resnext50_groups", lambda: _resnext("resnext50_32x4d"))
register_space("resnext101_groups", lambda: _resnext("resnext101_32x4d"))
register_space(
    "resnet20_groups",
    lambda: ConvGroupsSpace(
        "resnet20_groups", "resnet20_cifar", path_matches(r"stages\[\d+\]\.blocks\[\d+\]\.conv[12]"), POW2,
        default_groups=1, description="groups of every 3x3 conv of ResNet-20 (CIFAR); supernet = g_resnet20_cifar",
    ),
)
register_space(
    "resnet56_groups",
    lambda: ConvGroupsSpace(
        "resnet56_groups", "resnet56_cifar", path_matches(r"stages\[\d+\]\.blocks\[\d+\]\.conv[12]"), POW2,
        default_groups=1, description="groups of every 3x3 conv of ResNet-56 (CIFAR); supernet = g_resnet56_cifar",
    ),
)
