"""MGiaD / MgNet structure spaces (Schneider et al., Tables II, V, VII-IX).

The MGiaD space is the paper's study grid: coarsest channel count c_K, group size gs, channel scale
λ, post-smoothings η_post and resolution levels. Combinations the model cannot build (gs larger than
c_K's level, …) are rejected by the model factory with its reason and pruned by studies. Its DGConv
supernet makes every grouped A/B smoother conv of the channel V-cycles a DGConv: the group size is
then learned per channel level.
"""

from __future__ import annotations

import re

from mgnas.spec import ConvSpec

from ._generic import ModelArgsSpace, dgconv_supernet
from ._registry import register_space

_SMOOTHERS = r"stages\[\d+\]\.blocks\[\d+\]\.levels\[\d+\]\.(A|B)"  # MGiaD: per channel level
_MGNET_SMOOTHERS = r"stages\[\d+\]\.blocks\[\d+\]\.(A|B)"  # MgNet: one shared A and B per resolution level


def _grouped_smoother(path: str, conv: ConvSpec) -> bool:
    return conv.kind == "group" and re.fullmatch(_SMOOTHERS, path) is not None


register_space(
    "mgiad_cifar",
    lambda: ModelArgsSpace(
        "mgiad_cifar", "mgiad_cifar",
        {
            "coarse_channels": ((4, 8, 16, 32, 64), 64),
            "group_size": ((4, 8, 16, 32, 64), 4),
            "channel_scale": ((1, 2, 3), 1),
            "post_smooth": ((1, 2, 3), 1),
            "levels": ((3, 4), 4),
        },
        supernet=dgconv_supernet(_grouped_smoother),
        description="MGiaD (CIFAR): c_K, gs, λ, η_post, resolution levels; supernet learns gs per channel level",
    ),
)
register_space(
    "mgnet_cifar",
    lambda: ModelArgsSpace(
        "mgnet_cifar", "mgnet_cifar", {"levels": ((3, 4), 4), "smoothings": ((1, 2, 3), 2)},
        supernet=dgconv_supernet(lambda path, _conv: re.fullmatch(_MGNET_SMOOTHERS, path) is not None),
        description="MgNet (CIFAR): resolution levels, smoothings; supernet learns the groups of A and B "
        "(the grouping Table VI sets by hand)",
    ),
)
