"""The layers (L1). Nothing here imports anything above ``mgnas.ops`` (no models, search or CLI code).

``mgnas.ops`` may import ``mgnas.spec`` (L0, standard library only) and torch, nothing else of mgnas.
Exports are resolved lazily so ``import mgnas.ops`` stays cheap and one layer's import error
cannot break the others.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    # module: names
    "factory": ("create_conv2d",),
    "group": ("GroupConv2d", "ChannelShuffle", "channel_shuffle"),
    "dgconv": ("DGConv2d", "set_dgconv_impl"),
    "two_level": ("TwoLevelGroupConv2d",),
    "mgic": ("MGICBlock", "MGICConnector", "ChannelRestriction", "ChannelProlongation",
             "BasicCNNBlock", "BottleneckCNNBlock", "InvertedResidualCNNBlock", "mgic_levels"),
    "mgnet": ("MgNetSmoother", "MgNetTransfer", "MgNetLevel", "SiCCycle", "MGiaDSmoother", "channel_levels"),
    "multigrid": ("MultigridConv2d", "MultigridResidualUnit", "MultigridLayer", "MultigridPool", "pyramid_pool",
                  "multigrid_pool"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'mgnas.ops' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
