"""MGIC block (Eliasof et al. Alg. 1): level rules, transfers, identity property, Alg. 1 order, O(c) growth."""

import importlib.util
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from mgnas.models._common import init_weights
from mgnas.ops import (
    BasicCNNBlock,
    BottleneckCNNBlock,
    ChannelProlongation,
    ChannelRestriction,
    InvertedResidualCNNBlock,
    MGICBlock,
    MGICConnector,
)
from mgnas.ops.mgic import mgic_levels

ROOT = Path(__file__).resolve().parents[1]


def basic(level, c, s):
    return BasicCNNBlock(c, s)


def identity(level, c, s):
    return nn.Identity()


# --------------------------------------------------------------------------- level rules
@pytest.mark.parametrize("channels, s_c, rule, expected", [
    (64, 16, "paper", [64, 32, 16]),        # halve while c > s_c
    (64, 16, "code", [64, 32, 16, 8]),      # code: coarsest < s_c
    (16, 16, "paper", [16]),                # nothing to coarsen
    (16, 16, "code", [16, 8]),              # code: always at least once
    (48, 16, "paper", [48, 24, 12]),        # §4.1 text, not Alg. 1's floor(log2 3) = 1
    (64, 64, "code", [64, 32]),
    (512, 64, "paper", [512, 256, 128, 64]),
])
def test_level_rules(channels, s_c, rule, expected):
    assert mgic_levels(channels, None, s_c, rule) == expected


def test_level_cap_and_its_limit():
    assert mgic_levels(64, 8, 16, "code", cap=1) == [64, 32]
    assert mgic_levels(64, 8, 16, "code", cap=0) == [64]
    with pytest.raises(ValueError, match=r"levels 4 is deeper .* valid values: 0\.\.3"):
        mgic_levels(64, 8, 16, "code", cap=4)


@pytest.mark.parametrize("kwargs, match", [
    ({"group_size": 48}, r"^group_size 48 .*valid group sizes: 2, 4, 8, 16, 32$"),  # does not divide
    ({"group_size": 128}, r"^group_size 128 .*valid group sizes: 2, 4, 8, 16, 32$"),  # wider than a level
    ({"group_size": 1}, r"^group_size 1 .*even"),                                   # R cannot halve groups of 1
    ({"channels": 40, "coarse_size": 4}, r"^coarse_size 4: .*odd width 5.*valid coarse sizes"),
    ({"rule": "fancy"}, r"^level_rule 'fancy' .*valid values: paper, code"),
])
def test_invalid_combinations_name_the_argument(kwargs, match):
    args = {"channels": 64, "group_size": 8, "coarse_size": 16, "rule": "paper"} | kwargs
    with pytest.raises(ValueError, match=match):
        mgic_levels(args["channels"], args["group_size"], args["coarse_size"], args["rule"])
    if "rule" not in kwargs:
        with pytest.raises(ValueError, match=match.split()[0]):
            MGICBlock(args["channels"], basic, args["group_size"], args["coarse_size"], level_rule=args["rule"])


def test_bottleneck_expansion_allows_odd_group_sizes():
    # R acts on 4c channels with c / s groups: 4 * s / 2 outputs per group is always whole
    assert mgic_levels(96, 3, 24, "paper", expansion=4) == [96, 48, 24]
    with pytest.raises(ValueError, match="group_size 3"):
        mgic_levels(96, 3, 24, "paper")


# --------------------------------------------------------------------------- transfers
def test_transfer_shapes_and_block_structure():
    r, p = ChannelRestriction(16, groups=4), ChannelProlongation(16, groups=4)
    assert r.weight.shape == (8, 4, 1, 1) and p.weight.shape == (16, 2, 1, 1)
    x = torch.randn(1, 16, 3, 3, requires_grad=True)
    r(x)[:, :2].sum().backward()   # coarse channels 0-1 read only fine group 0 (channels 0-3)
    assert (x.grad[:, :4] != 0).all() and (x.grad[:, 4:] == 0).all()
    y = torch.randn(1, 8, 3, 3, requires_grad=True)
    p(y)[:, 4:8].sum().backward()  # fine group 1 (channels 4-7) reads only coarse channels 2-3
    assert (y.grad[:, 2:4] != 0).all() and (y.grad[:, :2] == 0).all() and (y.grad[:, 4:] == 0).all()


