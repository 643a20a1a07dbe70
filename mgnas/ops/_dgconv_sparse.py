"""The exact sparse DGConv: forward and straight-through gradients from grouped convolutions only.

Notation of :mod:`mgnas.ops.dgconv` (Zhang et al., Eq. 3-9): Ŵ = W ⊙ U (Eq. 3), y = conv(x, Ŵ),
U = U_1 ⊗ … ⊗ U_K ⊗ 1_{a×b} with U_k = g_k·1 + (1 − g_k)·I (Eq. 5, 7), g = 1[g̃ ≥ 0] forward and the
identity backward (Eq. 6, straight-through). Output channel o has the mixed-radix digits d_k(o) of
``o // a``, input channel i those of ``i // b``; U_oi = ∏_k [g_k = 1 or d_k(o) = d_k(i)]. The group of a
channel is the number formed by its digits at the gate-0 positions, G = ∏_{k: g_k = 0} r_k.

**Forward and ∂L/∂x.** U is block diagonal after sorting channels by group, so y is a grouped conv with G
groups of the sorted input (block γ of the weight: W[o ∈ γ, i ∈ γ]), its output unsorted again.

**∂L/∂W** (the masked form's ∂L/∂Ŵ ⊙ U): zero off the blocks, the grouped conv's weight gradient on them.

**∂L/∂g̃_k** (Eq. 6's STE makes it ∂L/∂g_k). With S = Σ_kernel(∂L/∂Ŵ ⊙ W) (C_out × C_in),
∂L/∂g_k = Σ_oi S_oi (∂U/∂g_k)_oi, ∂U/∂g_k = U_1 ⊗ … ⊗ (1 − I_{r_k}) ⊗ … ⊗ U_K ⊗ 1_{a×b}, i.e.
(∂U/∂g_k)_oi = [d_k(o) ≠ d_k(i)] · ∏_{m ≠ k} [g_m = 1 or d_m(o) = d_m(i)].

* g_k = 1: the other gate-0 digits agree, so o and i share a group: these entries lie inside the current
  blocks, and S there is Σ_kernel(grouped weight gradient ⊙ W_block) -- the gradient already computed
  for ∂L/∂W. One (blocks × K) 0/1 matrix (``block_differs``: d_k(o) ≠ d_k(i)) turns it into every such
  ∂L/∂g_k by one matrix-vector product.
* g_k = 0: (∂U/∂g_k)_oi = 1 exactly when the groups of o and i differ in digit k only, i.e. group(o) =
  group(i) ⊕_k s (digit k shifted by s ∈ 1..r_k − 1), for every value of the gate-1 digits: whole
  off-diagonal blocks W[γ ⊕_k s, γ]. Their S sums come in two exact forms:

  - weight-gradient form (``SHIFT_FORM = "weight"``): S on a block is Σ_kernel(its weight
    gradient ⊙ W), and the weight gradient of the block (γ ⊕_k s, γ) is that of a grouped conv whose
    group γ reads the sorted input x_γ and receives ∂L/∂y_{γ ⊕_k s}. The blocks and all
    M = Σ_{k: g_k = 0}(r_k − 1) shifts are one grouped weight gradient with G groups and (1 + M)·C_out/G
    rows per group (∂L/∂y gathered accordingly), which also gives ∂L/∂W on the blocks;
  - forward form (``"forward"``): since ∂L/∂Ŵ_oi = Σ_{n,p} ∂L/∂y_o ⋆ x_i, Σ_{o ∈ γ ⊕_k s, i ∈ γ} S_oi =
    ⟨∂L/∂y_{γ ⊕_k s}, conv(x_γ, W[γ ⊕_k s, γ])⟩: one forward grouped conv with M·C_out/G outputs per
    group, then an inner product with the gathered ∂L/∂y.

  Both do the same arithmetic; on CPU (oneDNN, G-ResNeXt-50 shapes) the weight-gradient form measured
  faster except at small spatial sizes, where its product with (1 + M)/G of the dense weight dominates:
  ``SHIFT_FORM = "auto"`` (the default) picks per call (:func:`_shift_form`).

Work: the forward, ∂L/∂x and ∂L/∂W are those of a grouped conv; the gate gradient adds M grouped convs,
(1 + M)/G of a dense weight gradient in all (6/32 for G = 32 with radix 2); nothing C_out × C_in × k²-dense
is built except ∂L/∂W itself (dense by contract: zero off the blocks), and that one is reused from step to step
when nothing else holds it (:class:`DenseGradBuffer`: only the blocks are written, no 4·C_out·C_in·k² bytes are
allocated and zero-filled per layer and step).

Layouts (orders, block and shift index tensors) depend only on the hard pattern: they are built once per
(shape, pattern, device) and cached (:func:`sparse_layout`). Channel permutations are gathers of the channel
axis (:class:`~mgnas.ops._channels.ChannelIndex`: whole H·W planes of NCHW tensors, the last axis of the NHWC
view of channels_last ones; measured no slower than the reshape/transpose of the mixed-radix digit axes), and
are skipped entirely when the groups are already contiguous (e.g. the sorted pattern [0, …, 0, 1, …, 1]).

Precision: under autocast the convolutions run in the autocast dtype (like the masked form's
``F.conv2d``); S and all reductions are accumulated in the weight's dtype. ``torch.compile``: the
layout depends on Python values of the hard gates, so the sparse path is excluded from graphs
(``torch.compiler.disable``, a graph break); compiled models run it eagerly between graph pieces.
Double backward is not supported: a backward with ``create_graph=True`` raises a RuntimeError that names
the masked form (gradients without a graph of their own would silently drop second-order terms). Nothing
depends on the rank, so DDP needs nothing special (the gates are an ``nn.Parameter`` kept identical across
ranks by DDP).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ._channels import ChannelIndex

SHIFT_FORM = "auto"  # "auto" | "weight" | "forward": how the shifted-block sums are computed (all exact)


class ChannelPerm:
    """A channel permutation that transposes groups of mixed-radix digit axes.

    The channel axis is viewed as ``sizes`` (most significant first); ``dims`` is the new order of those
    axes. ``apply`` gathers (``out[:, c] = x[:, index[c]]``), ``invert`` scatters back, both with a channel
    gather (:class:`ChannelIndex`, which keeps NCHW and channels_last layouts). The reshape/transpose of the
    digit axes computes the same; measured on CPU it was never faster: about as fast for NCHW
    (``bench_dgconv.py``), slower for channels_last tensors in G-ResNeXt-50's step (1.46x vs 1.43x
    ResNeXt-50's, ``bench_sparse_step.py``).
    """

    def __init__(self, sizes: tuple[int, ...], dims: tuple[int, ...], device: torch.device) -> None:
        self.sizes, self.dims = sizes, dims
        self.index = torch.arange(math.prod(sizes)).reshape(sizes).permute(dims).reshape(-1)  # CPU, for reference
        self.gather = ChannelIndex(self.index.to(device))
        self.scatter = ChannelIndex(torch.argsort(self.index).to(device))

    def apply(self, x: Tensor) -> Tensor:
        return self.gather(x)

    def invert(self, x: Tensor) -> Tensor:
        return self.scatter(x)


def _digit_perm(per: int, radices: Sequence[int], pattern: Sequence[int],
                device: torch.device) -> Optional[ChannelPerm]:
    """Sort channels (stably) by group id: gate-0 digit axes first, then gate-1 digits and the ``per``
    remainder, each in their original order; None when that is the identity (groups already contiguous).
    Adjacent axes of one kind are merged, so the transpose has as few axes as possible."""
    kinds = [(r, 0 if not g else 1) for r, g in zip(radices, pattern)] + [(per, 1)]
    merged: list[list[int]] = []
    for size, kind in kinds:
        if merged and merged[-1][1] == kind:
            merged[-1][0] *= size
        else:
            merged.append([size, kind])
    dims = tuple(sorted(range(len(merged)), key=lambda j: (merged[j][1], j)))
    if dims == tuple(range(len(dims))):
        return None
    return ChannelPerm(tuple(s for s, _ in merged), dims, device)


def _digits(channels: int, per: int, radices: Sequence[int]) -> Tensor:
    """(channels, K) mixed-radix digits of ``channel // per``, most significant first."""
    base = torch.arange(channels) // per
    out, stride = [], math.prod(radices)
    for r in radices:
        stride //= r
        out.append((base // stride) % r)
    return torch.stack(out, 1) if out else torch.zeros(channels, 0, dtype=torch.int64)


class SparseLayout:
    """Everything the sparse DGConv needs for one hard gate pattern (built by :func:`sparse_layout`).

    ``block_index`` gathers the grouped weight (C_out·C_in/G rows of k², group by group) from
    ``weight.reshape(C_out·C_in, k²)``; ``shift_index`` the off-diagonal blocks W[γ ⊕_k s, γ] (group γ,
    shift m, row p); ``shift_out`` the output channel of every shifted row; ``shift_gate`` the gate k of
    every shift m; ``block_differs`` the (rows, K) 0/1 matrix [d_k(o) ≠ d_k(i)] on the blocks (0 for
    gate-0 digits, which agree inside a group).
    """

    def __init__(self, c_in: int, c_out: int, radices: tuple[int, ...], ones: tuple[int, int],
                 pattern: tuple[int, ...], device: torch.device) -> None:
        a, b = ones
        zeros = [k for k, g in enumerate(pattern) if not g]
        self.groups = math.prod(radices[k] for k in zeros)
        self.n_in, self.n_out = c_in // self.groups, c_out // self.groups
        self.in_perm = _digit_perm(b, radices, pattern, device)
        self.out_perm = _digit_perm(a, radices, pattern, device)
        in_order = self.in_perm.index if self.in_perm is not None else torch.arange(c_in)
        out_order = self.out_perm.index if self.out_perm is not None else torch.arange(c_out)
        g, n_in, n_out = self.groups, self.n_in, self.n_out
        cols = in_order.view(g, 1, n_in)  # input channels of group γ
        rows = out_order.view(g, n_out, 1)
        block = (rows * c_in + cols).reshape(-1)
        d_out, d_in = _digits(c_out, a, radices), _digits(c_in, b, radices)
        differs = d_out[rows.expand(g, n_out, n_in).reshape(-1)] != d_in[cols.expand(g, n_out, n_in).reshape(-1)]
        # Shifts: for every gate-0 digit k (position j among the group digits) and s in 1..r_k-1.
        zero_radices = [radices[k] for k in zeros]
        gdig = _digits(g, 1, zero_radices)  # (G, |zeros|) digits of the group ids
        strides = [math.prod(zero_radices[j + 1:]) for j in range(len(zeros))]
        targets, gates = [], []
        for j, k in enumerate(zeros):
            for s in range(1, radices[k]):
                shifted = gdig.clone()
                shifted[:, j] = (shifted[:, j] + s) % radices[k]
                targets.append((shifted * torch.tensor(strides)).sum(1))  # (G,) group γ ⊕_k s
                gates.append(k)
        self.n_shifts = len(targets)
        self.device = device
        self.block_index = block.to(device)
        self.block_differs = differs.to(device)
        self._differs_cast: dict[torch.dtype, Tensor] = {}
        if self.n_shifts:
            tgt = torch.stack(targets, 1)  # (G, M) target group of group γ under shift m
            out_ch = out_order.view(g, n_out)[tgt]  # (G, M, n_out) output channels
            self.shift_out = ChannelIndex(out_ch.reshape(-1).to(device))
            self.shift_index = (out_ch[..., None] * c_in + cols[:, None]).reshape(-1).to(device)
            self.shift_gate = torch.tensor(gates, device=device)
            # blocks and shifted blocks together, (G, 1 + M, n_out) rows: the weight-gradient form
            all_out = torch.cat([out_order.view(g, 1, n_out), out_ch], 1)
            self.all_out = ChannelIndex(all_out.reshape(-1).to(device))
            self.all_index = (all_out[..., None] * c_in + cols[:, None]).reshape(-1).to(device)

    def differs(self, dtype: torch.dtype) -> Tensor:
        if dtype not in self._differs_cast:
            self._differs_cast[dtype] = self.block_differs.to(dtype)
        return self._differs_cast[dtype]


@functools.lru_cache(maxsize=512)
def sparse_layout(c_in: int, c_out: int, radices: tuple[int, ...], ones: tuple[int, int],
                  pattern: tuple[int, ...], device: torch.device) -> SparseLayout:
    """The cached :class:`SparseLayout` of one shape and hard gate pattern on one device."""
    return SparseLayout(c_in, c_out, radices, ones, pattern, device)


def _storage_refs(t: Tensor) -> int:
    """How many tensors (views included) hold ``t``'s storage; a large number when torch cannot tell."""
    use_count = getattr(torch._C, "_storage_Use_Count", None)
    if use_count is None:
        return 1 << 30
    return use_count(t.untyped_storage()._cdata) - 1  # less the reference of the temporary storage object


class DenseGradBuffer:
    """The dense ∂L/∂W of one sparse DGConv, reused from step to step instead of allocated and zero-filled.

    ∂L/∂W is dense by contract but zero off the current blocks (C_in·C_out/G of C_in·C_out·k² entries).
    Allocating and zero-filling it every step (45M weights in G-ResNeXt-50: a memset plus the page faults of
    a fresh 180 MB) took its CPU step from 1.32x to 1.35x ResNeXt-50's (``bench_sparse_step.py``). This
    buffer keeps the storage of the last gradient it handed out (as a view of its own, so autograd's
    AccumulateGrad still takes the returned tensor as ``.grad`` without a copy) and hands it out again when
    nobody else holds that storage (``.grad`` was reset to None by ``zero_grad(set_to_none=True)``, or
    accumulated into, and no user reference or view of it is alive).

    If it was not modified in place since it was written (its version counter, shared by every view and
    ``detach()``, is unchanged), its entries off the blocks are still zero: only the blocks of the previous
    layout are zeroed (none when the hard gates did not flip) before the new blocks are written. If it was
    (gradient clipping, AMP unscaling, DDP's copy-back of the averaged gradient, ...), it is zero-filled
    whole, which still saves the allocation and its page faults. Otherwise a new zero tensor is allocated,
    as without the buffer. Not detected: writes through ``.grad.data`` (a legacy alias with a
    version counter of its own) that leave non-zeros off the blocks. A buffer is never pickled or copied
    (``deepcopy`` gives an empty one).
    """

    __slots__ = ("alias", "blocks", "version")

    def __init__(self) -> None:
        self.alias: Optional[Tensor] = None
        self.blocks: Optional[Tensor] = None
        self.version = -1

    def __reduce__(self):
        return (DenseGradBuffer, ())

    def take(self, weight: Tensor, blocks: Tensor) -> Tensor:
        """A (C_out·C_in, k, k) tensor for the gradient of ``weight``, zero except possibly on ``blocks``."""
        c_out, c_in, kh, kw = weight.shape
        a = self.alias
        if (a is not None and a.device == weight.device and a.dtype == weight.dtype
                and a.shape == (c_out * c_in, kh, kw) and _storage_refs(a) == 1):
            if a._version != self.version:  # edited in place since: anything may be off the blocks
                a.zero_()
            elif self.blocks is not blocks:
                a.index_fill_(0, self.blocks, 0)
        else:
            a = weight.new_zeros(c_out * c_in, kh, kw)
        self.alias, self.blocks = a, blocks
        return a.view(a.shape)  # a tensor of its own: AccumulateGrad steals it only if nothing else holds it

    def written(self, dw: Tensor) -> Tensor:
        """Record that ``dw`` (from :meth:`take`) holds the new gradient; returns it."""
        self.version = dw._version
        return dw


def _compute_dtype(x: Tensor) -> torch.dtype:
    dev = x.device.type
    if torch.is_autocast_enabled(dev) and x.is_floating_point() and x.dtype != torch.float64:
        return torch.get_autocast_dtype(dev)
    return x.dtype


def _gather_rows(weight: Tensor, index: Tensor, rows: int) -> Tensor:
    """``weight.reshape(C_out·C_in, k, k)[index]`` as a (rows, len(index)/rows, k, k) conv weight."""
    c_out, c_in, kh, kw = weight.shape
    return weight.reshape(c_out * c_in, kh, kw).index_select(0, index).view(rows, -1, kh, kw)


class SparseDGConvFunction(torch.autograd.Function):
    """y = conv(x, W ⊙ U) with grouped convolutions; see the module docstring for the gradients."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Optional[Tensor], gates: Tensor,  # type: ignore[override]
                layout: SparseLayout, stride: int, padding: int, dilation: int,
                grad_buffer: DenseGradBuffer) -> Tensor:
        cdt = _compute_dtype(x)
        c_out = weight.shape[0]
        with torch.autocast(x.device.type, enabled=False):
            xp = x.to(cdt) if layout.in_perm is None else layout.in_perm.apply(x.to(cdt))
            wg = _gather_rows(weight, layout.block_index, c_out).to(cdt)
            bg = None
            if bias is not None:
                bg = bias if layout.out_perm is None else bias.index_select(0, layout.out_perm.gather.index)
                bg = bg.to(cdt)
            y = F.conv2d(xp, wg, bg, stride, padding, dilation, layout.groups)
            if layout.out_perm is not None:
                y = layout.out_perm.invert(y)
        # Save the sorted (and autocast) input, as F.conv2d saves its cast input: backward would otherwise sort
        # it again, one more gather of |x| per layer and step. It costs one |x| of memory per DGConv when the
        # groups are not contiguous (about 3% of G-ResNeXt-50's step memory at 112x112, batch 8).
        ctx.save_for_backward(xp, wg, weight)
        ctx.layout, ctx.conv, ctx.grad_buffer = layout, (stride, padding, dilation), grad_buffer
        ctx.x_dtype, ctx.gates_dtype, ctx.has_bias = x.dtype, gates.dtype, bias is not None
        return y

    @staticmethod
    def backward(ctx, dy: Tensor):  # type: ignore[override]
        if torch.is_grad_enabled():  # create_graph=True: the gradients would silently lack their own graph
            raise RuntimeError(DOUBLE_BACKWARD)
        return _backward(ctx, dy)


DOUBLE_BACKWARD = ("DGConv2d(impl='sparse') has no double backward (create_graph=True); use impl='masked' "
                   "for higher-order gradients: mgnas.ops.set_dgconv_impl(model, 'masked')")


def _backward(ctx, dy: Tensor) -> tuple[Optional[Tensor], ...]:
    """The gradients of :class:`SparseDGConvFunction` (module docstring)."""
    xp, wg, weight = ctx.saved_tensors
    layout: SparseLayout = ctx.layout
    conv = ctx.conv
    need_x, need_w, need_b, need_g = ctx.needs_input_grad[:4]
    dx = dw = db = dg = gi = gw = None
    with torch.autocast(dy.device.type, enabled=False):
        dy = dy.to(wg.dtype)
        dyp = dy if layout.out_perm is None else layout.out_perm.apply(dy)
        shifted = need_g and layout.n_shifts and _shift_form(dy, weight, layout) == "weight"
        if need_x or ((need_w or need_g) and not shifted):
            gi, gw = _conv_backward(dyp, xp, wg, conv, layout.groups, need_x, (need_w or need_g) and not shifted)
        s_blk = s_shift = None
        if shifted:  # one weight gradient for the blocks and all shifted blocks together
            w_all = _gather_rows(weight, layout.all_index, layout.all_out.index.numel())
            _, gw_all = _conv_backward(layout.all_out(dy), xp, w_all.to(xp.dtype), conv,
                                       layout.groups, False, True)
            s_all = _kernel_dot(gw_all, w_all).view(layout.groups, 1 + layout.n_shifts, -1)
            s_blk, s_shift = s_all[:, 0].reshape(-1), s_all[:, 1:].sum((0, 2))
            gw = gw_all.reshape(layout.groups, 1 + layout.n_shifts, -1)[:, 0].reshape(wg.shape)
        if need_x:
            dx = (gi if layout.in_perm is None else layout.in_perm.invert(gi)).to(ctx.x_dtype)
        if need_w:
            kh, kw = weight.shape[2:]
            dw = ctx.grad_buffer.take(weight, layout.block_index)
            dw.index_copy_(0, layout.block_index, gw.reshape(-1, kh, kw).to(weight.dtype))
            dw = ctx.grad_buffer.written(dw).view(weight.shape)
        if need_b and ctx.has_bias:
            db = dy.sum((0, 2, 3), dtype=weight.dtype)
        if need_g:
            if s_blk is None:
                w_blk = wg if wg.dtype == weight.dtype else _gather_rows(weight, layout.block_index, wg.shape[0])
                s_blk = _kernel_dot(gw, w_blk)  # S on the blocks
            dg = s_blk @ layout.differs(weight.dtype)
            if layout.n_shifts:
                if s_shift is None:
                    s_shift = _shift_sums_forward(xp, weight, dy, layout, conv)
                dg = dg.index_add(0, layout.shift_gate, s_shift)
            dg = dg.to(ctx.gates_dtype)
    return dx, dw, db, dg, None, None, None, None, None


def _shift_form(dy: Tensor, weight: Tensor, layout: SparseLayout) -> str:
    """``SHIFT_FORM``; ``"auto"`` takes the forward form when N·H_out·W_out < (C_in/G)·k² (the activations
    per output channel are fewer than the weights per output row: small spatial sizes, as in G-ResNeXt-50's
    last stage, where the weight-gradient form's product with the gathered weights dominates), else the
    weight-gradient form (measured on CPU, ``experiments/benchmarks/bench_dgconv.py``)."""
    if SHIFT_FORM != "auto":
        return SHIFT_FORM
    positions = dy.shape[0] * dy.shape[2] * dy.shape[3]
    return "forward" if positions < layout.n_in * weight.shape[2] * weight.shape[3] else "weight"


def _kernel_dot(grad: Tensor, weight: Tensor) -> Tensor:
    """S = Σ_kernel(grad ⊙ weight) per (row, column) of two (rows, cols, k, k) tensors, flattened, in the
    weight's dtype."""
    kk = weight.shape[2] * weight.shape[3]
    return torch.linalg.vecdot(grad.reshape(-1, kk).to(weight.dtype), weight.reshape(-1, kk))


def _conv_backward(dy: Tensor, x: Tensor, w: Tensor, conv: tuple[int, int, int], groups: int, need_x: bool,
                   need_w: bool) -> tuple[Optional[Tensor], Optional[Tensor]]:
    stride, padding, dilation = conv
    gi, gw, _ = torch.ops.aten.convolution_backward(
        dy, x, w, None, [stride] * 2, [padding] * 2, [dilation] * 2, False, [0, 0], groups, [need_x, need_w, False])
    return gi, gw


def _shift_sums_forward(xp: Tensor, weight: Tensor, dy: Tensor, layout: SparseLayout,
                        conv: tuple[int, int, int]) -> Tensor:
    """Σ S over the shifted blocks of every shift m, in the forward form: ⟨∂L/∂y_{γ⊕m}, conv(x_γ, W[γ⊕m, γ])⟩."""
    rows = layout.groups * layout.n_shifts * layout.n_out
    w_sh = _gather_rows(weight, layout.shift_index, rows).to(xp.dtype)
    z = F.conv2d(xp, w_sh, None, *conv, layout.groups)
    per_row = (z * layout.shift_out(dy)).sum((0, 2, 3), dtype=weight.dtype)
    return per_row.view(layout.groups, layout.n_shifts, layout.n_out).sum((0, 2))
