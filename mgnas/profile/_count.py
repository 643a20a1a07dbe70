"""Parameters and MACs of a module, total and per layer.

MACs come from :class:`torch.utils.flop_counter.FlopCounterMode` (conv, linear, matmul kernels;
a multiply-add is 2 FLOPs, so MACs = FLOPs / 2). Grouped convs are counted as grouped because
the counter reads the real weight shape ``(out, in/groups, k, k)``. Element-wise work (BN, ReLU,
additions, pooling) is not counted, as in the papers' tables. Per-layer numbers are taken with
forward hooks on leaf modules: a module applied several times (MgNet's shared A and B) has its
parameters counted once and its MACs on every call.

A conv built from a spec is one row, named by its layer name (``stages.0.0.conv1``, the spelling of
search-space labels and search results; see :func:`mgnas.spec.layer_name`), with its ``kind`` as a
reader wants it (``group g=32``, ``dgconv g=8 (factors 2×2×2×2×2×2)``) and ``module``, its path in
``named_modules()``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass
class LayerCount:
    name: str                 # the layer name of a spec conv (``stages.0.0.conv1``), else the module path
    type: str                 # the module class
    params: int
    macs: int
    calls: int
    output_shape: list[int]
    kind: str = ""            # convs: ``dense`` / ``group g=32`` / ``dgconv g=8 (factors …)`` / ``two_level g=4``
    groups: int | None = None  # convs: the group count (a DGConv's current one)
    module: str = ""          # the path in ``named_modules()`` (the state_dict prefix)


@dataclass
class CountResult:
    params: int
    macs: int
    input_size: tuple[int, ...]
    trainable_params: int = 0
    layers: list[LayerCount] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Bounds on an input size: channels, each spatial side, and the activation memory estimate
#: (LIVE_ACTIVATIONS tensors of the stem's output, float32, batch 1) relative to the memory available now.
MAX_INPUT_CHANNELS = 4096
MAX_INPUT_SIDE = 8192
LIVE_ACTIVATIONS = 4
ACTIVATION_MEMORY_FRACTION = 0.5


def parse_input_size(text: str | Sequence[int]) -> tuple[int, ...]:
    """``"3x224x224"`` -> ``(3, 224, 224)``; a sequence is passed through. ValueError on nonsense.

    Channels are at most :data:`MAX_INPUT_CHANNELS`, each side at most :data:`MAX_INPUT_SIDE`."""
    if isinstance(text, str):
        try:
            dims = tuple(int(t) for t in text.lower().replace("×", "x").split("x")) if len(text) <= 64 else ()
        except ValueError:
            raise ValueError(f"input size {text!r} is not of the form CxHxW, e.g. 3x224x224") from None
        if not dims:
            raise ValueError(f"input size {text[:64]!r}... is not of the form CxHxW, e.g. 3x224x224")
    else:
        try:
            dims = tuple(int(t) for t in text)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"input size {text!r} must be three positive integers CxHxW") from None
    if len(dims) != 3 or min(dims) < 1:
        raise ValueError(f"input size {text!r} must be three positive numbers CxHxW, e.g. 3x224x224")
    if dims[0] > MAX_INPUT_CHANNELS or max(dims[1:]) > MAX_INPUT_SIDE:
        raise ValueError(f"input size {text!r} is too large (at most {MAX_INPUT_CHANNELS} channels and "
                         f"{MAX_INPUT_SIDE} pixels a side)")
    return dims


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_input_size(spec: Any, input_size: str | Sequence[int]) -> tuple[int, ...]:
    """``input_size`` parsed and checked against ``spec`` (an ArchSpec): its channels must be the spec's
    ``in_channels``, and its activation estimate must fit in memory. ValueError naming both otherwise."""
    size = parse_input_size(input_size)
    shown = "x".join(map(str, size))
    if size[0] != spec.in_channels:
        raise ValueError(f"input {shown} has {size[0]} channel(s) but {spec.name or spec.family} takes "
                         f"{spec.in_channels} (e.g. {spec.in_channels}x{size[1]}x{size[2]})")
    stem = next((conv for _, conv in spec.convs()), None)
    width = max(stem.out_channels if stem is not None else 1, size[0])
    need, free = LIVE_ACTIVATIONS * width * size[1] * size[2] * 4, _available_memory()
    if free is not None and need > ACTIVATION_MEMORY_FRACTION * free:
        raise ValueError(f"input {shown} is too large for this machine: the full-resolution activations need "
                         f"about {need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB are available")
    return size


def _is_leaf(m: nn.Module) -> bool:
    return next(m.children(), None) is None or getattr(m, "_mgnas_profile_leaf", False) or _is_spec_conv(m)


def _is_spec_conv(m: nn.Module) -> bool:
    return isinstance(getattr(m, "mgnas_layer", None), str)


def conv_kind(m: nn.Module) -> tuple[str, int | None]:
    """``(kind text, groups)`` of a conv module, ``("", None)`` for anything else."""
    if hasattr(m, "gates") and hasattr(m, "num_groups") and hasattr(m, "factors"):  # DGConv2d
        g = int(m.num_groups())
        factors = "×".join(map(str, m.factors)) or "none"
        return f"dgconv g={g} (factors {factors})", g
    name = type(m).__name__
    if name in ("ChannelRestriction", "ChannelProlongation"):  # MGIC's R_j / P_j (grouped 1x1)
        return f"mgic {name.removeprefix('Channel').lower()} g={m.groups}", int(m.groups)
    if name == "TwoLevelGroupConv2d":
        return f"two_level g={m.groups}", int(m.groups)
    if name == "GroupConv2d":
        extra = (" +perm" if m.in_index is not None or m.out_index is not None else "") + (
            f" shuffle {m.shuffle}" if m.shuffle else "")
        return f"group g={m.groups}{extra}", int(m.groups)
    if isinstance(m, nn.Conv2d):
        g = int(m.groups)
        if g == 1:
            return "dense", 1
        depthwise = g == m.in_channels == m.out_channels
        return (f"depthwise g={g}" if depthwise else f"group g={g}"), g
    return "", None


def count(model: nn.Module, input_size: str | Sequence[int] = (3, 224, 224), per_layer: bool = True) -> CountResult:
    """Count parameters and MACs of ``model`` for one input of ``input_size`` (C, H, W), batch 1."""
    spec = getattr(model, "spec", None)
    size = check_input_size(spec, input_size) if spec is not None else parse_input_size(input_size)
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    layers: dict[str, LayerCount] = {}
    counter = FlopCounterMode(display=False)
    handles = []
    if per_layer:
        seen: set[int] = set()

        def pre_hook(mod: nn.Module, _: Any) -> None:
            mod._mgnas_flops_before = counter.get_total_flops()  # type: ignore[attr-defined]

        def post_hook(name: str) -> Any:
            def hook(mod: nn.Module, _: Any, out: Any) -> None:
                macs = (counter.get_total_flops() - mod._mgnas_flops_before) // 2  # type: ignore[attr-defined]
                entry = layers.get(name)
                if entry is None:
                    own = [p for p in mod.parameters() if id(p) not in seen]
                    seen.update(id(p) for p in own)
                    shape = list(out.shape) if isinstance(out, torch.Tensor) else []
                    n_params = sum(p.numel() for p in own)
                    kind, groups = conv_kind(mod)
                    row = mod.mgnas_layer if _is_spec_conv(mod) else name
                    entry = layers[name] = LayerCount(row, type(mod).__name__, n_params, 0, 0, shape,
                                                      kind, groups, name)
                entry.macs += macs
                entry.calls += 1

            return hook

        inside = ""  # rows are leaves and spec convs; nothing below a spec conv is a row of its own
        for name, mod in model.named_modules():
            if inside and name.startswith(inside):
                continue
            if name and _is_leaf(mod):
                inside = name + "." if _is_spec_conv(mod) else ""
                handles.append(mod.register_forward_pre_hook(pre_hook))
                handles.append(mod.register_forward_hook(post_hook(name)))
    was_training = model.training
    try:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
        dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
        x = torch.zeros(1, *size, device=device, dtype=dtype)
        model.eval()
        with torch.no_grad(), counter:
            model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return CountResult(params, counter.get_total_flops() // 2, size, trainable, list(layers.values()))