def test_paper_init_positive_rows_sum_to_one():
    for op in (ChannelRestriction(64, 8, "paper"), ChannelProlongation(64, 8, "paper")):
        assert (op.weight > 0).all()
        torch.testing.assert_close(op.weight.sum(dim=(1, 2, 3)), torch.ones(op.weight.shape[0]))


def test_code_init_is_signed_kaiming_fan_out():
    r = ChannelRestriction(4096, 128, "code")
    assert (r.weight < 0).any() and (r.weight > 0).any()
    assert r.weight.std().item() == pytest.approx(math.sqrt(2 / 2048), rel=0.05)  # fan_out = out_channels


def test_code_constant_init_row_sums():
    r, p = ChannelRestriction(32, 4, "code_constant"), ChannelProlongation(32, 4, "code_constant")
    torch.testing.assert_close(r.weight.sum(dim=(1, 2, 3)), torch.ones(16))
    torch.testing.assert_close(p.weight.sum(dim=(1, 2, 3)), torch.full((32,), 0.5))
    with pytest.raises(ValueError, match="transfer_init 'kaiming'"):
        ChannelRestriction(32, 4, "kaiming")


def test_model_init_leaves_transfer_init_alone():
    block = MGICBlock(64, basic, 8, 16, transfer_init="paper")
    assert all(getattr(m, "_mgnas_custom_init", False) for m in block.down)
    init_weights(block)
    assert all((m.weight > 0).all() for m in block.down)


# --------------------------------------------------------------------------- the block
@pytest.mark.parametrize("init", ["paper", "code"])
@pytest.mark.parametrize("train", [True, False])
def test_identity_cnn_blocks_give_identity(init, train):
    """Paper §4.3: with identity CNN blocks the prolonged residual is zero, so the block is the identity."""
    block = MGICBlock(64, identity, 8, 8, transfer_init=init, level_rule="code").train(train)
    assert block.widths == [64, 32, 16, 8, 4]
    x = torch.randn(2, 64, 5, 5)
    torch.testing.assert_close(block(x), x)


class Scale(nn.Module):
    def __init__(self, a: float) -> None:
        super().__init__()
        self.a = a

    def forward(self, x):
        return self.a * x


def test_forward_follows_algorithm_1():
    """Reference V-cycle written out by hand from Alg. 1 with the block's own operators."""
    scales = {0: 1.5, 1: -0.7, 2: 2.0}
    block = MGICBlock(32, lambda level, c, s: Scale(scales[level]), 8, 8).eval()
    for m in block.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    x0 = torch.randn(2, 32, 4, 4)
    r0, r1 = block.down
    x1 = r0(x0)
    x2 = r1(x1)
    x2n = scales[2] * x2                              # full CNN block on the coarsest level
    up1, up0 = block.up                               # execution order: level 1, then level 0
    x1n = scales[1] * (x1 + up1.norm(up1.prolong(x2n - r1(x1))))
    x0n = scales[0] * (x0 + up0.norm(up0.prolong(x1n - r0(x0))))
    torch.testing.assert_close(block(x0), x0n)


def test_cnn_factory_receives_levels_and_group_sizes():
    calls = []

    def factory(level, c, s):
        calls.append((level, c, s))
        return BasicCNNBlock(c, s)

    block = MGICBlock(128, factory, [16, 8], 64, level_rule="code")
    assert block.widths == [128, 64, 32]
    assert sorted(calls) == [(0, 128, 16), (1, 64, 8), (2, 32, None)]
    assert [m.groups for m in block.down] == [8, 8]
    assert block.up[1].cnn.conv1.groups == 8 and block.coarsest.conv1.groups == 1
    with pytest.raises(ValueError, match="group_size lists 1 sizes"):
        MGICBlock(128, factory, [16], 64, level_rule="code")


