"""MgNet smoothers and transfers (He & Xu 2019) and the MGiaD in-channel V-cycle SiC (van Betteray et al.).

Notation of the MGiaD paper: on resolution level l the *data* ``f`` and the *features* ``u`` live
on the same grid with c_l channels; ``A`` (features -> data) and ``B`` (data -> features) are 3x3
convs shared by every smoothing step of the level (MgNet_{A,B}).

- :class:`MgNetSmoother` -- one step of Eq. (3) / Alg. 1 line 4 with the activations of the paper's
  §IV.a ("BN followed by ReLU after every conv")::

      u <- u + σ(BN_2(B(σ(BN_1(f - A u)))))

  ``A`` and ``B`` are *given* (shared modules); the step owns only its two BatchNorms.
- :class:`MgNetLevel` -- ν smoothing steps with one shared A and one shared B (Alg. 1 lines 3-4).
- :class:`MgNetTransfer` -- the FAS transfer to the next, coarser resolution level, Eq. (6)-(7) =
  Alg. 3 lines 4-5::

      u' = Π(u),     f' = R(f - A u) + A'(u')

  ``Π`` and ``R`` are learnable *depthwise* stride-2 3x3 convs (§IV.b "learnable depthwise pooling
  operators"); where the width grows (64 -> 128) they are depthwise-style convs with channel
  multiplier c'/c (``groups = c``), so the channel change costs 9 c' weights each. ``A`` is the
  fine level's operator and ``A'`` the coarse level's (both given, both shared with the smoothers);
  the transfer itself owns only Π and R.
- :class:`SiCCycle` -- Alg. 2, multigrid smoothing in channels, on channel levels κ = 1..K with
  widths c, c/2, ... (halving while c_κ/2 >= c_K and c_κ is even). On every level κ the step above with
  Â_κ, B̂_κ (grouped, group size gs; dense on the coarsest level κ = K), shared by the η_pre pre- and
  η_post post-smoothing steps of that level (each step has its own BNs)::

      pre-smooth η_pre times                                    (lines 1-2)
      u_{κ+1} = Π̂(u_κ)                                          (line 4)
      f_{κ+1} = R̂(f_κ - Â_κ u_κ) + Â_{κ+1} u_{κ+1}              (line 5)
      û_{κ+1} = SiC(f_{κ+1}, u_{κ+1})                           (line 6)
      u_κ     = u_κ + P̂(û_{κ+1})                                (line 7, Eq. 10)
      post-smooth η_post times                                  (lines 8-9)

  As in the listing, the coarsest level runs η_pre + η_post smoothing steps (lines 8-9 are outside
  the ``if κ != K``); Table VIII's parameter increments (+4 weights per channel of *every* channel
  level per extra η_post) confirm it. Written recursively like Alg. 2; TorchScript-scriptable.
  R̂, Π̂ (c_κ -> c_κ/2) and P̂ (c_κ/2 -> c_κ) are grouped 1x1 convs whose groups hold
  ``transfer_group_size`` (default 2) fine channels: each coarse channel is a learned combination of
  a pair of fine channels and P̂ has the transposed block structure (independent weights).
- :class:`MGiaDSmoother` -- the MgNet level with the smoother replaced by SiC (Alg. 3 line 3):
  ``cycles`` SiC cycles (Alg. 3: one) sharing all convs, each with its own BNs. Its ``A`` (= Â_1, the
  fine level's grouped operator) is what the resolution transfer uses in f - A u and A'(u').

Conv factory. Every Â/B̂ (and the in-channel transfers) is made by a pluggable
``conv_fn(role, level, in_channels, out_channels, kernel_size, groups) -> nn.Module`` with ``role`` in
``"A", "B"`` (smoother convs) or ``"R", "Pi", "P"`` (in-channel transfers) and ``level`` the channel
level κ (0-based; 0 for MgNet). It is handed the default geometry and may return any module with
those channel counts and same-size output (a ``dgconv`` for a supernet, a permuted group conv from a
frozen spec); :func:`default_conv` builds plain ``nn.Conv2d``.

Where this departs from the paper or the authors' code (all documented choices). "The authors' code"
is the first author's public follow-up code (vanbetteray/Poly-MgNet); its MgNet reproduces the MGiaD
paper's exact MgNet counts (2,750,666 and 100,794); the MGiaD code itself was not available to us:

- **u = 0 start.** Alg. 1/3 start from u = 0; a level called with ``u=None`` skips the A(0) = 0 conv
  (same values, fewer MACs).
- **Coarse correction** is Eq. (10)/Alg. 2 line 7 literally, u + P̂(û) (not the FAS difference
  û - Π̂u); ``fas_correction=True`` selects u + P̂(û - Π̂ u).
- **No dead operators.** The authors' MgNet code (``MgBlock_poly``) creates Π and R on the first
  resolution level too but never applies them (+2·9·c_1 weights); those are not built here.
- **No BN/ReLU on the transfers** (the authors' code: none on Π/R; He & Xu's original code has BN+ReLU).
  The authors' code applies a ReLU to f - A u before R; Eq. (7) has none and neither do we.
- The in-channel transfers' kernel (1x1) and group size (2) are not stated in the paper; the group
  size follows the ``R_groups_size: 2`` of the authors' later public config. Init: whatever the
  model's init gives (Kaiming), no special transfer init.
"""

