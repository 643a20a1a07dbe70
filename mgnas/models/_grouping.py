"""Lee et al.'s conv switch shared by the families that offer it (WRN, MobileNetV2).

``conv`` in {"standard", "group", "two_level", "shuffle"} and ``groups=N`` decide what every
switchable conv of a model becomes (Lee et al. §4: GC, GC-2L, ShuffleNet's shuffle).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from ..spec import divisors
from ._common import conv_spec

CONV_CHOICES = ("standard", "group", "two_level", "shuffle")


def check_conv_choice(model: str, conv: str, groups: int, widths: Iterable[int]) -> None:
    """ValueError naming the argument and its valid values for an impossible ``conv`` / ``groups``.

    ``widths`` are the channel counts of every conv that ``groups`` would split.
    """
    if conv not in CONV_CHOICES:
        raise ValueError(f"{model}: conv={conv!r} is not valid; valid conv values: "
                         f"{', '.join(map(repr, CONV_CHOICES))}")
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"{model}: groups must be a positive integer, got {groups!r}")
    if conv == "standard" and groups != 1:
        raise ValueError(f"{model}: groups={groups} needs a grouped conv; valid: groups=1 with conv='standard', "
                         f"or conv='group', 'two_level' or 'shuffle'")
    widths = sorted(set(widths))
    common = math.gcd(*widths)
    if common % groups:
        bad = next(w for w in widths if w % groups)
        valid = ", ".join(map(str, divisors(common)))
        raise ValueError(f"{model}: groups={groups} does not divide the {bad}-channel width; "
                         f"valid groups: {valid}")


def gc_conv_spec(cin: int, cout: int, k: int, stride: int, conv: str, groups: int,
                 coarse: bool = True) -> dict[str, Any]:
    """The conv of a layer under Lee et al.'s switch; ``coarse=False`` keeps GC-2L layers plain GC."""
    if conv == "standard":
        return conv_spec(cin, cout, k, stride)
    if conv == "two_level" and coarse:
        return conv_spec(cin, cout, k, stride, kind="two_level", groups=groups)
    if conv == "shuffle" and groups > 1:
        return conv_spec(cin, cout, k, stride, kind="group", groups=groups, shuffle=groups)
    return conv_spec(cin, cout, k, stride, kind="group", groups=groups)
