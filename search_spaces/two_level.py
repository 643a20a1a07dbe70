"""Group-count spaces with a two-level switch (Lee et al.): WRN 3x3 convs, MobileNetV2 1x1 convs.

Each switchable conv gets its own ``groups`` choice (only divisors of its channels are offered) and
one global ``two_level`` choice adds the coarse branch of Eq. 3.5 to every grouped conv. The
DGConv supernet makes the same convs DGConvs, so the group count per layer is learned instead.
"""

from __future__ import annotations

from ._generic import ConvGroupsSpace, path_matches
from ._registry import register_space

_BLOCK_CONVS = r"stages\[\d+\]\.blocks\[\d+\]\.(conv1|conv2|shortcut)"
_ONE_BY_ONE = r"stages\[\d+\]\.blocks\[\d+\]\.(expand|project)"


def _wrn(model: str) -> ConvGroupsSpace:
    return ConvGroupsSpace(
        f"{model}_groups", model, path_matches(_BLOCK_CONVS), (1, 2, 4, 8, 16), default_groups=1, two_level=True,
        description=f"groups of every residual-block conv of {model} (projections included) + two-level switch",
    )


register_space("wrn28_10_groups", lambda: _wrn("wrn28_10"))
register_space("wrn34_2_groups", lambda: _wrn("wrn34_2"))
register_space(
    "mobilenetv2_groups",
    lambda: ConvGroupsSpace(
        "mobilenetv2_groups", "mobilenetv2", path_matches(_ONE_BY_ONE), (1, 2, 4, 8), default_groups=1,
        two_level=True, description="groups of every expansion/projection 1x1 conv of MobileNetV2 + two-level switch",
    ),
)
