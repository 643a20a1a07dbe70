"""TwoLevelGroupConv2d (Lee, Park & Lee Eq. 3.3-3.5, §3.2): fused == unfused, GC baseline, counts."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mgnas.ops import TwoLevelGroupConv2d, create_conv2d


def _reference(x, gc_w, r0_w, p0_w, stride, padding, groups):
    """GC(x) + P0(R0(x)) with three separate convs (Eq. 3.5 read literally)."""
    gc = F.conv2d(x, gc_w, stride=stride, padding=padding, groups=groups)
    r0 = F.conv2d(x, r0_w, stride=stride, padding=padding, groups=groups)  # (B, N, H, W), Eq. 3.3
    return gc + F.conv2d(r0, p0_w)  # Eq. 3.4: full 1x1 N -> m


@pytest.mark.parametrize(("cin", "cout", "k", "stride", "groups"), [
    (16, 32, 3, 1, 4), (12, 12, 3, 2, 3), (8, 24, 1, 1, 8), (16, 8, 1, 2, 2), (6, 6, 5, 1, 6),
])
def test_fused_equals_unfused_reference(cin, cout, k, stride, groups):
    op = TwoLevelGroupConv2d(cin, cout, k, stride, groups=groups)
    # non-trivial weights everywhere, so a wrong split of the fused conv cannot pass
    for p in op.parameters():
        nn.init.normal_(p)
    x = torch.randn(2, cin, 11, 11)
    ref = _reference(x, op.gc_weight, op.r0_weight, op.p0_weight, stride, (k - 1) // 2, groups)
    out = op(x)
    side = (11 + 2 * ((k - 1) // 2) - k) // stride + 1
    assert out.shape == (2, cout, side, side)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_load_unfused_roundtrip_and_coupling():
    n, m, g = 8, 16, 4
    gc_w, r0_w, p0_w = torch.randn(m, n // g, 3, 3), torch.randn(g, n // g, 3, 3), torch.randn(m, g, 1, 1)
    op = TwoLevelGroupConv2d(n, m, 3, groups=g)
    op.load_unfused(gc_w, r0_w, p0_w)
    torch.testing.assert_close(op.gc_weight, gc_w)
    torch.testing.assert_close(op.r0_weight, r0_w)
    torch.testing.assert_close(op.p0_weight, p0_w)
    x = torch.randn(1, n, 7, 7)
    torch.testing.assert_close(op(x), _reference(x, gc_w, r0_w, p0_w, 1, 1, g), atol=1e-5, rtol=1e-5)
    # the coarse branch couples the groups: perturbing group 0's input moves every output group
    x2 = x.clone()
    x2[:, 0] += 1.0
    diff = (op(x2) - op(x)).abs().sum(dim=(0, 2, 3)).view(g, m // g).sum(1)
    assert (diff > 0).all()


def test_without_coarse_is_plain_group_conv():
    op = TwoLevelGroupConv2d(16, 32, 3, 2, groups=4, coarse=False, bias=True)
    ref = nn.Conv2d(16, 32, 3, 2, 1, groups=4, bias=True)
    ref.load_state_dict({"weight": op.gc_weight.detach(), "bias": op.conv.bias.detach()})
    x = torch.randn(2, 16, 9, 9)
    torch.testing.assert_close(op(x), ref(x))
    assert sum(p.numel() for p in op.parameters()) == sum(p.numel() for p in ref.parameters())
    assert op.r0_weight is None and op.p0_weight is None


@pytest.mark.parametrize(("n", "m", "d", "groups"), [(16, 32, 3, 4), (160, 160, 3, 16), (96, 24, 1, 8), (64, 64, 7, 1)])
def test_parameter_count_matches_section_3_2(n, m, d, groups):
    op = TwoLevelGroupConv2d(n, m, d, groups=groups)
    expected = d * d * m * n // groups + d * d * n + m * groups  # §3.2
    assert sum(p.numel() for p in op.parameters()) == expected
    assert sum(p.numel() for p in TwoLevelGroupConv2d(n, m, d, groups=groups, bias=True).parameters()) == expected + m


def test_stride_two_shapes_and_gradients():
    op = TwoLevelGroupConv2d(8, 16, 3, 2, groups=2)
    x = torch.randn(2, 8, 32, 32, requires_grad=True)
    y = op(x)
    assert y.shape == (2, 16, 16, 16)
    y.square().sum().backward()
    assert x.grad is not None and op.conv.weight.grad.abs().sum() > 0 and op.p0.weight.grad.abs().sum() > 0
    # R0 rows of the fused weight get gradient only through P0: it must be non-zero
    assert op.conv.weight.grad.view(2, 9, 4, 3, 3)[:, 8].abs().sum() > 0


def test_factory_builds_it():
    op = create_conv2d("two_level", 16, 32, 3, 1, None, groups=4)
    assert isinstance(op, TwoLevelGroupConv2d) and op.groups == 4 and op.padding == 1


@pytest.mark.parametrize(("cin", "cout", "groups", "valid"),
                         [(16, 24, 16, "1, 2, 4, 8"), (12, 12, 5, "1, 2, 3, 4, 6, 12")])
def test_groups_not_dividing_channels_lists_valid_values(cin, cout, groups, valid):
    with pytest.raises(ValueError, match=f"valid groups .*: {valid}$"):
        TwoLevelGroupConv2d(cin, cout, 3, groups=groups)


@pytest.mark.parametrize("kwargs", [{"groups": 0}, {"kernel_size": 0}, {"stride": -1}])
def test_nonpositive_arguments_are_rejected(kwargs):
    args = {"in_channels": 8, "out_channels": 8, "kernel_size": 3, "groups": 2, **kwargs}
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        TwoLevelGroupConv2d(**args)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_and_export_match_eager():
    op = TwoLevelGroupConv2d(8, 16, 3, groups=4).eval()
    x = torch.randn(1, 8, 6, 6)
    torch.testing.assert_close(torch.jit.script(op)(x), op(x))
    exported = torch.export.export(op, (x,))
    torch.testing.assert_close(exported.module()(x), op(x))
