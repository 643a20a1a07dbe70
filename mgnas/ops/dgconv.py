"""DGConv: dynamic grouping convolution (Zhang et al., "Differentiable Learning-to-Group Channels via
Groupable Convolutional Neural Networks", §3.1-3.3).

The conv weight is masked by a binary relation matrix U (Eq. 3)::

    y = conv2d(x, W ⊙ U[:, :, None, None])

and U is a Kronecker product of small gated factors (Eq. 4, 5, 7)::

    U = U_1 ⊗ U_2 ⊗ … ⊗ U_K ⊗ 1_{a×b},   U_k = g_k·1_{r_k} + (1 − g_k)·I_{r_k},
    g = 1[g̃ ≥ 0] (Eq. 6) forward, identity backward (straight-through: g = hard + g̃ − g̃.detach()).

Where this departs from the paper, and why:

* **Radices.** The paper (and the authors' public code) has C_in = C_out = 2^K and every U_k 2×2. Here
  g = gcd(C_in, C_out) is factorised into its primes r_1 ≥ r_2 ≥ … ≥ r_K (with multiplicity, *largest
  first*), and U_k is r_k × r_k. For C_in = C_out = 2^K this is exactly Eq. 7 (all r_k = 2, gate 1 the
  leftmost, most significant factor). Prime radices make every divisor of g a reachable group count
  (depthwise included when C_in = C_out), which widths like 40, 96, 112, 960 need. Largest primes first
  puts the 2s in the least significant positions, so power-of-two group *sizes* (ResNeXt's 4d, …) come
  out as contiguous groups for the patterns ``[0, …, 0, 1, …, 1]`` and need no channel permutation.
* **C_in ≠ C_out.** The leftover ratio is an all-ones factor 1_{a×b}, a = C_out/g, b = C_in/g, placed
  *rightmost* (least significant): output channel j and input channel i take their group digits from
  ``j // a`` and ``i // b``. With all gates 0 this is exactly PyTorch's grouped-conv layout
  (``nn.Conv2d(groups=g)``: contiguous blocks of a outputs and b inputs), e.g. a depthwise conv with a
  channel multiplier when C_out = m·C_in. With gcd 1 (e.g. a 3-channel stem) there are no gates: dense.
* **Orientation.** The paper writes U as C_in × C_out; here U is C_out × C_in, the weight's layout.
* **Complexity (Eq. 8, 9).** ζ = nnz(U) = a·b·∏_k r_k·(1 + (r_k − 1)·g_k) = C_in·C_out / G, which is
  Eq. 9's C·∏(1 + g_k) when all r_k = 2; G = ∏_{k: g_k = 0} r_k.

With unsorted gates the groups are not contiguous (C = 16, gates [1, 0, 1, 0]: output 0 is coupled with
inputs {0, 2, 8, 10}); :meth:`DGConv2d.to_static` therefore returns a grouped conv with input and
output channel permutations (:class:`~mgnas.ops.group.GroupConv2d`).

Two implementations compute the same values and gradients (``DGConv2d(impl=...)``, also a settable
attribute, so a model can switch between steps; :func:`set_dgconv_impl` sets it on a whole model):

* ``"sparse"`` (default): grouped convolutions only, on the current layout; the weight gradient is the
  grouped conv's on the blocks (zero elsewhere), and the straight-through gate gradients (Eq. 6) come from
  that gradient (gates at 1) and one extra grouped conv over the blocks shifted along each gate-0 digit
  (gates at 0). About (1 + Σ_{k: g_k = 0}(r_k − 1))/G of the masked form's weight-gradient work. The
  derivation is in :mod:`mgnas.ops._dgconv_sparse`. Layouts are cached per hard gate pattern.
* ``"masked"``: the paper's form, ``conv2d(x, W ⊙ U)`` with autograd through U (the reference). It also runs in
  place of ``"sparse"`` inside ``torch.func`` transforms, which cannot transform the sparse Function.

Initialisation: the weight as the conv it replaces in torchvision's ResNets and in the public G-ResNeXt
code, ``nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")`` (std sqrt(2 / (C_out·k²)), the
same for a dense or a grouped conv of that shape); bias 0; gates ±1e-8 with random sign (§4).
"""

