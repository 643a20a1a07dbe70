"""Multigrid neural architectures: MG, R-MG, PMG, R-PMG (Ke, Maire & Yu, CVPR 2017, arXiv:1611.07661).

Family ``"multigrid"``. Order: blocks -> model -> builder -> named models. The layers are
:mod:`mgnas.ops.multigrid`; every conv of every grid of every layer is a ConvSpec in the spec, so a
search space can group each of them (``stages[1].blocks[0].conv1[2].groups``).

Spec layout (``[..]`` = one entry per grid, finest first; a layer's convs act on the *coarsest*
``len(convs)`` grids of the current pyramid, the finer grids pass through — the progressive PMG)::

    stem:   {"type": "mg_stem", "convs": [conv 3 -> w_i], "pool": bool}
            grid i = image avg-pooled by 2^i -> conv -> BN -> ReLU (-> 3x3/2 max-pool if pool, ImageNet)
    blocks: {"type": "mg_layer", "convs": [conv]}                  multigrid conv -> BN -> ReLU (MG, PMG)
            {"type": "mg_residual", "conv1": [conv], "conv2": [conv]}  Fig. 4 unit, zero-padded identity
            {"type": "mg_pool", "merge": bool}                     stage transition (max-pool; merge coarsest two)
    head:   {"type": "classifier", "in_features": int}             global avg-pool + fc on the finest grid

Grid i's conv reads ``concat[maxpool(grid i-1), grid i, upsample(grid i+1)]``, so its ``in_channels``
is the sum of the neighbouring widths; convs have a bias (the authors' Torch code) and must keep the
spatial size (stride 1, "same" padding).

Layouts (the authors' code, github.com/buttomnutstoast/Multigrid-Neural-Architectures, which gives
the paper's Table 1-2 counts exactly):

- CIFAR-100 (32x32): 5 stages of grids (64,32,16) (128,64,32) (256,128,64) (512,256,128) (512,384) on
  32/16/8 ... px; kernels 1x1 on the 1x1 grids; after stages 4 and 5 the two coarsest grids merge
  (the classifier reads one 896-channel 1x1 grid). With n layers (MG) / units (R-MG) per stage:
  MG-(5n+1): stem + (n-1) layers in stage 1 + n in stages 2-5; R-MG-(10n+2): stem + n units per stage.
  PMG-(7n+2) / R-PMG-(14n+2): stage 1 = stem, then n layers (units) on the coarsest grid, n on the two
  coarsest, n on all three; stages 2-5 as MG. (The paper pictures PMG as growing from the coarse grid;
  in the authors' code, as here, the stem already computes all three grids and the finer ones wait.)
- ImageNet R-MG-34 (224x224): per-grid 7x7/2 conv + 3x3/2 max-pool stem with grids (64,32,16) on
  56/28/14 px; stages of ResNet-34's 3-4-6-3 units with grids (64,32,16) (128,64,32) (256,128) (512);
  merges after stages 2 and 3; the classifier reads the 7x7 512-channel grid.

Every named model takes ``conv`` / ``groups`` (Lee et al.'s switch, as in the WRN family:
``standard | group | two_level | shuffle``) applied to every multigrid conv; the stem stays dense.

Measured (``mgnas.profile.count``: conv + linear multiply-adds, biases/BN/pooling not counted) vs the
paper's Table 1-2 in brackets. The tables' "FLOPs" column counts multiply-adds: PMG, R-PMG and R-MG-34
match it to the last printed digit as MACs (FLOPs = 2 MACs would be twice the paper's numbers)::

    model (depth)   params M                 MACs M (CIFAR 32x32, ImageNet 224x224)
    R-MG-34         32.90 [32.9]             5760 [5760]
    R-MG-12/22      20.56/44.79 [same]       459.8/1015.4 [457.2/1007.7]    +0.6/+0.8%
    R-MG-32/42      69.02/93.26 [same]       1570.9/2126.4 [1558.2/2108.7]  +0.8/+0.8%
    MG-6/11         8.34/20.46 [same]        116.75/394.5 [116.63/391.9]    +0.1/+0.7%
    MG-16/21        32.58/44.69 [same]       672.3/950.0 [667.1/942.4]      +0.8/+0.8%
    PMG-9/16/23     8.46/20.60/32.74 [same]  186.21/468.09/749.98 [same]
    R-PMG-16/30/44  20.60/44.88/69.16 [same] 468.09/1031.87/1595.64 [same]

- The paper's "PMG-30" row (32.74M, 749.98 MFLOPs) is n = 3 layers per stage, which is depth
  7*3+2 = 23 by the paper's own counting (PMG-9/16 are n = 1/2, R-PMG-16/30/44 n = 1/2/3); we keep
  depth = 7n+2, so that row is ``pmg(depth=23)`` and ``pmg(depth=30)`` (n = 4) has 44.88M / 1031.87M.
- MG / R-MG MACs are 0.1-0.85% above the paper's column (+2.51M per layer added to every stage), while
  the parameters match exactly and PMG, whose stages 2-5 are the same layers, matches exactly. Even
  MG-6 (stem + stages 2-5, identical to PMG-9 minus its stage-1 layers) is 0.12M above, so no
  architecture with these parameter counts explains the gap; we take it to be the authors' FLOP tool.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..ops.factory import same_padding
from ..ops.multigrid import (
    ConvFactory,
    MultigridLayer,
    MultigridPool,
    MultigridResidualUnit,
    concat_widths,
    pyramid_pool,
)
from ..spec import ArchSpec, BlockReader, ConvSpec, SpecError
from ._common import ClassifierHead, ConvBNAct, block_builder, conv_from_spec, conv_spec, init_weights
from ._grouping import check_conv_choice, gc_conv_spec
from ._registry import register_family, register_model

__all__ = [
    "MultigridStem", "MultigridNet", "r_mg34", "r_mg_cifar", "mg_cifar", "pmg", "r_pmg",
]


# --------------------------------------------------------------------------- blocks
def _read_convs(b: BlockReader, key: str) -> list[ConvSpec]:
    value = b.raw(key)
    path = f"{b.path}.{key}"
    if not isinstance(value, list) or not value:
        raise SpecError(path, f"must be a non-empty list of convs (one per grid), got {value!r}")
    convs = []
    for i, v in enumerate(value):
        if not isinstance(v, dict):
            raise SpecError(f"{path}[{i}]", f"must be a conv object, got {v!r}")
        convs.append(ConvSpec.from_dict(v, f"{path}[{i}]"))
    return convs


def _check_mg_convs(path: str, convs: list[ConvSpec], widths: list[int]) -> list[int]:
    """Check one multigrid conv against the current grid widths; return the output widths."""
    if len(convs) > len(widths):
        raise SpecError(path, f"has {len(convs)} convs but the pyramid has only {len(widths)} grids")
    need = concat_widths(widths[len(widths) - len(convs):])
    for i, (c, cin) in enumerate(zip(convs, need)):
        p = f"{path}[{i}]"
        if c.in_channels != cin:
            raise SpecError(f"{p}.in_channels", f"is {c.in_channels} but the grid's concatenated input has {cin} "
                                                "(finer + own + coarser grid widths)")
        if c.stride != 1:
            raise SpecError(f"{p}.stride", f"must be 1 (grids keep their resolution), got {c.stride}")
        if c.kernel_size % 2 == 0:
            raise SpecError(f"{p}.kernel_size", f"must be odd to keep the grid size, got {c.kernel_size}")
        if c.padding is not None and c.padding != same_padding(c.kernel_size, c.dilation):
            raise SpecError(f"{p}.padding", f"must be null or {same_padding(c.kernel_size, c.dilation)} "
                                            "to keep the grid size")
    return [c.out_channels for c in convs]


def _factory(convs: list[ConvSpec]) -> ConvFactory:
    """The ops' conv hook: grid i gets the module of its own ConvSpec (dense, group, dgconv, two_level)."""
    return lambda grid, cin, cout, k: conv_from_spec(convs[grid])


