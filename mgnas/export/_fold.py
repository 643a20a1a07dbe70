"""Fold the channel permutations of static grouped convs into their neighbours (DESIGN.md, DGConv).

A :class:`~mgnas.ops.group.GroupConv2d` computes ``out = conv(x[:, in_perm])[:, out_perm]``. Between a
*producer* unit P (conv -> BN -> act) and a *consumer* unit C (conv -> ...) whose input is P's output and
nothing else, only channel-wise ops (BN, ReLU-like activations) sit between the two convs, so the two
gathers ``P.out_perm`` and ``C.in_perm`` compose into one index ``q = P.out_perm[C.in_perm]`` on P's raw
conv output, and that index can be moved:

* into P's conv rows (weight, bias) when P's raw conv is dense (groups = 1): no gather left;
* else into C's conv input columns when C's raw conv is dense: no gather left;
* else (both grouped) it stays as a single gather on C's input (two gathers become one).

The BatchNorm between them is re-indexed to follow its channels. Which units form such chains is
structural knowledge, so it is given per block class through :func:`register_folder` (ResNet/ResNeXt
``Bottleneck`` conv1 -> conv2 -> conv3, ``BasicBlock`` conv1 -> conv2, MobileNetV2 ``InvertedResidual``
expand -> dw -> project). Permutations on a residual stream (a block's first input, its last output)
are kept; blocks of unregistered classes keep their GroupConv2d permutations (generic fallback).
Finally every GroupConv2d left with identity permutations and no shuffle becomes its plain ``nn.Conv2d``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from ..ops.group import GroupConv2d, shuffle_index

# activations that act channel by channel (so a channel permutation commutes with them)
_CHANNELWISE = (nn.Identity, nn.ReLU, nn.ReLU6, nn.Hardswish, nn.SiLU, nn.Sigmoid, nn.Hardsigmoid, nn.GELU)

Folder = Callable[[nn.Module], None]
_FOLDERS: dict[type, Folder] = {}


def register_folder(
    cls: type, chain: Sequence[str | tuple[str, str, str]] | None = None
) -> Callable[[Folder], Folder] | None:
    """Register how blocks of class ``cls`` are folded: either a ``chain`` of steps fed one into the next
    (a ``ConvBNAct`` attribute name, or ``(conv, bn, act)`` attribute names on the block), or (as a
    decorator) a function ``fold(block)``."""
    if chain is not None:
        names = tuple(chain)
        _FOLDERS[cls] = lambda block: fold_chain(block, names)
        return None

    def deco(fn: Folder) -> Folder:
        _FOLDERS[cls] = fn
        return fn

    return deco


def _raw(conv: nn.Module) -> nn.Conv2d:
    return conv.conv if isinstance(conv, GroupConv2d) else conv


def _out_gather(conv: nn.Module) -> Tensor:
    """The index ``o`` with ``conv(x) == raw(x')[:, o]`` (output permutation and shuffle fused)."""
    n = _raw(conv).out_channels
    if not isinstance(conv, GroupConv2d):
        return torch.arange(n)
    o = conv.out_perm.cpu()
    return o[shuffle_index(n, conv.shuffle)] if conv.shuffle > 1 else o


def _in_gather(conv: nn.Module) -> Tensor:
    n = _raw(conv).in_channels
    return conv.in_perm.cpu() if isinstance(conv, GroupConv2d) else torch.arange(n)


def _set_perms(conv: nn.Module, in_perm: Tensor | None = None, out_perm: Tensor | None = None) -> None:
    """Overwrite a GroupConv2d's permutations (shuffle fused into ``out_perm``) and refresh its gathers."""
    if not isinstance(conv, GroupConv2d):
        return
    if in_perm is not None:
        conv.in_perm.copy_(in_perm.to(conv.in_perm.device))
    if out_perm is not None:
        conv.out_perm.copy_(out_perm.to(conv.out_perm.device))
        conv.shuffle = 0
    conv._refresh()


@torch.no_grad()
def _index_bn(bn: nn.Module, idx: Tensor) -> None:
    """New BN channel ``i`` = old channel ``idx[i]`` (affine params and running stats)."""
    if not isinstance(bn, nn.BatchNorm2d):
        return
    for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
        if t is not None:
            t.copy_(t[idx.to(t.device)])


@torch.no_grad()
def fold_pair(pconv: nn.Module, bn: nn.Module, cconv: nn.Module) -> int:
    """Fold the gathers between producer conv ``pconv`` (followed by ``bn`` and a channel-wise act) and
    consumer conv ``cconv``, the producer's output feeding only the consumer. Both convs are plain
    ``nn.Conv2d`` or ``GroupConv2d`` and are modified in place. Returns the gathers left between them (0/1).
    """
    o, i = _out_gather(pconv), _in_gather(cconv)
    n = o.numel()
    q = o[i]  # consumer input channel k = producer raw output channel q[k]
    ident = torch.arange(n)
    if torch.equal(q, ident) and torch.equal(o, ident):
        return 0
    praw, craw = _raw(pconv), _raw(cconv)
    if praw.groups == 1:  # reorder the producer's rows: its raw output is already in consumer order
        praw.weight.copy_(praw.weight[q.to(praw.weight.device)])
        if praw.bias is not None:
            praw.bias.copy_(praw.bias[q.to(praw.bias.device)])
        _index_bn(bn, i)
        _set_perms(pconv, out_perm=ident)
        _set_perms(cconv, in_perm=ident)
        return 0
    if craw.groups > 1 and not isinstance(cconv, GroupConv2d):
        return 1  # both grouped, consumer plain: the producer's output gather is already the only one
    # BN (and act) now run on the producer's raw output order: raw channel r is old BN channel o^-1[r]
    _index_bn(bn, torch.argsort(o))
    _set_perms(pconv, out_perm=ident)
    if craw.groups == 1:  # reorder the consumer's input columns
        craw.weight.copy_(craw.weight[:, torch.argsort(q).to(craw.weight.device)])
        _set_perms(cconv, in_perm=ident)
        return 0
    _set_perms(cconv, in_perm=q)
    return 1


def _link(block: nn.Module, step: str | tuple[str, str, str]) -> tuple[nn.Module, nn.Module, nn.Module] | None:
    """``(conv, bn, act)`` of one chain step: a ``ConvBNAct`` attribute name, or attribute names
    ``(conv, bn, act)`` on the block itself; None when absent (e.g. ``nn.Identity``) or not foldable."""
    if isinstance(step, str):
        unit = getattr(block, step, None)
        parts = tuple(getattr(unit, a, None) for a in ("conv", "bn", "act")) if unit is not None else (None,) * 3
    else:
        parts = tuple(getattr(block, a, None) for a in step)
    conv, bn, act = parts
    ok = (isinstance(conv, (nn.Conv2d, GroupConv2d)) and isinstance(bn, (nn.BatchNorm2d, nn.Identity))
          and isinstance(act if act is not None else nn.Identity(), _CHANNELWISE))
    return (conv, bn, act) if ok else None


def fold_chain(block: nn.Module, chain: Sequence[str | tuple[str, str, str]]) -> None:
    """Fold every adjacent pair of steps ``chain[k] -> chain[k + 1]`` that both exist in ``block``
    (each step's output feeding only the next step's conv through its BN and channel-wise act)."""
    links = [_link(block, step) for step in chain]
    for p, c in zip(links, links[1:]):
        if p is not None and c is not None:
            fold_pair(p[0], p[1], c[0])


def _default_folders() -> None:
    from ..models.mobilenet import InvertedResidual
    from ..models.resnet import BasicBlock, Bottleneck
    from ..ops.mgic import BasicCNNBlock, BottleneckCNNBlock, InvertedResidualCNNBlock

    register_folder(Bottleneck, ("conv1", "conv2", "conv3"))
    register_folder(BasicBlock, ("conv1", "conv2"))
    register_folder(InvertedResidual, ("expand", "dw", "project"))
    # MGIC levels' CNN blocks (the level input x_j and the block output are residual streams: kept)
    register_folder(BasicCNNBlock, (("conv1", "bn1", "act"), ("conv2", "bn2", "act")))
    register_folder(BottleneckCNNBlock, (("conv1", "bn1", "act"), ("conv2", "bn2", "act"), ("conv3", "bn3", "act")))

    @register_folder(InvertedResidualCNNBlock)
    def _mv3(block: nn.Module) -> None:
        # the SE between dw and project reads all channels (not channel-wise): only expand -> dw folds then
        chain = [("conv1", "bn1", "act1"), ("conv2", "bn2", "act2")]
        if isinstance(block.se, nn.Identity):
            chain.append(("conv3", "bn3", "act2"))
        fold_chain(block, chain)


def _folder_for(m: nn.Module) -> Folder | None:
    for cls in type(m).__mro__:
        if cls in _FOLDERS:
            return _FOLDERS[cls]
    return None


def strip_identity_perms(model: nn.Module) -> nn.Module:
    """Replace every GroupConv2d with identity permutations and no shuffle by its plain ``nn.Conv2d``."""
    if isinstance(model, GroupConv2d):
        return model.conv if model.in_index is None and model.out_index is None else model
    for name, child in model.named_children():
        new = strip_identity_perms(child)
        if new is not child:
            setattr(model, name, new)
    return model


def fold_permutations(model: nn.Module) -> nn.Module:
    """Fold permutations block by block (registered block classes), then strip identity GroupConv2d."""
    if not _FOLDERS:
        _default_folders()
    for m in model.modules():
        fold = _folder_for(m)
        if fold is not None:
            fold(m)
    return strip_identity_perms(model)
