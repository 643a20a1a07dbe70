"""Multigrid conv ops (Ke et al. Fig. 2 and 4): grid wiring, shapes, residual shortcut, pooling."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mgnas.ops import MultigridConv2d, MultigridResidualUnit, create_conv2d, pyramid_pool
from mgnas.ops.multigrid import MultigridLayer, MultigridPool, concat_widths, multigrid_pool


def _grids(widths, size=8, batch=2):
    return [torch.randn(batch, c, size >> i, size >> i) for i, c in enumerate(widths)]


class _Capture(nn.Module):
    """Stands in for a per-grid conv: remembers its input and returns it."""

    def forward(self, x):
        self.seen = x
        return x


def test_grid_wiring_is_maxpool_finer_self_nearest_coarser():
    grids = _grids([2, 3, 4])
    caps = []

    def factory(grid, cin, cout, k):
        caps.append(_Capture())
        return caps[-1]

    MultigridConv2d([2, 3, 4], [5, 9, 7], conv_factory=factory)(grids)

    def down(x):  # 2x2 max-pool written out
        n, c, h, w = x.shape
        return x.reshape(n, c, h // 2, 2, w // 2, 2).amax(dim=(3, 5))

    def up(x):  # nearest x2 written out
        return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)

    g0, g1, g2 = grids
    torch.testing.assert_close(caps[0].seen, torch.cat([g0, up(g1)], 1))
    torch.testing.assert_close(caps[1].seen, torch.cat([down(g0), g1, up(g2)], 1))
    torch.testing.assert_close(caps[2].seen, torch.cat([down(g1), g2], 1))


def test_factory_is_called_with_concatenated_widths():
    calls = []

    def factory(grid, cin, cout, k):
        calls.append((grid, cin, cout, k))
        return nn.Conv2d(cin, cout, k, padding=k // 2)

    m = MultigridConv2d([2, 3, 4], [5, 6, 7], kernel_size=[3, 3, 1], conv_factory=factory)
    assert calls == [(0, 5, 5, 3), (1, 9, 6, 3), (2, 7, 7, 1)]
    assert m.concat_channels == concat_widths([2, 3, 4]) == [5, 9, 7]


@pytest.mark.parametrize("widths", [[4], [4, 6], [4, 6, 8]])
def test_shapes_for_one_two_three_grids(widths):
    out_w = [w + 1 for w in widths]
    out = MultigridConv2d(widths, out_w)(_grids(widths, size=16))
    assert [tuple(o.shape) for o in out] == [(2, c, 16 >> i, 16 >> i) for i, c in enumerate(out_w)]


def test_single_grid_equals_plain_conv():
    m = MultigridConv2d([5], [7], kernel_size=3)
    conv = nn.Conv2d(5, 7, 3, padding=1)
    conv.load_state_dict(m.convs[0].state_dict())
    x = torch.randn(2, 5, 9, 9)
    torch.testing.assert_close(m([x])[0], conv(x))


def test_default_convs_have_bias_and_odd_sizes_line_up():
    m = MultigridConv2d([3, 3, 3], [4, 4, 4], bias=True)
    assert all(c.bias is not None for c in m.convs)
    grids = [torch.randn(1, 3, s, s) for s in (7, 4, 2)]  # ceil-mode pyramid of an odd size
    assert [o.shape[-1] for o in m(grids)] == [7, 4, 2]


def test_conv_factory_hook_builds_grouped_and_dgconv():
    def grouped(grid, cin, cout, k):
        return create_conv2d("group", cin, cout, k, groups=2, bias=True)

    m = MultigridConv2d([4, 6], [4, 6], conv_factory=grouped)
    assert [c.groups for c in m.convs] == [2, 2]
    assert m.convs[0].weight.shape == (4, 5, 3, 3)  # (4 + 6) / 2 inputs per group
    dg = MultigridConv2d([4, 4], [4, 4], conv_factory=lambda g, i, o, k: create_conv2d("dgconv", i, o, k))
    out = dg(_grids([4, 4]))
    sum(o.sum() for o in out).backward()
    assert dg.convs[0].gates.grad is not None


def test_bad_constructor_input_says_what_to_change():
    with pytest.raises(ValueError, match="one width per grid"):
        MultigridConv2d([4, 4], [4])
    with pytest.raises(ValueError, match="odd"):
        MultigridConv2d([4], [4], kernel_size=2)
    with pytest.raises(ValueError, match="expects 2 grids"):
        MultigridConv2d([4, 4], [4, 4])(_grids([4]))
    with pytest.raises(ValueError, match="narrows"):
        MultigridResidualUnit([8, 4], [4, 4])


def test_residual_unit_zero_padded_identity_shortcut():
    unit = MultigridResidualUnit([3, 2], [5, 2]).eval()
    for conv in (*unit.conv1.convs, *unit.conv2.convs):  # residual branch -> 0
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    grids = _grids([3, 2])
    out = unit(grids)
    assert out[0].shape == (2, 5, 8, 8)
    torch.testing.assert_close(out[0][:, :3], F.relu(grids[0]))
    assert torch.count_nonzero(out[0][:, 3:]) == 0
    torch.testing.assert_close(out[1], F.relu(grids[1]))


def test_residual_branch_is_used():
    unit = MultigridResidualUnit([3, 3], [3, 3])
    grids = _grids([3, 3])
    out = unit(grids)
    assert not torch.allclose(out[0], F.relu(grids[0]))
    sum(o.sum() for o in out).backward()
    assert all(c.weight.grad is not None for c in unit.conv1.convs)


def test_progressive_layer_passes_finer_grids_through():
    grids = _grids([2, 3, 4])
    for layer in (MultigridLayer([3, 4], [5, 6], first_grid=1), MultigridResidualUnit([4], [4], first_grid=2)):
        out = layer(grids)
        assert out[0] is grids[0]
        assert len(out) == 3
    assert [o.shape[1] for o in MultigridLayer([3, 4], [5, 6], first_grid=1)(grids)] == [2, 5, 6]


def test_pyramid_pool_is_repeated_average_pooling():
    x = torch.randn(2, 3, 16, 16)
    levels = pyramid_pool(x, 3)
    assert levels[0] is x
    torch.testing.assert_close(levels[1], F.avg_pool2d(x, 2))
    torch.testing.assert_close(levels[2], F.avg_pool2d(x, 4))


def test_stage_transition_pools_and_merges_the_two_coarsest():
    grids = _grids([2, 3, 4], size=16)
    plain = multigrid_pool(grids)
    assert [tuple(g.shape[1:]) for g in plain] == [(2, 8, 8), (3, 4, 4), (4, 2, 2)]
    merged = MultigridPool(merge=True)(grids)
    assert [tuple(g.shape[1:]) for g in merged] == [(2, 8, 8), (7, 4, 4)]
    torch.testing.assert_close(merged[1], torch.cat([F.max_pool2d(grids[1], 2), grids[2]], 1))
    with pytest.raises(ValueError, match="cannot merge"):
        multigrid_pool([torch.randn(1, 1, 8, 8), torch.randn(1, 1, 8, 8)], merge=True)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.script is deprecated in torch 2.x
def test_torchscript_matches_eager():
    unit = MultigridResidualUnit([4, 2, 2], [4, 4, 2], kernel_size=[3, 3, 1]).eval()
    grids = _grids([4, 2, 2])
    scripted = torch.jit.script(unit)
    for a, b in zip(scripted(grids), unit(grids)):
        torch.testing.assert_close(a, b)