def _layer(b: BlockReader, widths: list[int]) -> tuple[nn.Module, list[int]]:
    convs = _read_convs(b, "convs")
    out = _check_mg_convs(f"{b.path}.convs", convs, widths)
    first = len(widths) - len(convs)
    layer = MultigridLayer(widths[first:], out, [c.kernel_size for c in convs], conv_factory=_factory(convs),
                           first_grid=first)
    return layer, widths[:first] + out


def _residual(b: BlockReader, widths: list[int]) -> tuple[nn.Module, list[int]]:
    c1, c2 = _read_convs(b, "conv1"), _read_convs(b, "conv2")
    out = _check_mg_convs(f"{b.path}.conv1", c1, widths)
    if len(c2) != len(c1):
        raise SpecError(f"{b.path}.conv2", f"has {len(c2)} convs but conv1 has {len(c1)}; one per grid on both")
    out2 = _check_mg_convs(f"{b.path}.conv2", c2, widths[: len(widths) - len(c1)] + out)
    first = len(widths) - len(c1)
    for i, (a, o, o2) in enumerate(zip(widths[first:], out, out2)):
        if o2 != o:
            raise SpecError(f"{b.path}.conv2[{i}].out_channels", f"is {o2} but conv1 gives {o}; they must match")
        if o < a:
            raise SpecError(f"{b.path}.conv1[{i}].out_channels",
                            f"is {o} < the grid's {a} input channels; a zero-padded identity cannot narrow")
    unit = MultigridResidualUnit(widths[first:], out, [c.kernel_size for c in c1], conv_factory=_factory(c1),
                                 conv2_factory=_factory(c2), first_grid=first)
    return unit, widths[:first] + out


