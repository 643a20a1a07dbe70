"""MgNet smoothers/transfers and the MGiaD in-channel V-cycle SiC (mgnas.ops.mgnet)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mgnas.ops import MGiaDSmoother, MgNetLevel, MgNetSmoother, MgNetTransfer, SiCCycle
from mgnas.ops.mgnet import channel_levels, valid_group_sizes


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _bn_params(m: nn.Module) -> int:
    return sum(_params(b) for b in m.modules() if isinstance(b, nn.BatchNorm2d))


def _randomise_bn(m: nn.Module) -> nn.Module:
    """Non-trivial eval-mode BNs so that a wrong wiring cannot hide behind identity BNs."""
    for b in m.modules():
        if isinstance(b, nn.BatchNorm2d):
            b.running_mean.uniform_(-0.5, 0.5)
            b.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(b.weight, 0.5, 1.5)
            nn.init.uniform_(b.bias, -0.2, 0.2)
    return m.eval()


# --------------------------------------------------------------------------- MgNet
def test_smoother_is_the_mgnet_step():
    A, B = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.Conv2d(8, 8, 3, padding=1, bias=False)
    step = _randomise_bn(MgNetSmoother(A, B, 8))
    f, u = torch.randn(2, 8, 6, 6), torch.randn(2, 8, 6, 6)
    expected = u + F.relu(step.bn2(B(F.relu(step.bn1(f - A(u))))))
    assert torch.allclose(step(f, u), expected, atol=1e-6)
    # u = None is the zero start of Alg. 1 (the A(0) conv is skipped)
    assert torch.allclose(step(f, None), step(f, torch.zeros_like(f)), atol=1e-6)


def test_level_shares_A_and_B_and_counts_only_new_bns():
    c = 16
    levels = {nu: MgNetLevel(c, smoothings=nu) for nu in (1, 2, 5)}
    for nu, level in levels.items():
        assert all(s.A is level.A and s.B is level.B for s in level.steps)
        assert _params(level) == 2 * 9 * c * c + nu * 4 * c  # shared convs + two BNs per step
    grouped = MgNetLevel(c, smoothings=2, groups=4)
    assert grouped.A.groups == 4 and _params(grouped) == 2 * 9 * c * c // 4 + 8 * c
    with pytest.raises(ValueError, match=r"groups 3 does not divide 16 channels; valid groups: 1, 2, 4, 8, 16"):
        MgNetLevel(c, groups=3)


def test_transfer_is_the_fas_restriction():
    A1, A2 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.Conv2d(16, 16, 3, padding=1, bias=False)
    t = MgNetTransfer(8, 16, A1, A2).eval()
    assert t.Pi.groups == 8 and t.Pi.stride == (2, 2) and t.R.out_channels == 16
    assert _params(t) - _params(A1) - _params(A2) == 2 * 9 * 16  # depthwise-style Π and R only
    f, u = torch.randn(2, 8, 8, 8), torch.randn(2, 8, 8, 8)
    f_c, u_c = t(f, u)
    assert u_c.shape == f_c.shape == (2, 16, 4, 4)
    assert torch.allclose(u_c, t.Pi(u))
    assert torch.allclose(f_c, t.R(f - A1(u)) + A2(t.Pi(u)), atol=1e-6)
    with pytest.raises(ValueError, match="valid out_channels: multiples of 8"):
        MgNetTransfer(8, 12, A1, nn.Conv2d(12, 12, 3, padding=1))


# --------------------------------------------------------------------------- SiC
@pytest.mark.parametrize(("c", "c_k", "widths"), [
    (256, 64, [256, 128, 64]), (64, 64, [64]), (128, 64, [128, 64]), (192, 64, [192, 96]),
    (64, 4, [64, 32, 16, 8, 4]), (48, 2, [48, 24, 12, 6, 3]),  # an odd width is never halved
])
def test_channel_levels_halve_while_half_is_at_least_c_k(c, c_k, widths):
    assert channel_levels(c, c_k) == widths


def _sic_params(widths, gs, pre=1, post=1):
    convs = sum(2 * 9 * c * (c if i == len(widths) - 1 else gs) for i, c in enumerate(widths))
    transfers = sum(3 * c for c in widths[:-1])  # R̂, Π̂, P̂: 1x1, groups of 2 fine channels
    return convs + transfers + (pre + post) * 4 * sum(widths)


@pytest.mark.parametrize(("c", "c_k", "gs"), [(64, 16, 4), (128, 64, 8), (32, 32, 4), (96, 12, 6)])
def test_sic_shapes_grouping_and_parameter_count(c, c_k, gs):
    sic = SiCCycle(c, c_k, gs)
    widths = channel_levels(c, c_k)
    assert sic.widths == widths
    level, convs = sic, []
    while level is not None:
        convs.append(level.A)
        level = level.coarse
    assert [a.in_channels for a in convs] == widths
    assert [a.groups for a in convs] == [w // gs for w in widths[:-1]] + [1]  # dense on the coarsest
    assert _params(sic) == _sic_params(widths, gs)
    f = torch.randn(2, c, 5, 5)
    out = sic(f)
    assert out.shape == f.shape
    out.sum().backward()
    assert all(p.grad is not None for p in sic.parameters())


def test_sic_weights_are_shared_across_smoothings():
    base = SiCCycle(64, 16, 4, post_smooth=1)
    for post in (0, 2, 3):
        more = SiCCycle(64, 16, 4, post_smooth=post)
        assert _params(more) - _bn_params(more) == _params(base) - _bn_params(base)
        assert _bn_params(more) - _bn_params(base) == (post - 1) * 4 * sum(base.widths)
    level = SiCCycle(64, 16, 4, pre_smooth=2, post_smooth=3)
    while level is not None:
        steps = [*level.pre, *level.post]
        assert len(steps) == 5 and all(s.A is level.A and s.B is level.B for s in steps)
        level = level.coarse


def test_mgiad_smoother_cycles_share_every_conv():
    one, three = MGiaDSmoother(64, 16, 4, cycles=1), MGiaDSmoother(64, 16, 4, cycles=3)
    assert _params(three) - _bn_params(three) == _params(one) - _bn_params(one)
    assert _bn_params(three) == 3 * _bn_params(one)
    first, last = three.cycles[0], three.cycles[2]
    assert three.A is first.A and last.A is first.A and last.coarse.P is first.coarse.P
    f = torch.randn(2, 64, 4, 4)
    assert three(f).shape == f.shape


def _manual_two_level_sic(s: SiCCycle, f: torch.Tensor, u: torch.Tensor, fas: bool) -> torch.Tensor:
    """Alg. 2 line by line for K = 2 and η_pre = η_post = 1, from the cycle's own operators."""
    c = s.coarse
    u = s.pre[0](f, u)  # lines 1-2
    u_c = s.Pi(u)  # line 4
    f_c = s.R(f - s.A(u)) + c.A(u_c)  # line 5
    u_hat = c.post[0](f_c, c.pre[0](f_c, u_c))  # line 6: the coarsest level smooths η_pre + η_post times
    u = u + s.P(u_hat - u_c if fas else u_hat)  # line 7
    return s.post[0](f, u)  # lines 8-9


