"""``to_static``: a search-free, exact copy of a model; ``fuse_bn``: BatchNorm folded into convs.

:func:`to_static` (1) replaces every child that has a ``to_static()`` method (duck typing, timm's
``reparameterize`` idea: :class:`~mgnas.ops.DGConv2d` becomes a grouped ``nn.Conv2d`` or a
:class:`~mgnas.ops.group.GroupConv2d` with channel permutations), (2) folds those permutations into
neighbouring convs and BatchNorms where the block structure allows it (:mod:`._fold`), (3) optionally
fuses BatchNorm into the preceding convs for deployment. The result equals the input model in eval mode.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..ops.group import GroupConv2d
from ._fold import fold_permutations


def _freeze_searchable(module: nn.Module) -> nn.Module:
    """Replace (recursively) every module with a ``to_static()`` method by what it returns."""
    if callable(getattr(module, "to_static", None)):
        return module.to_static()
    for name, child in module.named_children():
        new = _freeze_searchable(child)
        if new is not child:
            setattr(module, name, new)
    return module


def to_static(model: nn.Module, fold: bool = True, fuse_bn: bool = False) -> nn.Module:
    """A deep copy of ``model`` without search machinery (no gates, no masks), equal to it in eval mode.

    ``fold``: absorb channel permutations into neighbouring convs/BatchNorms where legal (ResNet/ResNeXt
    blocks, MobileNetV2 inverted residuals; see :mod:`mgnas.export._fold`), keeping an explicit gather
    only where it is not (residual streams, between two grouped convs). ``fuse_bn``: fold every
    BatchNorm that follows a conv into that conv (uses running statistics: an inference-only model).
    The copy keeps the training/eval mode of ``model``.
    """
    static = _freeze_searchable(copy.deepcopy(model))
    if fold:
        static = fold_permutations(static)
    if fuse_bn:
        static = _fuse_bn_(static)
    return static


@torch.no_grad()
def _fuse_pair(conv: nn.Module, bn: nn.BatchNorm2d) -> None:
    """y = γ (conv(x) − μ)/√(σ² + ε) + β as one conv: rows scaled by s = γ/√(σ² + ε), bias (b − μ)s + β.

    For a GroupConv2d the BN channel j follows raw conv row ``out_index[j]``.
    """
    raw = conv.conv if isinstance(conv, GroupConv2d) else conv
    w = raw.weight
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else 1.0 / torch.sqrt(bn.running_var + bn.eps)
    shift = (bn.bias if bn.affine else torch.zeros_like(bn.running_mean)) - bn.running_mean * scale
    if isinstance(conv, GroupConv2d) and conv.out_index is not None:
        inv = torch.argsort(conv.out_index)  # raw row r is BN channel inv[r]
        scale, shift = scale[inv], shift[inv]
    if raw.bias is None:
        raw.bias = nn.Parameter(torch.zeros(raw.out_channels, dtype=w.dtype, device=w.device))
    raw.bias.copy_(raw.bias * scale + shift)
    w.copy_(w * scale.reshape(-1, 1, 1, 1).to(w.dtype))


def _fuse_bn_(model: nn.Module) -> nn.Module:
    """In place: inside every ``nn.Sequential`` (``ConvBNAct`` included), a conv directly followed by a
    ``BatchNorm2d`` with running statistics absorbs it; the BN becomes ``nn.Identity``."""
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = seq._modules[a], seq._modules[b]
            if (isinstance(conv, (nn.Conv2d, GroupConv2d)) and isinstance(bn, nn.BatchNorm2d)
                    and bn.running_var is not None and bn.num_features == (
                        conv.conv if isinstance(conv, GroupConv2d) else conv).out_channels):
                _fuse_pair(conv, bn)
                seq._modules[b] = nn.Identity()
    return model


def fuse_bn(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every BatchNorm that follows a conv (in a ``Sequential``) fused into
    the conv, creating the conv bias. Equal to ``model`` in eval mode (BN uses its running statistics)."""
    return _fuse_bn_(copy.deepcopy(model))
