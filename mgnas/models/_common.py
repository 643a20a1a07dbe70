"""Small pieces shared by the model families: convs from specs, conv-BN-act, classifier head."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from ..ops.factory import create_conv2d
from ..spec import ArchSpec, BlockReader, ConvSpec, SpecError, layer_name

ACTIVATIONS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hswish": nn.Hardswish, "silu": nn.SiLU, "none": nn.Identity}


def conv_from_spec(conv: ConvSpec) -> nn.Module:
    """The module for one conv spec (dense / group / dgconv / two_level).

    A conv read from a spec carries its field path; the module remembers it as ``mgnas_layer`` (the
    layer name, ``stages.0.0.conv1``) so counts and reports name it as labels and results do.
    """
    module = create_conv2d(
        conv.kind, conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        conv.dilation, groups=conv.groups, bias=conv.bias, in_perm=conv.in_perm, out_perm=conv.out_perm,
        shuffle=conv.shuffle,
    )
    if getattr(conv, "path", ""):
        module.mgnas_layer = layer_name(conv.path)
    return module


def make_act(name: str, path: str = "act") -> nn.Module:
    if name not in ACTIVATIONS:
        raise SpecError(path, f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")
    cls = ACTIVATIONS[name]
    return cls(inplace=True) if cls in (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.SiLU) else cls()


class ConvBNAct(nn.Sequential):
    """conv (from a spec) -> BatchNorm -> activation."""

    def __init__(self, conv: ConvSpec, act: str = "relu", bn: bool = True) -> None:
        super().__init__()
        self.conv = conv_from_spec(conv)
        self.bn = nn.BatchNorm2d(conv.out_channels) if bn else nn.Identity()
        self.act = make_act(act)


def conv_spec(cin: int, cout: int, k: int = 1, stride: int = 1, kind: str = "dense", groups: int = 1,
              **extra: Any) -> dict[str, Any]:
    """JSON form of a conv spec (what named-model factories put into their specs)."""
    if kind == "dense" and groups != 1:
        kind = "group"
    return ConvSpec(cin, cout, k, stride, kind=kind, groups=groups, **extra).to_dict()


class ClassifierHead(nn.Module):
    """Global average pool -> (dropout) -> linear."""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.pool(x), 1)))


def init_weights(model: nn.Module, zero_init_residual_bn: tuple[str, ...] = ()) -> None:
    """Kaiming-normal convs (He et al. 2015), BN weight 1 / bias 0, small-normal linear.

    Modules that define ``reset_parameters`` with a special meaning (DGConv gates, MGIC transfer
    operators with the paper's positive row-sum-1 init) are left to initialise themselves.
    """
    for m in model.modules():
        if getattr(m, "_mgnas_custom_init", False):
            continue
        if type(m) is nn.Conv2d:
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
    for name, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d) and name.endswith(zero_init_residual_bn):
            nn.init.zeros_(m.weight)


def build_stages(spec: ArchSpec, blocks: Mapping[str, Callable[[BlockReader], nn.Module]]) -> nn.Sequential:
    """``nn.Sequential`` of stages of blocks, each block built by ``blocks[type](reader)`` (unknown keys,
    unknown types and bad values are SpecErrors naming ``stages[i].blocks[j]...``)."""
    stages = []
    for i, stage in enumerate(spec.stages):
        modules = []
        for j, block in enumerate(stage["blocks"]):
            path = f"stages[{i}].blocks[{j}]"
            make = block_builder(blocks, block, path)
            with BlockReader(block, path) as b:
                modules.append(make(b))
        stages.append(nn.Sequential(*modules))
    return nn.Sequential(*stages)


def block_builder(blocks: Mapping[str, Callable[..., Any]], block: Mapping[str, Any], path: str) -> Callable[..., Any]:
    """``blocks[block["type"]]``; an unknown type is a SpecError at ``path.type`` listing the valid ones."""
    make = blocks.get(block["type"])
    if make is None:
        raise SpecError(f"{path}.type", f"unknown block type {block['type']!r}; valid: {', '.join(blocks)}")
    return make