def _pool(b: BlockReader, widths: list[int]) -> tuple[nn.Module, list[int]]:
    merge = b.bool("merge", default=False)
    if merge and len(widths) < 2:
        raise SpecError(f"{b.path}.merge", "needs at least two grids")
    return MultigridPool(merge), (widths[:-2] + [widths[-2] + widths[-1]] if merge else widths)


_BLOCKS = {"mg_layer": _layer, "mg_residual": _residual, "mg_pool": _pool}


# --------------------------------------------------------------------------- model
class MultigridStem(nn.Module):
    """Input pyramid (avg-pool by 2^i) -> per-grid conv-BN-ReLU (-> 3x3/2 max-pool)."""

    def __init__(self, b: BlockReader) -> None:
        super().__init__()
        convs = _read_convs(b, "convs")
        for i, c in enumerate(convs):
            if c.in_channels != convs[0].in_channels:
                raise SpecError(f"{b.path}.convs[{i}].in_channels", "every grid reads the same image channels")
        self.grids = nn.ModuleList([ConvBNAct(c) for c in convs])
        self.pool = nn.MaxPool2d(3, 2, 1) if b.bool("pool", default=False) else nn.Identity()
        self.widths = [c.out_channels for c in convs]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        levels = pyramid_pool(x, len(self.grids))
        return [self.pool(conv(level)) for conv, level in zip(self.grids, levels)]


class MultigridNet(nn.Module):
    """stem (pyramid) -> stages of multigrid layers / residual units / transitions -> classifier on grid 0."""

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        with BlockReader(spec.stem or {}, "stem") as b:
            if b.type != "mg_stem":
                raise SpecError("stem.type", f"must be 'mg_stem', got {b.type!r}")
            self.stem = MultigridStem(b)
        if self.stem.grids[0][0].in_channels != spec.in_channels:
            raise SpecError("stem.convs[0].in_channels", f"must equal the spec's in_channels {spec.in_channels}")
        widths = list(self.stem.widths)
        stages = []
        for i, stage in enumerate(spec.stages):
            blocks = []
            for j, block in enumerate(stage["blocks"]):
                path = f"stages[{i}].blocks[{j}]"
                make = block_builder(_BLOCKS, block, path)
                with BlockReader(block, path) as b:
                    module, widths = make(b, widths)
                blocks.append(module)
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        with BlockReader(spec.head or {}, "head") as h:
            features = h.int("in_features")
            if features != widths[0]:
                raise SpecError("head.in_features", f"is {features} but the finest grid has {widths[0]} channels")
            self.head = ClassifierHead(features, spec.num_classes, h.float("dropout", default=0.0))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x))[0])


