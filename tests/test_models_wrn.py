"""WRN-28-10 / WRN-34-2 with GC, GC-2L and Shuffle convs (Lee, Park & Lee Tables 1 and 3)."""

import pytest
import torch
from torch import nn

from mgnas.models import build_model, create_model, model_spec
from mgnas.ops import TwoLevelGroupConv2d
from mgnas.spec import SpecError


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# (model, conv, N) -> paper parameters in millions (Table 3; N=1 from Table 1)
PAPER = {
    ("wrn28_10", "standard", 1): 36.48,
    ("wrn28_10", "group", 2): 18.25, ("wrn28_10", "two_level", 2): 18.35,
    ("wrn28_10", "group", 4): 9.14, ("wrn28_10", "two_level", 4): 9.25,
    ("wrn28_10", "group", 8): 4.58, ("wrn28_10", "two_level", 8): 4.74,
    ("wrn28_10", "group", 16): 2.30, ("wrn28_10", "two_level", 16): 2.54,
    ("wrn34_2", "standard", 1): 86.03,
    ("wrn34_2", "group", 2): 43.55, ("wrn34_2", "two_level", 2): 43.71,
    ("wrn34_2", "group", 4): 22.31, ("wrn34_2", "two_level", 4): 22.50,
    ("wrn34_2", "group", 8): 11.69, ("wrn34_2", "two_level", 8): 11.95,
    ("wrn34_2", "group", 16): 6.38, ("wrn34_2", "two_level", 16): 6.78,
}


@pytest.mark.parametrize(("name", "conv", "groups"), list(PAPER))
def test_parameter_counts_match_paper(name, conv, groups):
    model = create_model(name, conv=conv, groups=groups)
    measured = _params(model) / 1e6
    assert measured == pytest.approx(PAPER[name, conv, groups], rel=0.005)
    # the paper prints two decimals; every count here rounds to the printed value
    assert round(measured, 2) == PAPER[name, conv, groups]


def test_spec_parameter_formula_agrees_with_the_modules():
    spec = model_spec("wrn28_10", conv="two_level", groups=4)
    model = build_model(spec)
    conv_params = sum(c.num_params() for _, c in spec.convs())
    module_params = sum(_params(m) for m in model.modules() if isinstance(m, TwoLevelGroupConv2d))
    module_params += model.stem.conv.weight.numel()
    assert conv_params == module_params


def test_every_block_conv_is_switched_and_stem_head_stay_dense():
    model = create_model("wrn28_10", conv="two_level", groups=8)
    two_level = [n for n, m in model.named_modules() if isinstance(m, TwoLevelGroupConv2d)]
    # 12 blocks x 2 convs + 3 projection shortcuts (16->160, 160->320, 320->640)
    assert len(two_level) == 27 and sum(n.endswith("shortcut") for n in two_level) == 3
    assert type(model.stem.conv) is nn.Conv2d and model.stem.conv.groups == 1
    grouped = create_model("wrn28_10", conv="group", groups=8)
    block_convs = [m for n, m in grouped.named_modules() if isinstance(m, nn.Conv2d) and ".stages." in f".{n}"]
    assert len(block_convs) == 27 and all(m.groups == 8 for m in block_convs)


def test_shuffle_variant_shuffles_and_counts_like_group_conv():
    from mgnas.ops import GroupConv2d

    model = create_model("wrn28_10", conv="shuffle", groups=16)
    shuffled = [m for m in model.modules() if isinstance(m, GroupConv2d)]
    assert len(shuffled) == 27 and all(m.groups == 16 and m.shuffle == 16 for m in shuffled)
    assert _params(model) == _params(create_model("wrn28_10", conv="group", groups=16))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_two_level_with_zero_coarse_branch_equals_group_conv_network():
    """GC-2L contains GC (paper §4.1.1): with P0 = 0 and the same GC weights the networks agree."""
    gc = create_model("wrn28_10", conv="group", groups=16).eval()
    two = create_model("wrn28_10", conv="two_level", groups=16).eval()
    gc_modules = dict(gc.named_modules())
    state = {k: v for k, v in gc.state_dict().items() if k in two.state_dict()}
    two.load_state_dict(state, strict=False)
    for name, m in two.named_modules():
        if isinstance(m, TwoLevelGroupConv2d):
            m.load_unfused(gc_modules[name].weight, torch.randn_like(m.r0_weight), torch.zeros_like(m.p0_weight))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(two(x), gc(x), atol=1e-4, rtol=1e-4)
        for m in two.modules():
            if isinstance(m, TwoLevelGroupConv2d):
                m.p0.weight.normal_()
        assert not torch.allclose(two(x), gc(x), atol=1e-3)


@pytest.mark.parametrize(("name", "kwargs", "side"), [
    ("wrn28_10", {"conv": "two_level", "groups": 16, "dropout": 0.3}, 32),
    ("wrn34_2", {"conv": "two_level", "groups": 16}, 64),
])
def test_forward_backward(name, kwargs, side):
    model = create_model(name, **kwargs).train()
    out = model(torch.randn(2, 3, side, side))
    assert out.shape == (2, model.spec.num_classes)
    out.logsumexp(1).mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_stem_layouts():
    cifar, imagenet = model_spec("wrn28_10"), model_spec("wrn34_2")
    assert cifar.stem["conv"]["kernel_size"] == 3 and "pool" not in cifar.stem
    assert imagenet.stem["conv"]["kernel_size"] == 7 and imagenet.stem["pool"] and imagenet.stem["bn"]
    assert [len(s["blocks"]) for s in imagenet.stages] == [3, 4, 6, 3]
    assert imagenet.head["in_features"] == 1024


@pytest.mark.parametrize(("name", "kwargs", "match"), [
    ("wrn28_10", {"conv": "group", "groups": 3}, r"groups=3 does not divide the 16-channel width; valid groups: "
                                                 r"1, 2, 4, 8, 16$"),
    ("wrn34_2", {"conv": "two_level", "groups": 48}, r"groups=48 .*valid groups: 1, 2, 4, 8, 16, 32, 64$"),
    ("wrn28_10", {"conv": "dense"}, r"conv='dense' is not valid; valid conv values: 'standard', 'group', "
                                    r"'two_level', 'shuffle'"),
    ("wrn28_10", {"groups": 4}, r"groups=4 needs a grouped conv; valid: .*conv='group'"),
    ("wrn28_10", {"conv": "group", "groups": 0}, r"groups must be a positive integer"),
])
def test_bad_kwargs_name_argument_and_valid_values(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        model_spec(name, **kwargs)


def test_missing_projection_is_a_spec_error():
    spec = model_spec("wrn28_10", conv="group", groups=2)
    with pytest.raises(SpecError, match=r"stages\[1\]\.blocks\[0\]\.shortcut"):
        build_model(spec.with_values({"stages[1].blocks[0].shortcut": None}))
