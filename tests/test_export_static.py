"""mgnas.export.to_static / fuse_bn: exact static models from DGConv supernets, permutations folded."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import mgnas
from mgnas.export import fuse_bn, to_static
from mgnas.models import build_model, model_spec
from mgnas.ops.dgconv import DGConv2d
from mgnas.ops.group import GroupConv2d
from mgnas.spec import ArchSpec

G_MODELS = [n for n in mgnas.list_models() if n.startswith("g_")]
TOL = 1e-5


def _size(name: str) -> int:
    return 32 if "cifar" in name else 64


@torch.no_grad()
def _randomize(model: nn.Module, seed: int = 0, pattern: str = "random") -> nn.Module:
    """Random (unsorted) hard gates on every DGConv, random BN statistics and affine parameters."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, DGConv2d):
            k = len(m.factors)
            if pattern == "random":
                m.set_gates(torch.randint(0, 2, (k,), generator=g))
            else:  # ResNeXt 32x4d-style: G = 32 contiguous groups ([0]*5 + [1]*(k - 5), radix 2)
                m.set_gates([0] * min(5, k) + [1] * max(0, k - 5))
        elif isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.2, generator=g)
            m.running_var.uniform_(0.5, 2.0, generator=g)
            m.weight.uniform_(0.5, 1.5, generator=g)
            m.bias.normal_(0, 0.2, generator=g)
    return model.eval()


def _rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def _gathers(model: nn.Module) -> int:
    """Channel gathers the static model runs (non-identity GroupConv2d input/output indices)."""
    return sum((m.in_index is not None) + (m.out_index is not None) for m in model.modules()
               if isinstance(m, GroupConv2d))


def _grouped_spec(name: str, model: nn.Module) -> ArchSpec:
    """The supernet's spec with every dgconv conv a plain grouped conv of the learned group count."""
    spec = model_spec(name)
    paths = [p for p, c in spec.convs() if c.kind == "dgconv"]
    mods = [m for m in model.modules() if isinstance(m, DGConv2d)]
    assert len(paths) == len(mods)
    values = {}
    for p, m in zip(paths, mods):
        groups = m.num_groups()
        values[p] = dict(spec.get(p), kind="group" if groups > 1 else "dense", groups=groups)
    return spec.with_values(values)


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", G_MODELS)
def test_to_static_parity_and_no_search_machinery(name: str) -> None:
    model = _randomize(mgnas.create_model(name), seed=1)
    x = torch.randn(2, 3, _size(name), _size(name), generator=torch.Generator().manual_seed(2))
    static = to_static(model)
    with torch.no_grad():
        ref, out, unfolded = model(x), static(x), to_static(model, fold=False)(x)
    assert _rel_diff(out, ref) <= TOL
    assert _rel_diff(unfolded, ref) <= TOL
    assert not any(isinstance(m, DGConv2d) for m in static.modules())
    assert not any("gates" in n for n, _ in static.named_parameters())
    assert any(isinstance(m, DGConv2d) for m in model.modules()), "to_static must not modify its input"
    # parameters of the equivalent grouped network (the permutations have none)
    assert _params(static) == _params(build_model(_grouped_spec(name, model)))
    if "resnext" in name:  # bottlenecks: every permutation is folded away
        assert _gathers(static) == 0 < _gathers(to_static(model, fold=False))
        assert not any(isinstance(m, GroupConv2d) for m in static.modules())
    else:  # basic blocks: at most one gather between conv1 and conv2, never more than unfolded
        assert _gathers(static) <= _gathers(to_static(model, fold=False))
        for block in static.modules():
            if hasattr(block, "conv1") and hasattr(block, "conv2"):
                assert _between(block.conv1.conv, block.conv2.conv) <= 1


def _between(producer: nn.Module, consumer: nn.Module) -> int:
    """Gathers between two units: the producer's output gather plus the consumer's input gather."""
    out = isinstance(producer, GroupConv2d) and producer.out_index is not None
    inp = isinstance(consumer, GroupConv2d) and consumer.in_index is not None
    return int(out) + int(inp)


