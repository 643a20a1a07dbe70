"""The sparse DGConv (grouped convolutions only) equals the masked one (W ⊙ U, Zhang et al. Eq. 3-7) in the
output and in every gradient: ∂L/∂x, ∂L/∂W, ∂L/∂b and the straight-through ∂L/∂g̃ (Eq. 6)."""

import copy

import pytest
import torch
from torch import nn

from mgnas.ops import DGConv2d, set_dgconv_impl
from mgnas.ops._dgconv_sparse import SHIFT_FORM, sparse_layout


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def _random_pattern(k: int, gen: torch.Generator) -> list[int]:
    return torch.randint(0, 2, (k,), generator=gen).tolist()


def _step(m: DGConv2d, impl: str, x: torch.Tensor, gy: torch.Tensor, autocast: bool = False) -> list[torch.Tensor]:
    """Output and all gradients of one backward with ``impl``."""
    m.impl = impl
    m.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        y = m(x)
    y.backward(gy.to(y.dtype))
    out = [y.detach(), x.grad, m.weight.grad, m.gates.grad]
    return out + ([m.bias.grad] if m.bias is not None else [])


def _assert_same(m: DGConv2d, x: torch.Tensor, tol: float, autocast: bool = False, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        y_shape = m(x).shape
    gy = torch.randn(y_shape, generator=gen, dtype=x.dtype)
    ref = _step(m, "masked", x, gy, autocast)
    got = _step(m, "sparse", x, gy, autocast)
    names = ["output", "dL/dx", "dL/dW", "dL/dgates", "dL/dbias"]
    for name, a, b in zip(names, got, ref):
        assert a.shape == b.shape and a.dtype == b.dtype, name
        assert _rel(a, b) <= tol, f"{name}: rel. error {_rel(a, b):.2e} > {tol} (pattern {m.gate_pattern()})"
    assert (got[3] != 0).any() or len(m.factors) == 0


SHAPES = [(16, 16), (64, 64), (96, 96), (40, 40), (112, 112), (256, 256), (24, 40), (32, 16), (16, 64)]


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize(("c_in", "c_out"), SHAPES)
def test_sparse_equals_masked_float64(c_in: int, c_out: int, stride: int) -> None:
    gen = torch.Generator().manual_seed(c_in * 7 + c_out + stride)
    m = DGConv2d(c_in, c_out, 3, stride=stride).double()
    x = torch.randn(2, c_in, 6, 6, generator=gen, dtype=torch.float64)
    for trial in range(2):  # two random patterns on one module: the layout follows the gates
        m.set_gates(_random_pattern(len(m.factors), gen))
        _assert_same(m, x, 1e-5, seed=trial)


@pytest.mark.parametrize(("c_in", "c_out"), [(64, 64), (96, 96), (24, 40), (256, 256)])
def test_sparse_equals_masked_float32(c_in: int, c_out: int) -> None:
    gen = torch.Generator().manual_seed(c_in + c_out)
    m = DGConv2d(c_in, c_out, 3)
    m.set_gates(_random_pattern(len(m.factors), gen))
    _assert_same(m, torch.randn(2, c_in, 6, 6, generator=gen), 1e-4)


@pytest.mark.parametrize(("c_in", "c_out", "kernel", "stride", "dilation"),
                         [(48, 48, 3, 1, 2), (40, 40, 3, 2, 2), (24, 40, 1, 1, 1), (32, 32, 5, 2, 1)])
def test_dilation_kernel_and_bias(c_in: int, c_out: int, kernel: int, stride: int, dilation: int) -> None:
    gen = torch.Generator().manual_seed(kernel * 100 + dilation)
    m = DGConv2d(c_in, c_out, kernel, stride=stride, dilation=dilation, bias=True).double()
    with torch.no_grad():
        m.bias.normal_(generator=gen)
    m.set_gates(_random_pattern(len(m.factors), gen))
    _assert_same(m, torch.randn(2, c_in, 7, 7, generator=gen, dtype=torch.float64), 1e-5)


@pytest.mark.parametrize(("c_in", "c_out"), [(16, 16), (40, 40), (96, 96), (16, 64), (24, 40)])
@pytest.mark.parametrize("gate", [0, 1])
def test_all_gates_zero_and_one(c_in: int, c_out: int, gate: int) -> None:
    m = DGConv2d(c_in, c_out, 3, bias=True).double()
    m.set_gates([gate] * len(m.factors))
    layout = m.sparse_layout()
    g = torch.gcd(torch.tensor(c_in), torch.tensor(c_out)).item()
    assert layout.groups == (g if gate == 0 else 1)  # depthwise (with multiplier) / dense
    assert layout.in_perm is None and layout.out_perm is None  # contiguous: no permutation at all
    _assert_same(m, torch.randn(2, c_in, 5, 5, dtype=torch.float64), 1e-5)


def test_no_gates_stem() -> None:
    m = DGConv2d(3, 16, 3, bias=True).double()  # gcd 1: no gates, a dense conv
    assert m.factors == ()
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    y = m(x)
    torch.testing.assert_close(y, nn.functional.conv2d(x, m.weight, m.bias, padding=1))
    y.sum().backward()
    assert m.gates.grad.shape == (0,)


def test_layout_matches_static_layout_and_is_cached() -> None:
    m = DGConv2d(40, 40, 3)
    m.set_gates([1, 0, 1, 0])  # factors (5, 2, 2, 2): G = 4, groups not contiguous
    layout = m.sparse_layout()
    groups, in_order, out_order = m.static_layout()
    assert layout.groups == groups == 4
    assert torch.equal(layout.in_perm.index, in_order) and torch.equal(layout.out_perm.index, out_order)
    x = torch.randn(2, 40, 3, 3)
    assert torch.equal(layout.in_perm.apply(x), x[:, in_order])
    assert torch.equal(layout.in_perm.invert(x[:, in_order]), x)
    assert m.sparse_layout() is layout  # same gates: no recomputation
    with torch.no_grad():
        m.gates.mul_(2.0)  # changed in place, same hard pattern: the cached layout is reused
    assert m.sparse_layout() is layout
    m.set_gates([1, 1, 0, 0])
    assert m.sparse_layout() is not layout and m.sparse_layout().groups == 4
    other = DGConv2d(40, 40, 1)  # same shape and pattern: layouts are shared (cached per pattern and device)
    other.set_gates([1, 1, 0, 0])
    assert other.sparse_layout() is m.sparse_layout()
    assert sparse_layout(40, 40, (5, 2, 2, 2), (1, 1), (1, 1, 0, 0), torch.device("cpu")) is m.sparse_layout()


def test_patterns_that_flip_between_steps() -> None:
    """SGD steps flip hard gates (g̃ starts at ±1e-8); every step's gradients must follow the new pattern."""
    torch.manual_seed(0)
    sparse = DGConv2d(32, 32, 3, bias=True, impl="sparse").double()
    masked = copy.deepcopy(sparse)
    masked.impl = "masked"
    opts = [torch.optim.SGD(m.parameters(), lr=0.5) for m in (sparse, masked)]
    x = torch.randn(2, 32, 5, 5, dtype=torch.float64)
    patterns = [sparse.gate_pattern()]
    for _ in range(4):
        losses = []
        for m, opt in zip((sparse, masked), opts):
            opt.zero_grad()
            loss = m(x).sin().mean()
            loss.backward()
            losses.append(loss.item())
            opt.step()
        assert losses[0] == pytest.approx(losses[1], rel=1e-10)
        assert sparse.gate_pattern() == masked.gate_pattern()
        torch.testing.assert_close(sparse.gates, masked.gates, rtol=1e-6, atol=1e-12)
        patterns.append(sparse.gate_pattern())
    assert len(set(patterns)) > 1  # the pattern did flip


def test_switch_impl_between_steps_and_set_dgconv_impl() -> None:
    model = nn.Sequential(DGConv2d(16, 16, 3), nn.ReLU(), DGConv2d(16, 32, 3, stride=2), nn.Conv2d(32, 8, 1))
    assert all(m.impl == "sparse" for m in model if isinstance(m, DGConv2d))  # the default
    x = torch.randn(2, 16, 6, 6)
    y_sparse = model(x)
    assert set_dgconv_impl(model, "masked") == 2
    assert set_dgconv_impl(model, "masked") == 0  # nothing left to change
    assert model[0].impl == model[2].impl == "masked"
    torch.testing.assert_close(model(x), y_sparse, rtol=1e-4, atol=1e-5)
    model[0].impl = "sparse"
    assert set_dgconv_impl(model, "sparse") == 1
    assert set_dgconv_impl(nn.Linear(2, 2), "sparse") == 0
    with pytest.raises(ValueError, match="impl must be one of"):
        set_dgconv_impl(model, "dense")
    with pytest.raises(ValueError, match="impl must be one of"):
        model[0].impl = "grouped"
    with pytest.raises(ValueError, match="impl must be one of"):
        DGConv2d(8, 8, 3, impl="fast")
    assert "impl" not in "".join(model.state_dict())  # not state: a checkpoint loads into either impl


def test_channels_last() -> None:
    m = DGConv2d(64, 64, 3, bias=True).double()
    m.set_gates([1, 0, 1, 0, 0, 1])
    x = torch.randn(2, 64, 6, 6, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    _assert_same(m, x, 1e-5)
    m.impl = "sparse"
    assert m(x).is_contiguous(memory_format=torch.channels_last)


def test_bf16_autocast() -> None:
    gen = torch.Generator().manual_seed(3)
    m = DGConv2d(64, 64, 3, bias=True)
    m.set_gates([0, 1, 1, 0, 1, 0])
    x = torch.randn(2, 64, 6, 6, generator=gen)
    _assert_same(m, x, 2e-2, autocast=True)  # both run the convs in bf16; sums differ in rounding only
    m.impl = "sparse"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert m(x).dtype == torch.bfloat16


def test_gradients_only_where_needed() -> None:
    m = DGConv2d(32, 32, 3, impl="sparse")
    m.set_gates([1, 0, 0, 1, 0])
    m.gates.requires_grad_(False)
    x = torch.randn(2, 32, 5, 5)
    m(x).sum().backward()  # x needs no grad, gates frozen: only the weight gradient
    assert m.gates.grad is None and m.weight.grad is not None
    off_block = m.relation().detach() == 0
    assert (m.weight.grad[off_block] == 0).all() and (m.weight.grad[~off_block] != 0).any()
    m.weight.requires_grad_(False)
    xg = x.clone().requires_grad_(True)
    m(xg).sum().backward()
    assert xg.grad is not None and xg.grad.abs().sum() > 0


def test_shift_forms_agree() -> None:
    """The gate-0 sums have two exact forms (weight gradient / forward conv); "auto" picks one per call."""
    import mgnas.ops._dgconv_sparse as sp

    assert SHIFT_FORM == "auto"
    m = DGConv2d(96, 96, 3, stride=2).double()
    m.set_gates([0, 1, 0, 1, 0, 1])
    x = torch.randn(2, 96, 7, 7, dtype=torch.float64)
    dy, w, layout = torch.empty(2, 96, 4, 4), m.weight, m.sparse_layout()  # 32 positions, C_in/G = 8: 8·9 = 72
    assert sp._shift_form(dy, w, layout) == "forward" and sp._shift_form(dy[:, :, :3], w, layout) == "forward"
    assert sp._shift_form(torch.empty(8, 96, 4, 4), w, layout) == "weight"
    for form in ("forward", "weight", "auto"):
        try:
            sp.SHIFT_FORM = form
            _assert_same(m, x, 1e-5)
        finally:
            sp.SHIFT_FORM = "auto"


def test_torch_compile_smoke() -> None:
    """The sparse path is excluded from graphs (its layout comes from Python values of the gates); a compiled
    model still runs it eagerly and gives the eager result."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(8, 16, 1), nn.BatchNorm2d(16), nn.ReLU(), DGConv2d(16, 16, 3), nn.ReLU())
    model[3].set_gates([1, 0, 0, 1])
    x = torch.randn(2, 8, 6, 6)
    compiled = torch.compile(model)
    y = compiled(x)
    y.square().sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    y_eager = model(x)
    y_eager.square().sum().backward()
    torch.testing.assert_close(y, y_eager, rtol=1e-4, atol=1e-5)
    for g, p in zip(grads, model.parameters()):
        torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-5)


def test_unbatched_input_equals_masked() -> None:
    """A 3-d (C, H, W) input, as ``F.conv2d`` takes it: the same output and gradients as the masked form."""
    torch.manual_seed(3)
    m = DGConv2d(16, 24, 3, stride=2).double()
    m.set_gates([1, 0, 0], magnitude=1.0)
    x = torch.randn(16, 7, 7, dtype=torch.float64)
    gy = torch.randn(24, 4, 4, dtype=torch.float64)
    ref, got = _step(m, "masked", x, gy), _step(m, "sparse", x, gy)
    assert ref[0].shape == got[0].shape == (24, 4, 4)
    for a, b in zip(got, ref):
        assert _rel(a, b) <= 1e-12


@pytest.mark.parametrize(("make", "words"), [
    (lambda: torch.randn(2, 8, 5, 5), "to have 16 channels, but got 8"),
    (lambda: torch.randn(2, 32, 5, 5), "to have 16 channels, but got 32"),
    (lambda: torch.randn(1, 2, 16, 5, 5), "Expected 3D (unbatched) or 4D (batched)"),
    (lambda: torch.randn(16, 5), "Expected 3D (unbatched) or 4D (batched)"),
    (lambda: torch.randint(0, 3, (2, 16, 5, 5)), "floating-point"),
    (lambda: torch.randn(2, 16, 5, 5, dtype=torch.float64), "should be the same"),
])
def test_inputs_the_masked_form_rejects_are_rejected(make, words: str) -> None:
    """Where ``F.conv2d`` raises, the sparse form raises a RuntimeError too (never an out-of-range gather, a
    silent cast, or an output from the wrong number of channels)."""
    m = DGConv2d(16, 16, 3)
    m.set_gates([1, 0, 1, 0], magnitude=1.0)
    x = make()
    with pytest.raises(RuntimeError):
        m.impl = "masked"
        m(x)
    m.impl = "sparse"
    with pytest.raises(RuntimeError, match=words.replace("(", r"\(").replace(")", r"\)")):
        m(x)


def test_torch_func_transforms_run_and_equal_autograd() -> None:
    """Inside torch.func transforms (grad, vmap) the masked form runs in place of the sparse one: the gradients
    equal plain autograd's, for either impl."""
    torch.manual_seed(4)
    m = DGConv2d(16, 16, 3).double()
    m.set_gates([1, 0, 1, 0], magnitude=1.0)
    x = torch.randn(2, 16, 5, 5, dtype=torch.float64)
    params = {k: v.detach() for k, v in m.named_parameters()}
    m.zero_grad(set_to_none=True)
    y = m(x)
    y.square().sum().backward()
    m.__dict__.pop("_grad_buffer")
    for impl in ("sparse", "masked"):
        m.impl = impl
        got = torch.func.grad(lambda p: torch.func.functional_call(m, p, (x,)).square().sum())(params)
        for name, p in m.named_parameters():
            assert _rel(got[name], p.grad) <= 1e-12, (impl, name)
        ys = torch.func.vmap(lambda xi: m(xi.unsqueeze(0)).squeeze(0))(x)
        assert _rel(ys, y) <= 1e-12
        assert "_grad_buffer" not in m.__dict__  # the sparse Function never ran under the transforms
