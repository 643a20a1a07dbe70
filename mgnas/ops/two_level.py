"""Two-level group convolution, GC-2L (Lee, Park & Lee, "Two-level group convolution").

A group conv with N groups is the one-level block-Jacobi approximation of a dense conv
(paper Eq. 2.9-2.11). GC-2L adds a coarse correction that couples the groups (Eq. 3.5)::

    A_2L = Rbar_0^T R_0 + A_gp

- ``R_0`` (Eq. 3.3): channel k of the coarse image is a d0 x d0 conv of the k-th input group to ONE
  channel, i.e. ``Conv(C_in -> N, kernel d0, groups=N)``. We take d0 = d (same kernel and stride as
  the group conv), the paper's choice in §3.2.
- ``Rbar_0^T`` (Eq. 3.4): a full 1x1 conv from the N coarse channels to all C_out outputs
  (``P0 = Conv1x1(N -> C_out)``); it replaces the prototype's ``Rtilde_0^T A_0`` (Eq. 3.2).

Implementation (§3.2): because d0 = d, ``A_k`` and ``R_0|V_k`` share their input group and are
fused into one conv with ``C_out/N + 1`` outputs per group (``[C_d]_{(m/N+1) x n/N}``). Here that is
ONE ``nn.Conv2d(C_in, N*(C_out/N + 1), groups=N)``; in every group the last output channel is the
coarse channel. A view splits the result into the GC output and the N coarse channels (no Python
loop over groups), P0 maps the coarse channels to C_out and its output is added.

Parameters (§3.2): ``d^2 m n / N`` (group conv) ``+ d^2 n`` (R0) ``+ m N`` (P0), for m = C_out,
n = C_in; plus ``m`` with ``bias=True``.

Departures from the paper:
- The paper distributes the N groups over N processors and gathers the coarse channels with a
  collective; this module runs on one device (the groups are the groups of one grouped conv).
- ``bias=True`` adds one output bias (stored on P0); the paper's convs have no bias.
- ``coarse=False`` drops R0 and P0: the module is then exactly ``nn.Conv2d(groups=N)`` (the
  paper's GC baseline), kept so one module type covers both rows of its tables.
"""

from typing import Optional

import torch
from torch import nn

from ._checks import check_groups, check_padding, check_positive

__all__ = ["TwoLevelGroupConv2d"]



class TwoLevelGroupConv2d(nn.Module):
    """Group conv with N groups plus the fused coarse branch: ``GC(x) + P0(R0(x))`` (Eq. 3.5).

    Args:
        in_channels, out_channels: n and m; both must be divisible by ``groups``.
        kernel_size, stride, padding: of the group conv and of R0 (d0 = d); ``padding=None`` is
            "same" padding ``(k - 1) // 2``.
        groups: N, the number of groups (and of coarse channels).
        bias: one bias per output channel (not in the paper).
        coarse: ``False`` builds the plain group conv (no R0, no P0).
    """

    __jit_unused_properties__ = ["gc_weight", "r0_weight", "p0_weight"]

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: Optional[int] = None,
        groups: int = 1,
        bias: bool = False,
        coarse: bool = True,
    ) -> None:
        super().__init__()
        check_positive(in_channels=in_channels, out_channels=out_channels, stride=stride)
        check_groups(groups, in_channels, out_channels)
        pad = check_padding(kernel_size, padding, 1)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = pad
        self.groups = groups
        self.coarse = coarse
        self.per_group = out_channels // groups  # m / N outputs of A_k per group
        fused_out = groups * (self.per_group + 1) if coarse else out_channels
        # A_k and R_0|V_k fused: per group [C_d]_{(m/N + 1) x n/N}; the last row is R_0's (§3.2)
        self.conv = nn.Conv2d(in_channels, fused_out, kernel_size, stride, pad, groups=groups,
                              bias=bias and not coarse)
        # Rbar_0^T (Eq. 3.4): full 1x1 conv N -> m; carries the output bias when there is one
        self.p0 = nn.Conv2d(groups, out_channels, 1, bias=bias) if coarse else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        p0 = self.p0
        if p0 is None:
            return y
        n, k = self.groups, self.per_group
        y = y.unflatten(1, (n, k + 1))  # (B, N, m/N + 1, H, W): a view, channels grouped
        coarse = p0(y[:, :, k])  # R_0 x has N channels (one per group); P0 -> (B, m, H, W)
        return (coarse.unflatten(1, (n, k)) + y[:, :, :k]).flatten(1, 2)

    # ------------------------------------------------------------------ unfused views of the weights
    def _fused_weight(self) -> torch.Tensor:
        w = self.conv.weight  # (N (m/N + 1), n/N, d, d)
        return w.view(self.groups, self.per_group + 1, *w.shape[1:])

    @property
    def gc_weight(self) -> torch.Tensor:
        """Weight of the group conv A_gp, shape ``(m, n/N, d, d)`` (as ``nn.Conv2d(groups=N)``)."""
        if not self.coarse:
            return self.conv.weight
        w = self._fused_weight()[:, : self.per_group]
        return w.reshape(self.out_channels, *w.shape[2:])

    @property
    def r0_weight(self) -> Optional[torch.Tensor]:
        """Weight of R0 (Eq. 3.3) as ``nn.Conv2d(n, N, d, groups=N)``: shape ``(N, n/N, d, d)``."""
        if not self.coarse:
            return None
        return self._fused_weight()[:, self.per_group]

    @property
    def p0_weight(self) -> Optional[torch.Tensor]:
        """Weight of P0 = Rbar_0^T (Eq. 3.4) as ``nn.Conv2d(N, m, 1)``: shape ``(m, N, 1, 1)``."""
        return None if self.p0 is None else self.p0.weight

    @torch.no_grad()
    def load_unfused(self, gc_weight: torch.Tensor, r0_weight: Optional[torch.Tensor] = None,
                     p0_weight: Optional[torch.Tensor] = None) -> None:
        """Set the weights from separate GC / R0 / P0 weights (shapes as the properties return)."""
        if not self.coarse:
            self.conv.weight.copy_(gc_weight)
            return
        if r0_weight is None or p0_weight is None:
            raise ValueError("a two-level conv with coarse=True needs r0_weight and p0_weight")
        w = self._fused_weight()
        w[:, : self.per_group].copy_(gc_weight.reshape(self.groups, self.per_group, *gc_weight.shape[1:]))
        w[:, self.per_group].copy_(r0_weight)
        self.p0.weight.copy_(p0_weight)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, groups={self.groups}, coarse={self.coarse}")