from collections.abc import Callable, Sequence
from typing import Optional

import torch
from torch import nn

from ..spec import divisors  # L0, standard library only

__all__ = [
    "MgNetSmoother", "MgNetTransfer", "MgNetLevel", "SiCCycle", "MGiaDSmoother",
    "ConvFn", "default_conv", "channel_levels", "valid_group_sizes",
]

ConvFn = Callable[[str, int, int, int, int, int], nn.Module]


def default_conv(role: str, level: int, in_channels: int, out_channels: int, kernel_size: int,
                 groups: int) -> nn.Module:
    """A plain bias-free ``nn.Conv2d`` with same padding (the default ``conv_fn``)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, groups=groups, bias=False)



def channel_levels(channels: int, coarse_channels: int) -> list[int]:
    """SiC channel-level widths: c, c/2, ... halving while c_κ/2 >= c_K and c_κ is even (finest first)."""
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    if not 1 <= coarse_channels <= channels:
        raise ValueError(f"coarse_channels {coarse_channels} must be between 1 and the width {channels}; "
                         f"valid coarse_channels: 1..{channels}")
    widths = [channels]
    while widths[-1] % 2 == 0 and widths[-1] // 2 >= coarse_channels:
        widths.append(widths[-1] // 2)
    return widths


def valid_group_sizes(widths: Sequence[int]) -> list[int]:
    """Group sizes dividing every grouped (non-coarsest) channel-level width."""
    grouped = list(widths[:-1]) or list(widths)
    return [d for d in divisors(min(grouped)) if all(w % d == 0 for w in grouped)]


def _check_count(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


# --------------------------------------------------------------------------- MgNet
class MgNetSmoother(nn.Module):
    """One smoothing step u <- u + σ(BN(B(σ(BN(f - A u))))) with given (shared) A and B."""

    def __init__(self, A: nn.Module, B: nn.Module, channels: int, act: bool = True) -> None:
        super().__init__()
        self.A, self.B = A, B
        self.bn1 = nn.BatchNorm2d(channels)  # on the residual f - A u (data space)
        self.bn2 = nn.BatchNorm2d(channels)  # on the correction B(.) (feature space)
        self.act = nn.ReLU() if act else nn.Identity()

    def forward(self, f: torch.Tensor, u: Optional[torch.Tensor] = None) -> torch.Tensor:
        r = f if u is None else f - self.A(u)
        e = self.act(self.bn2(self.B(self.act(self.bn1(r)))))
        return e if u is None else u + e


class MgNetLevel(nn.Module):
    """ν smoothing steps on one resolution level with one shared A and one shared B (MgNet_{A,B})."""

    def __init__(self, channels: int, smoothings: int = 2, kernel_size: int = 3, groups: int = 1,
                 conv_fn: Optional[ConvFn] = None, level: int = 0) -> None:
        super().__init__()
        _check_count("smoothings", smoothings, 1)
        if groups < 1 or channels % groups:
            valid = ", ".join(map(str, divisors(channels)))
            raise ValueError(f"groups {groups} does not divide {channels} channels; valid groups: {valid}")
        make = conv_fn or default_conv
        self.channels = channels
        self.A = make("A", level, channels, channels, kernel_size, groups)
        self.B = make("B", level, channels, channels, kernel_size, groups)
        self.steps = nn.ModuleList(MgNetSmoother(self.A, self.B, channels) for _ in range(smoothings))

    def forward(self, f: torch.Tensor, u: Optional[torch.Tensor] = None) -> torch.Tensor:
        for step in self.steps:
            u = step(f, u)
        assert u is not None
        return u


class MgNetTransfer(nn.Module):
    """FAS transfer to the next resolution level: u' = Π(u), f' = R(f - A u) + A'(u') (Eq. 6-7).

    ``Pi``/``R`` default to depthwise(-style) stride-2 convs with ``groups = in_channels``; pass modules
    to use others (a builder passes the convs of its spec).
    """

    def __init__(self, in_channels: int, out_channels: int, A_fine: nn.Module, A_coarse: nn.Module,
                 Pi: Optional[nn.Module] = None, R: Optional[nn.Module] = None, kernel_size: int = 3,
                 stride: int = 2) -> None:
        super().__init__()
        if (Pi is None or R is None) and out_channels % in_channels:
            raise ValueError(
                f"a depthwise transfer needs out_channels to be a multiple of in_channels, got "
                f"{in_channels} -> {out_channels}; valid out_channels: multiples of {in_channels}")
        pad = kernel_size // 2
        self.A_fine, self.A_coarse = A_fine, A_coarse
        self.Pi = Pi if Pi is not None else nn.Conv2d(in_channels, out_channels, kernel_size, stride, pad,
                                                      groups=in_channels, bias=False)
        self.R = R if R is not None else nn.Conv2d(in_channels, out_channels, kernel_size, stride, pad,
                                                   groups=in_channels, bias=False)

    def forward(self, f: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u_c = self.Pi(u)
        f_c = self.R(f - self.A_fine(u)) + self.A_coarse(u_c)
        return f_c, u_c


# --------------------------------------------------------------------------- MGiaD
class SiCCycle(nn.Module):
    """Alg. 2: the in-channel V-cycle SiC(f_κ, u_κ) from channel level κ down to the coarsest level K.

    Written recursively like the algorithm: this module holds level κ (Â_κ, B̂_κ, its pre- and post-
    smoothing steps, R̂, Π̂, P̂) and, unless κ = K, ``coarse``, the SiC of level κ+1.

    Args:
        channels: width c of the resolution level (finest channel level).
        coarse_channels: c_K; halve while c_κ/2 >= c_K (the coarsest level is fully coupled).
        group_size: gs of Â_κ, B̂_κ on every level but the coarsest; ``None``: dense everywhere (a
            ``conv_fn`` may still decide the grouping itself).
        pre_smooth, post_smooth: η_pre, η_post.
        conv_fn: conv factory (see module docstring); roles "A", "B", "R", "Pi", "P".
        transfer_group_size: fine channels per group of R̂, Π̂ (and of P̂'s outputs).
        fas_correction: u + P̂(û - Π̂u) instead of the paper's u + P̂(û).
        shared: another cycle whose convs (Â, B̂, R̂, Π̂, P̂) this one reuses; only the BNs are new.
        level: κ of this (sub)cycle, 0-based; passed to ``conv_fn``.
    """

    def __init__(self, channels: int, coarse_channels: int, group_size: Optional[int] = None,
                 pre_smooth: int = 1, post_smooth: int = 1, conv_fn: Optional[ConvFn] = None,
                 transfer_group_size: int = 2, kernel_size: int = 3, fas_correction: bool = False,
                 shared: Optional["SiCCycle"] = None, level: int = 0) -> None:
        super().__init__()
        widths = channel_levels(channels, coarse_channels)
        if level == 0:
            _check_sic_args(widths, group_size, pre_smooth, post_smooth, transfer_group_size)
        if shared is not None and shared.widths != widths:
            raise ValueError(f"shared cycle has channel levels {shared.widths}, this one {widths}")
        self.widths = widths
        self.fas_correction = fas_correction
        make = conv_fn or default_conv
        coarsest = len(widths) == 1
        groups = 1 if (coarsest or group_size is None) else channels // group_size
        c, c2, tg = channels, channels // 2, channels // transfer_group_size
        self.A = shared.A if shared is not None else make("A", level, c, c, kernel_size, groups)
        self.B = shared.B if shared is not None else make("B", level, c, c, kernel_size, groups)
        self.pre = nn.ModuleList(MgNetSmoother(self.A, self.B, c) for _ in range(pre_smooth))
        self.post = nn.ModuleList(MgNetSmoother(self.A, self.B, c) for _ in range(post_smooth))
        self.R = self.Pi = self.P = self.coarse = None  # the coarsest level has no transfers
        if not coarsest:
            if shared is not None:
                self.R, self.Pi, self.P = shared.R, shared.Pi, shared.P
            else:
                self.R = make("R", level, c, c2, 1, tg)
                self.Pi = make("Pi", level, c, c2, 1, tg)
                self.P = make("P", level, c2, c, 1, tg)
            self.coarse = SiCCycle(c2, coarse_channels, group_size, pre_smooth, post_smooth, conv_fn,
                                   transfer_group_size, kernel_size, fas_correction,
                                   None if shared is None else shared.coarse, level + 1)

    def forward(self, f: torch.Tensor, u: Optional[torch.Tensor] = None) -> torch.Tensor:
        if u is None and len(self.pre) == 0:
            u = torch.zeros_like(f)
        for step in self.pre:  # lines 1-2
            u = step(f, u)
        assert u is not None
        if self.coarse is not None:
            u_c = self.Pi(u)  # line 4
            f_c = self.R(f - self.A(u)) + self.coarse.A(u_c)  # line 5
            u_hat = self.coarse(f_c, u_c)  # line 6
            u = u + self.P(u_hat - u_c if self.fas_correction else u_hat)  # line 7
        for step in self.post:  # lines 8-9
            u = step(f, u)
        return u


def _check_sic_args(widths: list[int], group_size: Optional[int], pre: int, post: int, tgs: int) -> None:
    _check_count("pre_smooth", pre, 0)
    _check_count("post_smooth", post, 0)
    if pre + post < 1:
        raise ValueError("pre_smooth + post_smooth must be >= 1 (the coarsest level needs a smoothing step)")
    if group_size is not None:
        _check_count("group_size", group_size, 1)
        if any(c % group_size for c in widths[:-1]):
            valid = ", ".join(map(str, valid_group_sizes(widths)))
            raise ValueError(f"group_size {group_size} does not divide every grouped channel level "
                             f"{widths[:-1]}; valid group sizes: {valid}")
    if len(widths) > 1 and (tgs < 2 or tgs % 2 or any(c % tgs for c in widths[:-1])):
        valid = ", ".join(str(d) for d in valid_group_sizes(widths) if d % 2 == 0)
        raise ValueError(f"transfer_group_size {tgs} must be even and divide every grouped channel level "
                         f"{widths[:-1]}; valid transfer group sizes: {valid}")


class MGiaDSmoother(nn.Module):
    """An MGiaD resolution level: ``cycles`` SiC cycles (Alg. 3 line 3: one) sharing every conv.

    ``A`` is the fine channel level's operator Â_1, used by the resolution transfers (f - A u, A'(u')).
    Arguments as for :class:`SiCCycle`.
    """

    def __init__(self, channels: int, coarse_channels: int, group_size: Optional[int] = None,
                 pre_smooth: int = 1, post_smooth: int = 1, cycles: int = 1, conv_fn: Optional[ConvFn] = None,
                 transfer_group_size: int = 2, kernel_size: int = 3, fas_correction: bool = False) -> None:
        super().__init__()
        _check_count("cycles", cycles, 1)
        first = SiCCycle(channels, coarse_channels, group_size, pre_smooth, post_smooth, conv_fn,
                         transfer_group_size, kernel_size, fas_correction)
        rest = [SiCCycle(channels, coarse_channels, group_size, pre_smooth, post_smooth,
                         fas_correction=fas_correction, shared=first) for _ in range(cycles - 1)]
        self.channels = channels
        self.widths = first.widths
        self.cycles = nn.ModuleList([first, *rest])
        self.A = first.A

    def forward(self, f: torch.Tensor, u: Optional[torch.Tensor] = None) -> torch.Tensor:
        for cycle in self.cycles:
            u = cycle(f, u)
        assert u is not None
        return u
