"""DGConv2d (Zhang et al. Eq. 3-9): special cases, Kronecker structure, to_static, complexity, gradients."""

import functools
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mgnas.ops import DGConv2d, GroupConv2d, create_conv2d


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach() - b.detach()).abs().max() / b.detach().abs().max())


def _mixed_pattern(k: int, gen: torch.Generator) -> list[int]:
    """A random gate pattern with at least one 0 and one 1 when k >= 2 (so groups are non-trivial)."""
    p = torch.randint(0, 2, (k,), generator=gen).tolist()
    if k >= 2:
        p[int(torch.randint(0, k, (1,), generator=gen))] = 0
        if all(v == 0 for v in p):
            p[0] = 1
    return p


# ---------------------------------------------------------------- construction and init
def test_factors_and_gate_init() -> None:
    m = DGConv2d(960, 960, 3)
    assert m.factors == (5, 3, 2, 2, 2, 2, 2, 2) and m.ones == (1, 1)
    assert isinstance(m.gates, nn.Parameter) and m.gates.shape == (8,)
    assert torch.all(m.gates.abs() == 1e-8)
    signs = torch.cat([DGConv2d(64, 64, 3).gates.sign() for _ in range(8)])
    assert {-1.0, 1.0} == set(signs.tolist())
    m = DGConv2d(24, 40, 3)
    assert m.factors == (2, 2, 2) and m.ones == (5, 3)
    assert m.weight.shape == (40, 24, 3, 3) and m.bias is None
    stem = DGConv2d(3, 64, 3)  # gcd 1: no gates, always dense
    assert stem.factors == () and stem.num_groups() == 1 and stem.complexity().item() == 192
    x = torch.randn(1, 3, 5, 5)
    static = stem.to_static()
    assert type(static) is nn.Conv2d and static.groups == 1 and _rel_err(static(x), stem(x)) < 1e-5


def test_gate_zero_counts_as_one() -> None:
    m = DGConv2d(8, 8, 1)
    with torch.no_grad():
        m.gates.zero_()  # Eq. 6: sign(0) = 1
    assert m.gate_pattern() == (1, 1, 1) and m.num_groups() == 1
    assert bool(m.relation().all()) and m.complexity().item() == 64


def test_set_gates_and_repr() -> None:
    m = DGConv2d(16, 16, 3)
    m.set_gates([1, 0, 1, 0])
    assert m.gate_pattern() == (1, 0, 1, 0)
    assert m.gates.tolist() == pytest.approx([1e-8, -1e-8, 1e-8, -1e-8])
    assert "factors=(2, 2, 2, 2)" in repr(m) and "groups=4" in repr(m)
    with pytest.raises(ValueError, match="4 values in"):
        m.set_gates([1, 0, 1])
    with pytest.raises(ValueError, match="4 values in"):
        m.set_gates([1, 0, 2, 0])


# ---------------------------------------------------------------- special cases of Eq. 3
@pytest.mark.parametrize(("c_in", "c_out"), [(16, 16), (24, 40), (96, 96)])
def test_all_gates_one_is_dense(c_in: int, c_out: int) -> None:
    m = DGConv2d(c_in, c_out, 3, bias=True)
    m.set_gates([1] * len(m.factors))
    x = torch.randn(2, c_in, 5, 5)
    assert torch.equal(m.relation(), torch.ones(c_out, c_in))
    torch.testing.assert_close(m(x), F.conv2d(x, m.weight, m.bias, padding=1))
    assert m.num_groups() == 1 and type(m.to_static()) is nn.Conv2d


@pytest.mark.parametrize("c", [16, 40])
def test_all_gates_zero_is_depthwise(c: int) -> None:
    m = DGConv2d(c, c, 3)
    m.set_gates([0] * len(m.factors))
    x = torch.randn(2, c, 5, 5)
    idx = torch.arange(c)
    dw = m.weight[idx, idx].unsqueeze(1)  # (C, 1, 3, 3)
    torch.testing.assert_close(m(x), F.conv2d(x, dw, padding=1, groups=c))
    assert torch.equal(m.relation(), torch.eye(c)) and m.num_groups() == c
    static = m.to_static()
    assert type(static) is nn.Conv2d and static.groups == c


