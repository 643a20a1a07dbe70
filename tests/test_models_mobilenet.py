"""MobileNetV2 with GC, GC-2L and Shuffle 1x1 convs (Lee, Park & Lee Table 4)."""

import pytest
import torch
from torch import nn

from mgnas.models import build_model, create_model, model_spec
from mgnas.ops import TwoLevelGroupConv2d
from mgnas.spec import SpecError


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


PAPER = {  # (conv, N) -> parameters in millions, Table 4
    ("standard", 1): 3.50,
    ("group", 2): 2.44, ("two_level", 2): 2.47,
    ("group", 4): 1.91, ("two_level", 4): 1.95,
    ("group", 8): 1.65, ("two_level", 8): 1.72,
}


@pytest.mark.parametrize(("conv", "groups"), list(PAPER))
def test_parameter_counts_match_table_4(conv, groups):
    measured = _params(create_model("mobilenetv2", conv=conv, groups=groups)) / 1e6
    assert measured == pytest.approx(PAPER[conv, groups], rel=0.02)
    assert round(measured, 2) == PAPER[conv, groups]  # the layout choices reproduce the printed digits


def test_standard_is_torchvision_mobilenet_v2_count():
    assert _params(create_model("mobilenetv2")) == 3_504_872


def test_which_convs_are_switched():
    spec = model_spec("mobilenetv2", conv="two_level", groups=4)
    kinds = {path: c.kind for path, c in spec.convs()}
    assert kinds["stem.conv"] == "dense"
    assert kinds["stages[0].blocks[0].project"] == "two_level"  # the expansion-1 block is grouped too
    assert kinds["stages[1].blocks[0].expand"] == kinds["stages[6].blocks[0].project"] == "two_level"
    assert kinds["stages[7].blocks[0].conv"] == "group"  # final 320 -> 1280: GC, no coarse branch
    dw = [c for p, c in spec.convs() if p.endswith(".dw")]
    assert len(dw) == 17 and all(c.groups == c.in_channels for c in dw)  # depthwise untouched
    model = build_model(spec)
    assert sum(isinstance(m, TwoLevelGroupConv2d) for m in model.modules()) == 16 + 17


def test_shuffle_variant():
    from mgnas.ops import GroupConv2d

    model = create_model("mobilenetv2", conv="shuffle", groups=8)
    shuffled = [m for m in model.modules() if isinstance(m, GroupConv2d)]
    assert len(shuffled) == 16 + 17 + 1 and all(m.shuffle == 8 for m in shuffled)
    assert _params(model) == _params(create_model("mobilenetv2", conv="group", groups=8))


@pytest.mark.parametrize("conv", ["two_level", "shuffle"])
def test_forward_backward_small_input(conv):
    model = create_model("mobilenetv2", conv=conv, groups=8, num_classes=10).train()
    out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 10)
    out.logsumexp(1).mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_residual_only_where_shapes_match():
    model = create_model("mobilenetv2")
    flags = [b.residual for stage in model.stages[:7] for b in stage]
    # Table 2 rows: n = 1, 2, 3, 4, 3, 3, 1; the first block of each row changes shape (row 5: 64 -> 96)
    assert flags == [False, False, True, False, True, True, False, True, True, True, False, True, True,
                     False, True, True, False]


def test_width_multiplier_scales_and_checks_groups():
    small = _params(create_model("mobilenetv2", width_mult=0.5))
    assert small < _params(create_model("mobilenetv2")) * 0.6
    with pytest.raises(ValueError, match="valid groups: 1, 2, 4, 8$"):
        model_spec("mobilenetv2", width_mult=0.5, conv="group", groups=16)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"conv": "group", "groups": 16}, r"groups=16 does not divide the 24-channel width; valid groups: 1, 2, 4, 8$"),
    ({"conv": "two_level", "groups": 3}, r"groups=3 .*valid groups: 1, 2, 4, 8$"),
    ({"conv": "grouped"}, r"conv='grouped' is not valid; valid conv values: 'standard', 'group', 'two_level', "
                          r"'shuffle'"),
    ({"groups": 2}, r"groups=2 needs a grouped conv"),
])
def test_bad_kwargs_name_argument_and_valid_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        model_spec("mobilenetv2", **kwargs)


def test_unknown_block_key_is_a_spec_error():
    spec = model_spec("mobilenetv2")
    with pytest.raises(SpecError, match=r"stages\[2\]\.blocks\[1\]\.expnd"):
        build_model(spec.with_values({"stages[2].blocks[1].expnd": None}))