import math
from collections.abc import Sequence
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_padding, check_positive
from ._dgconv_sparse import DenseGradBuffer, SparseDGConvFunction, SparseLayout, sparse_layout
from .group import GroupConv2d

GATE_INIT = 1e-8  # paper §4 "Implementation": gates start at ±1e-8 with random sign
IMPLS = ("sparse", "masked")


def _prime_factors(n: int) -> tuple[int, ...]:
    """Prime factors of ``n`` with multiplicity, largest first (``960 -> (5, 3, 2, 2, 2, 2, 2, 2)``)."""
    out, p = [], 2
    while p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    if n > 1:
        out.append(n)
    return tuple(sorted(out, reverse=True))


def _gated_kron(gates: Tensor, radices: Sequence[int], ones: tuple[int, int]) -> Tensor:
    """U = (⊗_k g_k·1 + (1 − g_k)·I) ⊗ 1_{a×b} (Eq. 7) for real-valued ``gates`` (hard or STE).

    A loop over the K factors, never over channels; differentiable w.r.t. ``gates``.
    """
    u = torch.ones(1, 1, dtype=gates.dtype, device=gates.device)
    for k, r in enumerate(radices):
        eye = torch.eye(r, dtype=gates.dtype, device=gates.device)
        u = torch.kron(u, eye + gates[k] * (1.0 - eye))
    if ones != (1, 1):
        u = torch.kron(u, torch.ones(ones, dtype=gates.dtype, device=gates.device))
    return u