# --------------------------------------------------------------------------- builder
@register_family("multigrid")
def _build(spec: ArchSpec) -> nn.Module:
    return MultigridNet(spec)


Grids = tuple[int, ...]

# (grid widths, kernel sizes, merge the two coarsest grids at the transition after the stage)
_CIFAR: tuple[tuple[Grids, Grids, bool], ...] = (
    ((64, 32, 16), (3, 3, 3), False),
    ((128, 64, 32), (3, 3, 3), False),
    ((256, 128, 64), (3, 3, 3), False),
    ((512, 256, 128), (3, 3, 1), True),
    ((512, 384), (3, 1), True),
)
_IMAGENET: tuple[tuple[Grids, Grids, bool], ...] = (
    ((64, 32, 16), (3, 3, 3), False),
    ((128, 64, 32), (3, 3, 3), True),
    ((256, 128), (3, 3), True),
    ((512,), (3,), False),
)


class _Decoder:
    """Turns (layout, layers per stage, residual, progressive) into blocks, tracking grid widths."""

    def __init__(self, widths: Grids, conv: str, groups: int) -> None:
        self.widths, self.conv, self.groups = list(widths), conv, groups

    def _convs(self, outs: Grids, kernels: Grids) -> list[dict[str, Any]]:
        first = len(self.widths) - len(outs)
        ins = concat_widths(self.widths[first:])
        convs = [{**gc_conv_spec(ci, co, k, 1, self.conv, self.groups), "bias": True}
                 for ci, co, k in zip(ins, outs, kernels)]
        self.widths = self.widths[:first] + list(outs)
        return convs

    def layer(self, outs: Grids, kernels: Grids, residual: bool) -> dict[str, Any]:
        if not residual:
            return {"type": "mg_layer", "convs": self._convs(outs, kernels)}
        c1 = self._convs(outs, kernels)
        return {"type": "mg_residual", "conv1": c1, "conv2": self._convs(outs, kernels)}

    def pool(self, merge: bool) -> dict[str, Any]:
        if merge:
            self.widths = self.widths[:-2] + [self.widths[-2] + self.widths[-1]]
        return {"type": "mg_pool", "merge": merge}


def _decode(
    layout: tuple[tuple[Grids, Grids, bool], ...], units: list[int], *, residual: bool, progressive: bool,
    imagenet: bool, num_classes: int, conv: str, groups: int,
) -> ArchSpec:
    first = layout[0][0]
    k, s = (7, 2) if imagenet else (3, 1)
    stem = {"type": "mg_stem", "convs": [conv_spec(3, w, k, s, bias=True) for w in first], "pool": imagenet}
    dec = _Decoder(first, conv, groups)
    stages: list[dict[str, Any]] = []
    for i, ((outs, kernels, merge), n) in enumerate(zip(layout, units)):
        blocks = []
        if i == 0 and progressive:  # the coarsest grid alone, then the two coarsest, ..., then all grids
            for g in range(1, len(outs)):
                blocks += [dec.layer(outs[-g:], kernels[-g:], residual) for _ in range(n)]
        blocks += [dec.layer(outs, kernels, residual) for _ in range(n)]
        if i < len(layout) - 1 or not imagenet:  # ImageNet: the classifier pools the last single grid
            blocks.append(dec.pool(merge))
        stages.append({"blocks": blocks})
    return ArchSpec(family="multigrid", num_classes=num_classes, input_size=(3, 224, 224) if imagenet else (3, 32, 32),
                    stem=stem, stages=stages, head={"type": "classifier", "in_features": dec.widths[0]})