def test_parameter_count_matches_eq_8():
    """Eq. 8 plus the transfers: grouped 3x3 convs s_g c_j 9 each, full s_c^2 9, R/P c_j s_g / 2 each, BNs."""
    block = MGICBlock(64, basic, 8, 16)  # paper rule: 64 > 32 > 16
    grouped = sum(2 * 9 * 8 * c for c in (64, 32))
    coarse = 2 * 9 * 16 * 16
    transfers = sum(2 * c * 8 // 2 for c in (64, 32))
    bns = sum(2 * 2 * c for c in (64, 32, 16)) + sum(2 * c for c in (64, 32))
    assert sum(p.numel() for p in block.parameters()) == grouped + coarse + transfers + bns


def test_bottleneck_transfers_act_on_expanded_channels():
    block = MGICBlock(64, lambda level, c, s: BottleneckCNNBlock(c, s), 32, 64, level_rule="code", expansion=4)
    r = block.down[0]
    assert (r.in_channels, r.out_channels, r.groups) == (256, 128, 2)  # groups = planes / s_g
    out = block(torch.randn(1, 256, 6, 6))
    assert out.shape == (1, 256, 6, 6)


def test_inverted_residual_block():
    blk = InvertedResidualCNNBlock(40, 120, 5, group_size=20, se=True, act="hswish")
    assert blk.conv1.groups == 2 and blk.conv3.groups == 2 and blk.conv2.groups == 120
    assert blk(torch.randn(1, 40, 7, 7)).shape == (1, 40, 7, 7)
    plain = InvertedResidualCNNBlock(16, 16)
    assert not plain.expand and isinstance(plain.conv1, nn.Identity)
    with pytest.raises(ValueError, match="mid_channels 60"):
        InvertedResidualCNNBlock(40, 60, group_size=5)  # 8 groups do not divide 60


def test_connector_is_depthwise_style():
    conn = MGICConnector(64, 256, stride=2)
    assert conn.conv.groups == 64 and conn.conv.weight.shape == (256, 1, 3, 3)
    assert conn(torch.randn(1, 64, 8, 8)).shape == (1, 256, 4, 4)
    assert MGICConnector(24, 40, 2).conv.groups == 8  # gcd when c_in does not divide c_out


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_torchscript_and_backward():
    block = MGICBlock(32, basic, 8, 8)
    x = torch.randn(2, 32, 6, 6)
    scripted = torch.jit.script(block)
    torch.testing.assert_close(scripted(x), block(x))
    block(x).sum().backward()
    assert all(p.grad is not None for p in block.parameters())


# --------------------------------------------------------------------------- O(c) growth (§4.4)
def _scaling_module():
    spec = importlib.util.spec_from_file_location("mgic_scaling", ROOT / "experiments" / "mgic_scaling.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_parameters_grow_linearly_not_quadratically():
    rows = _scaling_module().scaling_table("basic", group_size=16, coarse_size=32)
    assert [r.channels for r in rows] == [64, 128, 256, 512, 1024, 2048, 4096]
    for r in rows:
        if r.channels >= 512:
            assert abs(r.mgic_ratio - 2) <= 0.05 * 2, r
        if r.dense_ratio is not None:
            assert abs(r.dense_ratio - 4) <= 0.05 * 4, r
    assert rows[-1].dense / rows[-1].mgic > 100


def test_scaling_markdown_is_generated():
    text = (ROOT / "experiments" / "mgic_scaling.md").read_text()
    module = _scaling_module()
    assert text == module.markdown(module.scaling_table(), "basic", 16, 32, "paper")
