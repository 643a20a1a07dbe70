"""Faithful initialisation (issue 12 §5): convs and DGConvs start as torchvision's (Kaiming normal, fan_out),
and ``zero_init_residual`` zeroes the last BN gamma of every residual block, off by default."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import mgnas
from mgnas.spec import SpecError


def _conv_weights(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Every 4-d weight (plain, grouped and DGConv weights alike), by module name."""
    return [(name, m.weight.detach()) for name, m in model.named_modules()
            if isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.dim() == 4]


@pytest.mark.parametrize("name", ["resnet50", "g_resnext50"])
def test_conv_weight_stds_match_kaiming_fan_out(name):
    torch.manual_seed(0)
    model = mgnas.create_model(name)
    weights = _conv_weights(model)
    assert len(weights) >= 53  # 49 convs + 4 projections in ResNet-50's layout
    if name == "g_resnext50":
        assert sum(type(m).__name__ == "DGConv2d" for m in model.modules()) == 16
    bad = []
    for path, w in weights:
        fan_out = w.shape[0] * w.shape[2] * w.shape[3]  # torch's fan_out: out_channels x kernel (groups ignored)
        want = math.sqrt(2.0 / fan_out)
        got = w.float().std().item()
        if abs(got / want - 1) > 0.15:
            bad.append(f"{path}: std {got:.4f}, Kaiming fan_out {want:.4f}")
    assert not bad, "; ".join(bad[:5])


def _residual_bns(model: nn.Module) -> list[nn.BatchNorm2d]:
    from mgnas.models.resnet import BasicBlock, Bottleneck

    return [m.last_bn() for m in model.modules() if isinstance(m, (BasicBlock, Bottleneck))]


@pytest.mark.parametrize("name, blocks", [("resnet20_cifar", 9), ("resnet50", 16), ("g_resnext50", 16)])
def test_zero_init_residual_resnet(name, blocks):
    off = mgnas.create_model(name)
    assert all(bool((bn.weight == 1).all()) for bn in _residual_bns(off))
    spec = mgnas.model_spec(name, zero_init_residual=True)
    assert spec.config == {"zero_init_residual": True}
    assert mgnas.model_spec(name).config == {}  # off: the spec (and its hash) as before
    on = mgnas.build_model(spec)
    bns = _residual_bns(on)
    assert len(bns) == blocks and all(bool((bn.weight == 0).all()) for bn in bns)
    # only those: every other BN keeps gamma = 1
    others = [m for m in on.modules() if isinstance(m, nn.BatchNorm2d) and all(m is not b for b in bns)]
    assert others and all(bool((m.weight == 1).all()) for m in others)
    # each block starts as its shortcut: a stride-1 identity block passes its input through (after the ReLU)
    on.eval()
    block = on.stages[0][1]
    x = torch.relu(torch.randn(2, block.last_bn().num_features, 8, 8))
    assert torch.equal(block(x), x)


def test_zero_init_residual_mgic():
    from mgnas.ops.mgic import BasicCNNBlock

    spec = mgnas.model_spec("mgic_resnet56", zero_init_residual=True)
    assert spec.config["zero_init_residual"] is True
    assert "zero_init_residual" not in mgnas.model_spec("mgic_resnet56").config
    model = mgnas.build_model(spec)
    cnn = [m for m in model.modules() if isinstance(m, BasicCNNBlock)]
    assert len(cnn) == 54  # 27 blocks x (finest grouped level + coarsest level)
    assert all(bool((m.bn2.weight == 0).all()) and bool((m.bn1.weight == 1).all()) for m in cnn)
    default = mgnas.create_model("mgic_resnet56")
    assert all(bool((m.bn2.weight == 1).all()) for m in default.modules() if isinstance(m, BasicCNNBlock))


def test_zero_init_residual_bad_values_name_the_field():
    spec = mgnas.model_spec("resnet20_cifar")
    with pytest.raises(SpecError, match="config.zero_init_residual"):
        mgnas.build_model(spec.with_config({"zero_init_residual": 1}) if hasattr(spec, "with_config")
                          else type(spec).from_dict({**spec.to_dict(), "config": {"zero_init_residual": 1}}))
    with pytest.raises(SpecError, match="config.width"):
        mgnas.build_model(type(spec).from_dict({**spec.to_dict(), "config": {"width": 2}}))
    with pytest.raises(ValueError, match="zero_init_residual"):
        mgnas.model_spec("resnet50", zero_init_residual="yes")