def _group_ids(channels: int, per: int, radices: Sequence[int], pattern: Sequence[int]) -> Tensor:
    """Group id of every channel (vectorised): the mixed-radix number formed by the digits of
    ``channel // per`` at the gate-0 positions, most significant first."""
    base = torch.arange(channels) // per
    gid = torch.zeros(channels, dtype=torch.int64)
    stride = math.prod(radices)
    for r, g in zip(radices, pattern):
        stride //= r
        if not g:
            gid = gid * r + (base // stride) % r
    return gid


class DGConv2d(nn.Module):
    """Dynamic grouping convolution (Eq. 3-9): a dense weight masked by a gated Kronecker relation U.

    Args follow ``nn.Conv2d`` (square kernels, ``padding=None`` = same padding); ``impl`` is ``"sparse"``
    (grouped convolutions, the default) or ``"masked"`` (W ⊙ U, the reference), see the module docstring.
    Attributes: ``weight`` (C_out, C_in, k, k), ``bias`` or None, ``gates`` (the real-valued g̃, length K),
    ``factors`` (the radices r_k), ``ones`` ((a, b), the all-ones factor), ``impl`` (settable).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: Optional[int] = None,
        dilation: int = 1,
        bias: bool = False,
        impl: str = "sparse",
    ) -> None:
        super().__init__()
        self.impl = impl
        check_positive(in_channels=in_channels, out_channels=out_channels, stride=stride)
        self.padding = check_padding(kernel_size, padding, dilation)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.dilation = kernel_size, stride, dilation
        g = math.gcd(in_channels, out_channels)
        self.factors: tuple[int, ...] = _prime_factors(g)
        self.ones: tuple[int, int] = (out_channels // g, in_channels // g)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.gates = nn.Parameter(torch.empty(len(self.factors)))
        self.reset_parameters()

    _impl = "sparse"  # class default: modules pickled before ``impl`` existed load as sparse

    @property
    def impl(self) -> str:
        """``"sparse"`` (grouped convolutions only) or ``"masked"`` (W ⊙ U, the reference); settable."""
        return self._impl

    @impl.setter
    def impl(self, value: str) -> None:
        if value not in IMPLS:
            raise ValueError(f"DGConv2d impl must be one of {IMPLS}, got {value!r}")
        self.__dict__["_impl"] = value

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        """``nn.Module._apply`` (``.to``, ``.cuda``, ``.double``, ...), then the weight (and its gradient) made
        NCHW-contiguous again: ``model.to(memory_format=torch.channels_last)`` (``train.channels_last``) would
        make it channels_last, and the sparse form gathers its blocks from the contiguous layout (a channels_last
        weight was copied whole on every step: 1.96x instead of 1.27x ResNeXt-50's step on CPU). Channels_last
        activations are unaffected (the convolutions take their layout from the input). The sparse form's reused
        weight gradient (:class:`~mgnas.ops._dgconv_sparse.DenseGradBuffer`) is dropped: it would keep the old
        device's or dtype's memory alive."""
        super()._apply(fn, recurse)
        self.__dict__.pop("_grad_buffer", None)
        w = self.weight
        if not w.is_contiguous():
            w.data = w.data.contiguous()
        if w.grad is not None and not w.grad.is_contiguous():
            w.grad = w.grad.contiguous()
        return self

    # ------------------------------------------------------------------ parameters
    def reset_parameters(self) -> None:
        """Weight as the conv it replaces is initialised in torchvision's ResNets and the public G-ResNeXt
        code: ``kaiming_normal_(mode="fan_out", nonlinearity="relu")``, std sqrt(2 / (C_out·k²)); bias 0;
        gates ±1e-8 with random sign."""
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        if self.bias is not None:
            nn.init.zeros_(self.bias)
        self.reset_gates()

    @torch.no_grad()
    def reset_gates(self) -> None:
        """g̃ = ±1e-8 with random sign (§4). Keep gates in float32/bfloat16: in float16 ±1e-8 is ±0, i.e. all 1."""
        sign = torch.randint(0, 2, self.gates.shape, device=self.gates.device) * 2 - 1
        self.gates.copy_(sign.to(self.gates.dtype) * GATE_INIT)

    @torch.no_grad()
    def set_gates(self, pattern: Union[Sequence[Union[int, bool]], Tensor], magnitude: float = GATE_INIT) -> None:
        """Set the gates to a hard pattern: 1 → +magnitude (coupled factor), 0 → −magnitude (split)."""
        hard = self._check_pattern(pattern)
        values = torch.tensor([magnitude if h else -magnitude for h in hard], dtype=self.gates.dtype)
        self.gates.copy_(values.to(self.gates.device))

    def _check_pattern(self, pattern: Union[Sequence[Union[int, bool]], Tensor]) -> tuple[int, ...]:
        values = pattern.tolist() if isinstance(pattern, Tensor) else list(pattern)
        if len(values) != len(self.factors) or any(v not in (0, 1) for v in values):
            raise ValueError(
                f"a gate pattern for factors {self.factors} is {len(self.factors)} values in {{0, 1}}, "
                f"got {values!r}"
            )
        return tuple(int(v) for v in values)

    # ------------------------------------------------------------------ gates and relation
    def gate_pattern(self) -> tuple[int, ...]:
        """The hard gates g = 1[g̃ ≥ 0] (Eq. 6) as a tuple of 0/1, gate 1 first."""
        return tuple(int(v) for v in (self.gates.detach() >= 0).tolist())

    def _ste_gates(self) -> Tensor:
        """Hard gates forward, identity backward (straight-through estimator)."""
        g = self.gates
        return (g >= 0).to(g.dtype) + g - g.detach()

    def relation(self) -> Tensor:
        """Binary U (C_out × C_in) of the hard gates (Eq. 4-7); carries STE gradients to ``gates``."""
        return _gated_kron(self._ste_gates(), self.factors, self.ones)

    def groups_for(self, pattern: Union[Sequence[Union[int, bool]], Tensor]) -> int:
        """Number of groups G = ∏_{k: g_k = 0} r_k of a hard gate pattern."""
        hard = self._check_pattern(pattern)
        return math.prod(r for r, h in zip(self.factors, hard) if not h)

    def num_groups(self) -> int:
        """Current number of groups G (from the hard gates)."""
        return self.groups_for(self.gate_pattern())

    def reachable_groups(self) -> list[int]:
        """All group counts some gate pattern gives: the divisors of gcd(C_in, C_out)."""
        counts = {1}
        for r in self.factors:
            counts |= {c * r for c in counts}
        return sorted(counts)

    def complexity(self) -> Tensor:
        """ζ_ℓ = nnz(U) = a·b·∏_k r_k·(1 + (r_k − 1)·g_k) = C_in·C_out / G (Eq. 8, 9), a 0-dim tensor,
        differentiable w.r.t. ``gates`` through the STE (equal to ``relation().sum()`` and its gradient)."""
        g = self._ste_gates()
        r = torch.tensor(self.factors, dtype=g.dtype, device=g.device)
        return (r * (1.0 + (r - 1.0) * g)).prod() * float(self.ones[0] * self.ones[1])

    # ------------------------------------------------------------------ forward and export
    def sparse_layout(self) -> SparseLayout:
        """The layout of the current hard gates for ``impl="sparse"`` (cached per pattern and device, so it
        is rebuilt only when a hard gate flips). Reading the hard gates needs a device sync off the CPU:
        there it is skipped while the gates tensor is unchanged (same storage and version counter, which
        every in-place update bumps: optimizer steps, ``load_state_dict``, :meth:`set_gates`)."""
        g = self.gates
        key = (g.data_ptr(), g._version, g.device)
        memo = self.__dict__.get("_layout_memo")
        if memo is not None and memo[0] == key and g.device.type != "cpu":
            return memo[1]
        layout = sparse_layout(self.in_channels, self.out_channels, self.factors, self.ones, self.gate_pattern(),
                               g.device)
        self.__dict__["_layout_memo"] = (key, layout)
        return layout

    def forward(self, x: Tensor) -> Tensor:
        if self._impl == "sparse" and not _functorch_active():
            return _sparse_forward(self, x)
        u = self.relation().to(self.weight.dtype)
        return F.conv2d(x, self.weight * u[:, :, None, None], self.bias, self.stride, self.padding, self.dilation)

    @torch.no_grad()
    def static_layout(self) -> tuple[int, Tensor, Tensor]:
        """``(G, in_order, out_order)`` of the current hard gates: channels sorted (stably) by group id,
        so that group γ is ``in_order[γ·C_in/G : (γ+1)·C_in/G]`` and likewise on the output side."""
        pattern = self.gate_pattern()
        gid_in = _group_ids(self.in_channels, self.ones[1], self.factors, pattern)
        gid_out = _group_ids(self.out_channels, self.ones[0], self.factors, pattern)
        in_order = torch.argsort(gid_in, stable=True)
        out_order = torch.argsort(gid_out, stable=True)
        return self.groups_for(pattern), in_order, out_order

    @torch.no_grad()
    def to_static(self) -> nn.Module:
        """An exact equivalent without gates: a grouped conv with G = ``num_groups()`` groups.

        A plain ``nn.Conv2d(groups=G)`` when the groups are contiguous (dense, depthwise, block
        diagonal), else a :class:`GroupConv2d` with ``in_perm = in_order`` and ``out_perm`` the inverse
        of ``out_order`` (so ``out = conv(x[:, in_perm])[:, out_perm]``). Weight and bias are copied.
        """
        groups, in_order, out_order = self.static_layout()
        c_in, c_out, k = self.in_channels, self.out_channels, self.kernel_size
        n_in, n_out = c_in // groups, c_out // groups
        dev = self.weight.device
        w = self.weight.detach()[out_order.to(dev)][:, in_order.to(dev)]  # block diagonal after sorting
        blocks = w.reshape(groups, n_out, groups, n_in, k, k)
        idx = torch.arange(groups, device=dev)
        weight = blocks[idx, :, idx].reshape(c_out, n_in, k, k)  # the diagonal blocks, group by group
        args = (c_in, c_out, k, self.stride, self.padding, self.dilation)
        ident_in = torch.equal(in_order, torch.arange(c_in))
        ident_out = torch.equal(out_order, torch.arange(c_out))
        if ident_in and ident_out:
            conv: nn.Module = nn.Conv2d(*args, groups=groups, bias=self.bias is not None)
            target = conv
        else:
            out_perm = torch.empty_like(out_order)
            out_perm[out_order] = torch.arange(c_out)
            conv = GroupConv2d(*args, groups=groups, bias=self.bias is not None,
                               in_perm=None if ident_in else in_order, out_perm=None if ident_out else out_perm)
            target = conv.conv
        conv.to(device=dev, dtype=self.weight.dtype)
        target.weight.copy_(weight)
        if self.bias is not None:
            target.bias.copy_(self.bias.detach()[out_order.to(dev)])
        return conv.train(self.training)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
             f"padding={self.padding}")
        if self.dilation != 1:
            s += f", dilation={self.dilation}"
        if self.bias is None:
            s += ", bias=False"
        s += f", factors={self.factors}"
        if self.ones != (1, 1):
            s += f", ones={self.ones[0]}x{self.ones[1]}"
        return s + f", groups={self.num_groups()}"


def set_dgconv_impl(module: nn.Module, impl: str) -> int:
    """Set ``impl`` (``"sparse"`` | ``"masked"``) on every :class:`DGConv2d` inside ``module`` (itself
    included); returns how many changed. Raises ValueError for another value, before changing any."""
    if impl not in IMPLS:
        raise ValueError(f"DGConv2d impl must be one of {IMPLS}, got {impl!r}")
    changed = 0
    for m in module.modules():
        if isinstance(m, DGConv2d) and m.impl != impl:
            m.impl = impl
            changed += 1
    return changed


def _functorch_active() -> bool:
    """True inside ``torch.func`` transforms (``grad``, ``vmap``, ``jacrev``, ...). The sparse form is a classic
    ``autograd.Function`` with a Python-side layout, which functorch cannot transform; there the masked form
    runs instead: the same values and gradients, at the masked form's cost."""
    active = getattr(torch._C, "_are_functorch_transforms_active", None)
    return bool(active is not None and active())


def _check_sparse_input(m: DGConv2d, x: Tensor) -> None:
    """The errors ``F.conv2d`` (the masked form) raises for an input it cannot take, as RuntimeErrors with
    torch's wording: the sparse form would otherwise gather out of range, or cast the input silently."""
    if x.dim() not in (3, 4):
        raise RuntimeError(f"Expected 3D (unbatched) or 4D (batched) input to conv2d, but got input of size: "
                           f"{list(x.shape)}")
    if x.shape[-3] != m.in_channels:
        raise RuntimeError(f"Given groups=1, weight of size {list(m.weight.shape)}, expected input{list(x.shape)} "
                           f"to have {m.in_channels} channels, but got {x.shape[-3]} channels instead")
    if not x.is_floating_point():
        raise RuntimeError(f"DGConv2d expects a floating-point input, got {x.dtype}")
    if x.device != m.weight.device:
        raise RuntimeError(f"Input device ({x.device}) and weight device ({m.weight.device}) should be the same")
    if x.dtype != m.weight.dtype and not torch.is_autocast_enabled(x.device.type):
        raise RuntimeError(f"Input type ({x.dtype}) and weight type ({m.weight.dtype}) should be the same")


@torch.compiler.disable  # the layout depends on Python values of the hard gates: run eagerly, not traced
def _sparse_forward(m: DGConv2d, x: Tensor) -> Tensor:
    _check_sparse_input(m, x)
    if x.dim() == 3:  # unbatched, as F.conv2d takes it
        return _sparse_forward(m, x.unsqueeze(0)).squeeze(0)
    buffer = m.__dict__.get("_grad_buffer")
    if buffer is None:
        buffer = m.__dict__["_grad_buffer"] = DenseGradBuffer()
    return SparseDGConvFunction.apply(x, m.weight, m.bias, m.gates, m.sparse_layout(), m.stride, m.padding,
                                      m.dilation, buffer)