@pytest.mark.parametrize(("c", "pattern", "groups"), [(16, [0, 0, 1, 1], 4), (96, [0, 0, 0, 1, 1, 1], 12)])
def test_block_diagonal_is_group_conv(c: int, pattern: list[int], groups: int) -> None:
    m = DGConv2d(c, c, 3)
    m.set_gates(pattern)
    assert m.num_groups() == groups
    n = c // groups
    ref = nn.Conv2d(c, c, 3, padding=1, groups=groups, bias=False)
    j = torch.arange(c)
    cols = (j // n * n)[:, None] + torch.arange(n)  # the input channels of each output's block
    with torch.no_grad():
        ref.weight.copy_(m.weight[j[:, None], cols])
    x = torch.randn(2, c, 5, 5)
    torch.testing.assert_close(m(x), ref(x))
    assert type(m.to_static()) is nn.Conv2d  # contiguous groups need no permutation


def test_channel_multiplier_layout_needs_no_permutation() -> None:
    m = DGConv2d(16, 32, 3)  # all-ones factor rightmost: all gates 0 is nn.Conv2d(16, 32, groups=16)
    m.set_gates([0, 0, 0, 0])
    static = m.to_static()
    assert type(static) is nn.Conv2d and static.groups == 16
    x = torch.randn(2, 16, 5, 5)
    assert _rel_err(static(x), m(x)) < 1e-5


# ---------------------------------------------------------------- Kronecker structure (Eq. 4-7)
@pytest.mark.parametrize("pattern", [[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 1, 1, 0, 1]])
def test_relation_is_kron_with_gate_one_leftmost(pattern: list[int]) -> None:
    k = len(pattern)
    m = DGConv2d(2**k, 2**k, 3)
    m.set_gates(pattern)
    ones, eye = torch.ones(2, 2), torch.eye(2)
    factors = [g * ones + (1 - g) * eye for g in pattern]  # U_k = g_k 1 + (1 - g_k) I  (Eq. 5)
    expected = functools.reduce(torch.kron, factors)  # U_1 ⊗ ... ⊗ U_K  (Eq. 7)
    assert torch.equal(m.relation(), expected)
    # elementwise: U[j, i] = prod_k (g_k or bit_k(j) == bit_k(i)), bit 1 the most significant
    j, i = torch.arange(2**k)[:, None], torch.arange(2**k)[None, :]
    coupled = torch.ones(2**k, 2**k, dtype=torch.bool)
    for pos, g in enumerate(pattern):
        shift = k - 1 - pos
        coupled &= bool(g) | ((j >> shift) & 1 == (i >> shift) & 1)
    assert torch.equal(m.relation().bool(), coupled)


def test_paper_examples() -> None:
    m = DGConv2d(8, 8, 3)
    m.set_gates([1, 1, 0])  # 1 ⊗ 1 ⊗ I: 2 groups, channel parity
    assert m.num_groups() == 2 and m.relation()[0].nonzero().flatten().tolist() == [0, 2, 4, 6]
    m.set_gates([0, 1, 0])  # I ⊗ 1 ⊗ I: 4 groups
    assert m.num_groups() == 4 and m.relation()[0].nonzero().flatten().tolist() == [0, 2]
    m = DGConv2d(16, 16, 3)
    m.set_gates([1, 0, 1, 0])
    assert m.relation()[0].nonzero().flatten().tolist() == [0, 2, 8, 10]
    assert isinstance(m.to_static(), GroupConv2d)  # non-contiguous: needs permutations


# ---------------------------------------------------------------- to_static
SHAPES = [(64, 64), (96, 96), (40, 40), (16, 32), (32, 16), (24, 40), (960, 960)]


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize(("c_in", "c_out"), SHAPES)
def test_to_static_exact(c_in: int, c_out: int, bias: bool) -> None:
    gen = torch.Generator().manual_seed(c_in * 1000 + c_out + bias)
    m = DGConv2d(c_in, c_out, 3, bias=bias)
    m.set_gates(_mixed_pattern(len(m.factors), gen))
    x = torch.randn(2, c_in, 5, 5)
    static = m.to_static()
    assert not any("gate" in name for name, _ in static.named_parameters())
    conv = static if isinstance(static, nn.Conv2d) else static.conv
    assert conv.groups == m.num_groups() > 1
    assert sum(p.numel() for p in static.parameters()) == c_in * c_out * 9 // m.num_groups() + (c_out if bias else 0)
    for train in (False, True):
        m.train(train), static.train(train)
        assert _rel_err(static(x), m(x)) < 1e-5


@pytest.mark.parametrize(("kernel", "stride", "padding", "dilation"), [(1, 1, None, 1), (3, 2, None, 1), (3, 2, 0, 2)])
def test_to_static_kernel_stride(kernel: int, stride: int, padding, dilation: int) -> None:
    m = DGConv2d(48, 48, kernel, stride, padding, dilation, bias=True)
    m.set_gates([0, 1, 0, 1, 1])  # factors (3, 2, 2, 2, 2): G = 6, non-contiguous
    assert m.num_groups() == 6
    x = torch.randn(2, 48, 7, 7)
    static = m.to_static()
    assert isinstance(static, GroupConv2d) and static.conv.groups == 6
    assert _rel_err(static(x), m(x)) < 1e-5


# ---------------------------------------------------------------- complexity and reachable groups
@pytest.mark.parametrize(("c_in", "c_out"), [(64, 64), (96, 96), (24, 40), (32, 16)])
def test_complexity(c_in: int, c_out: int) -> None:
    gen = torch.Generator().manual_seed(c_in + c_out)
    m = DGConv2d(c_in, c_out, 3)
    m.set_gates(_mixed_pattern(len(m.factors), gen))
    zeta = m.complexity()
    assert zeta.dim() == 0
    assert zeta.item() == m.relation().sum().item() == c_in * c_out / m.num_groups()
    zeta.backward()
    grad = m.gates.grad.clone()
    assert grad.abs().sum() > 0
    m.gates.grad = None
    m.relation().sum().backward()  # the closed form (Eq. 9) has the same STE gradient as nnz(U)
    torch.testing.assert_close(grad, m.gates.grad)


@pytest.mark.parametrize(("c_in", "c_out"), [(40, 40), (96, 96), (24, 40), (16, 32), (960, 960)])
def test_reachable_groups_are_divisors_of_gcd(c_in: int, c_out: int) -> None:
    m = DGConv2d(c_in, c_out, 1)
    g = torch.gcd(torch.tensor(c_in), torch.tensor(c_out)).item()
    reached = {m.groups_for(p) for p in itertools.product([0, 1], repeat=len(m.factors))}
    assert reached == set(_divisors(g)) == set(m.reachable_groups())


def test_num_groups_matches_relation_rows() -> None:
    m = DGConv2d(40, 40, 1)  # factors (5, 2, 2, 2)
    for pattern in itertools.product([0, 1], repeat=4):
        m.set_gates(pattern)
        u = m.relation()
        assert u.sum(1).unique().tolist() == [40 / m.num_groups()]  # every row: C / G ones


# ---------------------------------------------------------------- gradients
def test_training_step_updates_weight_and_gates() -> None:
    m = DGConv2d(16, 16, 3, bias=True)
    m.set_gates([1, 0, 1, 0])
    opt = torch.optim.SGD(m.parameters(), lr=1.0)
    x = torch.randn(2, 16, 5, 5)
    before = m.gates.detach().clone()
    loss = (m(x) + m.complexity() * 1e-3).square().mean()
    loss.backward()
    assert m.weight.grad.abs().sum() > 0 and m.bias.grad.abs().sum() > 0
    assert (m.gates.grad != 0).all()  # STE: every gate receives a gradient
    masked = m.relation().detach() == 0
    assert (m.weight.grad[masked] == 0).all()  # masked weights get no gradient
    opt.step()
    assert not torch.equal(m.gates.detach(), before)


def test_factory_builds_dgconv() -> None:
    m = create_conv2d("dgconv", 32, 32, 3, stride=2)
    assert isinstance(m, DGConv2d) and m.padding == 1 and m.stride == 2
    assert m(torch.randn(1, 32, 8, 8)).shape == (1, 32, 4, 4)


@pytest.mark.parametrize(("c_in", "c_out", "k"), [(256, 256, 3), (64, 128, 3), (512, 256, 1)])
def test_weight_init_is_kaiming_normal_fan_out(c_in: int, c_out: int, k: int) -> None:
    """As the conv it replaces in torchvision's ResNets and the public G-ResNeXt code: std sqrt(2 / (C_out k²))."""
    torch.manual_seed(0)
    m = DGConv2d(c_in, c_out, k, bias=True)
    expected = (2.0 / (c_out * k * k)) ** 0.5
    assert abs(m.weight.std().item() / expected - 1) < 0.05
    assert abs(m.weight.mean().item()) < 0.05 * expected
    assert torch.equal(m.bias, torch.zeros(c_out))