def _mg_spec(model: str, layout: tuple[tuple[Grids, Grids, bool], ...], units: list[int], *, conv: str, groups: int,
             **kw: Any) -> ArchSpec:
    """Decode a layout + layers (units) per stage into a full spec; ``conv``/``groups`` apply to every
    multigrid conv (not the stem), with Lee et al.'s switch (``standard|group|two_level|shuffle``)."""
    spec = _decode(layout, units, conv="standard", groups=1, **kw)
    if conv == "standard" and groups == 1:
        return spec
    widths = [w for p, c in spec.convs() if not p.startswith("stem") for w in (c.in_channels, c.out_channels)]
    check_conv_choice(model, conv, groups, widths)
    return _decode(layout, units, conv=conv, groups=groups, **kw)


def _per_stage(model: str, depth: int, per_unit: int, offset: int) -> int:
    """Layers (units) per stage n from ``depth = per_unit * n + offset``; ValueError listing valid depths."""
    ok = isinstance(depth, int) and not isinstance(depth, bool) and depth > offset
    if not ok or (depth - offset) % per_unit:
        valid = ", ".join(str(per_unit * m + offset) for m in range(1, 5))
        raise ValueError(f"{model}: depth={depth!r} is not valid; valid depths are {per_unit}n+{offset}: {valid}, ...")
    return (depth - offset) // per_unit


# --------------------------------------------------------------------------- named models
@register_model
def r_mg34(*, num_classes: int = 1000, conv: str = "standard", groups: int = 1) -> ArchSpec:
    """R-MG-34 (Ke et al. Table 2, ImageNet): ResNet-34 units over grids (64,32,16)..(512); 32.90M, 5.76 GMACs."""
    return _mg_spec("r_mg34", _IMAGENET, [3, 4, 6, 3], residual=True, progressive=False, imagenet=True,
                    num_classes=num_classes, conv=conv, groups=groups)


@register_model
def r_mg_cifar(*, depth: int = 12, num_classes: int = 100, conv: str = "standard", groups: int = 1) -> ArchSpec:
    """R-MG-{12,22,32,42} (Ke et al. Table 1, CIFAR-100): 20.56/44.79/69.02/93.26M. depth = 10n+2."""
    n = _per_stage("r_mg_cifar", depth, 10, 2)
    return _mg_spec("r_mg_cifar", _CIFAR, [n] * 5, residual=True, progressive=False, imagenet=False,
                    num_classes=num_classes, conv=conv, groups=groups)


@register_model
def mg_cifar(*, depth: int = 11, num_classes: int = 100, conv: str = "standard", groups: int = 1) -> ArchSpec:
    """MG-{6,11,16,21} (Ke et al. Table 1, CIFAR-100): 8.34/20.46/32.58/44.69M. depth = 5n+1."""
    n = _per_stage("mg_cifar", depth, 5, 1)  # the stem is stage 1's first layer
    return _mg_spec("mg_cifar", _CIFAR, [n - 1] + [n] * 4, residual=False, progressive=False, imagenet=False,
                    num_classes=num_classes, conv=conv, groups=groups)


@register_model
def pmg(*, depth: int = 16, num_classes: int = 100, conv: str = "standard", groups: int = 1) -> ArchSpec:
    """PMG-{9,16,23,30} (Ke et al. Table 1, CIFAR-100): 8.46/20.60/32.74/44.88M. depth = 7n+2.

    The paper's "PMG-30" row (32.74M) is depth 23 here; see the module docstring.
    """
    n = _per_stage("pmg", depth, 7, 2)
    return _mg_spec("pmg", _CIFAR, [n] * 5, residual=False, progressive=True, imagenet=False,
                    num_classes=num_classes, conv=conv, groups=groups)


@register_model
def r_pmg(*, depth: int = 16, num_classes: int = 100, conv: str = "standard", groups: int = 1) -> ArchSpec:
    """R-PMG-{16,30,44} (Ke et al. Table 1, CIFAR-100): 20.60/44.88/69.16M. depth = 14n+2."""
    n = _per_stage("r_pmg", depth, 14, 2)
    return _mg_spec("r_pmg", _CIFAR, [n] * 5, residual=True, progressive=True, imagenet=False,
                    num_classes=num_classes, conv=conv, groups=groups)