@pytest.mark.parametrize("fas", [False, True])
def test_sic_follows_algorithm_2(fas):
    s = _randomise_bn(SiCCycle(32, 16, 4, fas_correction=fas))
    f, u = torch.randn(2, 32, 6, 6), torch.randn(2, 32, 6, 6)
    with torch.no_grad():
        assert torch.allclose(s(f, u), _manual_two_level_sic(s, f, u, fas), atol=1e-5)


def test_fas_correction_vanishes_when_the_coarse_level_does_not_move():
    s = SiCCycle(32, 16, 4, fas_correction=True).eval()  # fresh BNs: BN(0) = 0, so B̂ = 0 means no update
    nn.init.zeros_(s.coarse.B.weight)
    f, u = torch.randn(2, 32, 6, 6), torch.randn(2, 32, 6, 6)
    with torch.no_grad():
        assert torch.allclose(s(f, u), s.post[0](f, s.pre[0](f, u)), atol=1e-6)
        s.fas_correction = False  # the paper's u + P̂(û) adds P̂(Π̂u) even then
        assert not torch.allclose(s(f, u), s.post[0](f, s.pre[0](f, u)), atol=1e-4)


def test_conv_factory_is_asked_for_every_operator():
    calls = []

    def conv_fn(role, level, cin, cout, k, groups):
        calls.append((role, level, cin, cout, k, groups))
        return nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups, bias=False)

    SiCCycle(64, 16, 8, conv_fn=conv_fn)
    assert sorted(calls) == sorted([
        ("A", 0, 64, 64, 3, 8), ("B", 0, 64, 64, 3, 8), ("A", 1, 32, 32, 3, 4), ("B", 1, 32, 32, 3, 4),
        ("A", 2, 16, 16, 3, 1), ("B", 2, 16, 16, 3, 1),
        ("R", 0, 64, 32, 1, 32), ("Pi", 0, 64, 32, 1, 32), ("P", 0, 32, 64, 1, 32),
        ("R", 1, 32, 16, 1, 16), ("Pi", 1, 32, 16, 1, 16), ("P", 1, 16, 32, 1, 16),
    ])
    calls.clear()
    MgNetLevel(16, smoothings=3, conv_fn=conv_fn)
    assert calls == [("A", 0, 16, 16, 3, 1), ("B", 0, 16, 16, 3, 1)]  # once each, however many steps


