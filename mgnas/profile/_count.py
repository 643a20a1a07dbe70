"""Parameters and MACs of a module, total and per layer.

MACs come from :class:`torch.utils.flop_counter.FlopCounterMode` (conv, linear, matmul kernels;
a multiply-add is 2 FLOPs, so MACs = FLOPs / 2). Grouped convs are counted as grouped because
the counter reads the real weight shape ``(out, in/groups, k, k)``. Element-wise work (BN, ReLU,
additions, pooling) is not counted, as in the papers' tables. Per-layer numbers are taken with
forward hooks on leaf modules: a module applied several times (MgNet's shared A and B) has its
parameters counted once and its MACs on every call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass
class LayerCount:
    name: str
    type: str
    params: int
    macs: int
    calls: int
    output_shape: list[int]


@dataclass
class CountResult:
    params: int
    macs: int
    input_size: tuple[int, ...]
    trainable_params: int = 0
    layers: list[LayerCount] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_input_size(text: str | Sequence[int]) -> tuple[int, ...]:
    """``"3x224x224"`` -> ``(3, 224, 224)``; a sequence is passed through. ValueError on nonsense."""
    if isinstance(text, str):
        try:
            dims = tuple(int(t) for t in text.lower().replace("×", "x").split("x"))
        except ValueError:
            raise ValueError(f"input size {text!r} is not of the form CxHxW, e.g. 3x224x224") from None
    else:
        dims = tuple(int(t) for t in text)
    if len(dims) != 3 or min(dims) < 1:
        raise ValueError(f"input size {text!r} must be three positive numbers CxHxW, e.g. 3x224x224")
    return dims


def _is_leaf(m: nn.Module) -> bool:
    return next(m.children(), None) is None or getattr(m, "_mgnas_profile_leaf", False)


def count(model: nn.Module, input_size: str | Sequence[int] = (3, 224, 224), per_layer: bool = True) -> CountResult:
    """Count parameters and MACs of ``model`` for one input of ``input_size`` (C, H, W), batch 1."""
    size = parse_input_size(input_size)
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
                    entry = layers[name] = LayerCount(name, type(mod).__name__, n_params, 0, 0, shape)
                entry.macs += macs
                entry.calls += 1

            return hook

        for name, mod in model.named_modules():
            if name and _is_leaf(mod):
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