def test_contiguous_pattern_is_resnext50_32x4d() -> None:
    model = _randomize(mgnas.create_model("g_resnext50"), pattern="resnext")
    static = to_static(model)
    ref = build_model(model_spec("resnext50_32x4d"))
    assert _params(static) == _params(ref) == 25_028_904
    assert not any(isinstance(m, GroupConv2d) for m in static.modules())
    convs = [m.groups for m in static.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert convs == [32] * 16


def _small_resnext() -> ArchSpec:
    """g_resnext50 with one bottleneck per stage (fast ONNX export)."""
    data = model_spec("g_resnext50").to_dict()
    data["stages"] = [{"blocks": s["blocks"][:1]} for s in data["stages"]]
    return ArchSpec.from_dict(data)


def _onnx_gathers(model: nn.Module, path) -> int:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    torch.onnx.export(model, (torch.randn(1, 3, 64, 64),), str(path), dynamo=True)
    proto = onnx.load(str(path))
    nodes = list(proto.graph.node) + [n for f in proto.functions for n in f.node]
    return sum(n.op_type in ("Gather", "GatherElements", "GatherND") for n in nodes)


def test_onnx_graph_has_no_gathers_after_folding(tmp_path) -> None:
    model = _randomize(build_model(_small_resnext()), seed=3)
    assert _gathers(to_static(model, fold=False)) > 0, "the random gates must need permutations"
    assert _onnx_gathers(to_static(model, fold=False), tmp_path / "unfolded.onnx") > 0
    assert _onnx_gathers(to_static(model), tmp_path / "folded.onnx") == 0


@pytest.mark.parametrize("name", ["g_resnext50", "g_resnet20_cifar", "resnet20_cifar"])
def test_fuse_bn_parity(name: str) -> None:
    model = _randomize(mgnas.create_model(name), seed=4)
    x = torch.randn(2, 3, _size(name), _size(name))
    fused = to_static(model, fuse_bn=True)
    plain = fuse_bn(model) if "g_" not in name else None
    with torch.no_grad():
        ref = model(x)
        assert _rel_diff(fused(x), ref) <= TOL
        if plain is not None:
            assert _rel_diff(plain(x), ref) <= TOL
            assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())


def _dg_mobilenet() -> ArchSpec:
    """MobileNetV2 (width 0.5) with every 1x1 expand/project and every depthwise conv a DGConv."""
    spec = model_spec("mobilenetv2", width_mult=0.5, num_classes=10)
    values = {p: dict(spec.get(p), kind="dgconv", groups=1) for p, c in spec.convs()
              if p.startswith("stages") and p.endswith(("expand", "dw", "project"))}
    return spec.with_values(values)


def test_mobilenetv2_dgconv_folding() -> None:
    model = _randomize(build_model(_dg_mobilenet()), seed=5)
    x = torch.randn(2, 3, 64, 64)
    static, unfolded = to_static(model), to_static(model, fold=False)
    with torch.no_grad():
        ref = model(x)
        assert _rel_diff(static(x), ref) <= TOL
        assert _rel_diff(unfolded(x), ref) <= TOL
    assert not any(isinstance(m, DGConv2d) for m in static.modules())
    assert _gathers(static) < _gathers(unfolded)


def _dg_levels(name: str) -> ArchSpec:
    """An MGIC model with every conv of every level's CNN block a DGConv."""
    spec = model_spec(name, num_classes=10)
    values = {p: dict(spec.get(p), kind="dgconv", groups=1) for p, c in spec.convs()
              if ".levels[" in p and c.in_channels > 3}
    assert values
    return spec.with_values(values)


@pytest.mark.parametrize("name", ["mgic_resnet56", "mgic_mobilenetv3_large"])
def test_mgic_levels_dgconv_folding(name: str) -> None:
    model = _randomize(build_model(_dg_levels(name)), seed=6)
    size = 32 if name == "mgic_resnet56" else 64
    x = torch.randn(2, 3, size, size)
    static, unfolded = to_static(model), to_static(model, fold=False)
    with torch.no_grad():
        ref = model(x)
        assert _rel_diff(static(x), ref) <= TOL
        assert _rel_diff(unfolded(x), ref) <= TOL
    assert not any(isinstance(m, DGConv2d) for m in static.modules())
    assert _gathers(static) < _gathers(unfolded)