def test_dgconv_smoother_convs_build_and_train():
    from mgnas.ops import create_conv2d

    def conv_fn(role, level, cin, cout, k, groups):
        kind = "dgconv" if role in ("A", "B") and groups > 1 else ("group" if groups > 1 else "dense")
        return create_conv2d(kind, cin, cout, k, groups=1 if kind == "dgconv" else groups)

    s = SiCCycle(32, 16, 4, conv_fn=conv_fn)
    assert type(s.A).__name__ == "DGConv2d" and type(s.coarse.A) is nn.Conv2d
    s(torch.randn(2, 32, 4, 4)).sum().backward()
    assert s.A.gates.grad is not None


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"group_size": 3}, r"group_size 3 does not divide every grouped channel level \[64, 32\]; valid group sizes: "
                        r"1, 2, 4, 8, 16, 32"),
    ({"coarse_channels": 128}, r"coarse_channels 128 .* valid coarse_channels: 1\.\.64"),
    ({"pre_smooth": 0, "post_smooth": 0}, "pre_smooth \\+ post_smooth must be >= 1"),
    ({"post_smooth": -1}, "post_smooth must be an integer >= 0"),
    ({"transfer_group_size": 3}, "transfer_group_size 3 must be even .* valid transfer group sizes: 2, 4"),
])
def test_invalid_sic_arguments_name_the_argument_and_the_valid_values(kwargs, message):
    args = {"channels": 64, "coarse_channels": 16, "group_size": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        SiCCycle(**args)


def test_valid_group_sizes_ignore_the_dense_coarsest_level():
    assert valid_group_sizes([192, 96]) == [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 192]
    assert valid_group_sizes([96, 48, 24]) == [1, 2, 3, 4, 6, 8, 12, 16, 24, 48]
    assert valid_group_sizes([64]) == [1, 2, 4, 8, 16, 32, 64]  # no grouped level: the width itself


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_sic_scripts_and_matches_eager():
    s = _randomise_bn(MGiaDSmoother(32, 8, 4, cycles=2))
    f = torch.randn(1, 32, 4, 4)
    scripted = torch.jit.script(s)
    with torch.no_grad():
        assert torch.allclose(scripted(f, None), s(f), atol=1e-5)
