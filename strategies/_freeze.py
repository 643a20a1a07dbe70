"""Freeze a trained DGConv supernet into the discovered architecture (DESIGN.md "one builder for every mode").

Every ``dgconv`` conv of the supernet spec becomes a ``group`` conv (``dense`` when G = 1) with
``groups = num_groups()`` and the channel permutations of :meth:`DGConv2d.to_static` (identity
permutations omitted). The static weights are the supernet's with each DGConv replaced by its
``to_static()`` module, so ``build_model(frozen_spec)`` loaded with them computes exactly what the
supernet computes in eval mode. Nothing from the search survives in the frozen model.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from mgnas.spec import ArchSpec, ConvSpec

from ._budget import dgconv_layers


def supernet_paths(spec: ArchSpec, model: nn.Module) -> list[tuple[str, str, nn.Module]]:
    """``(spec path, module name, DGConv2d)`` for every dgconv conv, matched in network order.

    A module built from a spec conv knows its layer name (``mgnas_layer``) and is matched by it (MGIC builds
    its modules level by level, not in spec order); otherwise the k-th ``dgconv`` conv of the spec is the k-th
    DGConv2d module. Shapes are checked so a mismatch is caught, not silently mis-frozen.
    """
    from mgnas.spec import layer_name

    paths = [(p, c) for p, c in spec.convs() if c.kind == "dgconv"]
    mods = dgconv_layers(model)
    if len(paths) != len(mods):
        raise ValueError(f"the spec has {len(paths)} dgconv convs but the model {len(mods)} DGConv2d modules")
    named = {getattr(m, "mgnas_layer", None): (n, m) for n, m in mods}
    if all(layer_name(p) in named for p, _ in paths):  # modules that know their layer (MGIC builds them by level)
        mods = [named[layer_name(p)] for p, _ in paths]
    out = []
    for (path, conv), (name, mod) in zip(paths, mods):
        shape = (mod.in_channels, mod.out_channels, mod.kernel_size, mod.stride)
        if shape != (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride):
            raise ValueError(f"{layer_name(path)}: spec conv {conv} does not match module {name} ({mod})")
        out.append((path, name, mod))
    return out


def _perm(buffer: torch.Tensor | None, n: int) -> tuple[int, ...] | None:
    if buffer is None:
        return None
    values = tuple(int(v) for v in buffer.tolist())
    return None if values == tuple(range(n)) else values


def frozen_conv(conv: ConvSpec, module: nn.Module) -> ConvSpec:
    """The static conv spec of one DGConv2d with its current hard gates."""
    static = module.to_static()
    groups = module.num_groups()
    in_perm = _perm(getattr(static, "in_perm", None), conv.in_channels)
    out_perm = _perm(getattr(static, "out_perm", None), conv.out_channels)
    kind = "dense" if groups == 1 and in_perm is None and out_perm is None else "group"
    return conv.replace(kind=kind, groups=groups, in_perm=in_perm, out_perm=out_perm, shuffle=0)


def _set_module(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def freeze(spec: ArchSpec, model: nn.Module, *, metrics: dict[str, Any] | None = None,
           provenance: dict[str, Any] | None = None) -> tuple[ArchSpec, dict[str, torch.Tensor]]:
    """``(frozen spec, static state dict)`` of a supernet ``model`` built from ``spec``.

    The state dict loads strictly into ``build_model(frozen_spec)``.
    """
    matched = supernet_paths(spec, model)
    values = {path: frozen_conv(ConvSpec.from_dict(spec.get(path), path), mod).to_dict() for path, _, mod in matched}
    frozen = spec.with_values(values)
    data = frozen.to_dict()
    data["provenance"] = {k: v for k, v in data["provenance"].items() if k != "supernet"}
    frozen = ArchSpec.from_dict(data)
    if metrics:
        frozen = frozen.with_metrics(**metrics)
    if provenance:
        frozen = frozen.with_provenance(**provenance)
    static = copy.deepcopy(model)
    for _, name, _ in supernet_paths(spec, static):
        _set_module(static, name, static.get_submodule(name).to_static())
    return frozen, {k: v.detach().clone() for k, v in static.state_dict().items()}


def gate_values(layers: Sequence[nn.Module]) -> list[list[float]]:
    """Raw gate values g̃ of every DGConv, layer by layer (for history and reports)."""
    return [[float(v) for v in m.gates.detach().cpu().tolist()] for m in layers]


def groups_per_layer(layers: Sequence[nn.Module]) -> list[int]:
    return [int(m.num_groups()) for m in layers]


def load_weights_for_spec(spec: ArchSpec, path: Any, *, where: str | None = None) -> dict[str, torch.Tensor]:
    """Static weights of ``spec`` from ``path``: a state dict / Trainer checkpoint of ``spec`` itself (returned
    as is), or a search's supernet ``checkpoint.pt`` (DGConv gates in it).

    A supernet checkpoint is rebuilt from the spec's provenance (``space`` and ``supernet_hash``, written by
    ``mgnas search``), loaded, and frozen with its gates, which applies the groups and permutations to the
    weights; its gates must give the spec's groups. Any mismatch is a ``ValueError`` naming the cause.
    """
    from mgnas.search_spaces import get_space

    from mgnas.export import load_state_dict, match_state_dict
    from mgnas.models import adapt_spec, build_model

    where = where or str(path)
    state = load_state_dict(path)
    if not any(k.endswith(".gates") for k in state) or any(c.kind == "dgconv" for _, c in spec.convs()):
        return state
    space, want = spec.provenance.get("space"), spec.provenance.get("supernet_hash")
    if not space or not want:
        raise ValueError(f"{where} holds a supernet, but the spec records no search space / supernet hash in its "
                         "provenance; use the search's weights.pt")
    c, h, w = spec.input_size
    supernet = adapt_spec(get_space(space).supernet_spec(), in_channels=c, num_classes=spec.num_classes,
                          input_size=(c, h, w))
    if supernet.content_hash() != want:
        raise ValueError(f"{where}: the supernet of space {space!r} rebuilt for this data "
                         f"({supernet.content_hash()}) is not the one searched ({want})")
    model = build_model(supernet)
    match_state_dict(model, state, where=where)
    model.load_state_dict(state)
    model.eval()
    frozen, static = freeze(supernet, model)
    ref = {p: conv.to_dict() for p, conv in spec.convs()}
    for p, conv in frozen.convs():
        if ref.get(p) != conv.to_dict():
            raise ValueError(f"{where}: its gates give {p} = {conv.groups} groups, the spec has "
                             f"{ref.get(p, {}).get('groups')} (the search projected the gates after its last "
                             "checkpoint); use the search's weights.pt")
    return static
