"""Grouped convolution with channel permutations, and the ShuffleNet channel shuffle.

:class:`GroupConv2d` is the static form of a learned grouping: DGConv (Zhang et al., Eq. 3-7) with
unsorted gates groups *non-adjacent* channels, which a grouped ``nn.Conv2d`` (adjacent channels per
group, Eq. 2) reproduces exactly once the input and output channels are permuted.
:func:`channel_shuffle` is the ShuffleNet operation (Zhang et al. 2018): reshape the channels to
``(groups, C / groups)``, transpose, flatten.
"""

from collections.abc import Sequence
from typing import Any, Optional

import torch
from torch import Tensor, nn

from ..spec import divisors
from ._channels import gather_channels
from ._checks import check_padding, check_positive


def _as_perm(name: str, perm: Optional[Sequence[int] | Tensor], n: int) -> Tensor:
    """Validate ``perm`` as a permutation of ``range(n)`` and return it as a CPU int64 tensor."""
    if perm is None:
        return torch.arange(n, device="cpu")
    if isinstance(perm, Tensor) and perm.is_meta:  # shapes only (a model built on the meta device)
        return torch.arange(n, device="cpu")
    idx = torch.as_tensor(perm, device="cpu") if not isinstance(perm, Tensor) else perm.detach().cpu()
    if idx.dim() != 1 or idx.numel() != n:
        raise ValueError(f"{name} must be a permutation of range({n}) (length {n}), got shape {tuple(idx.shape)}")
    if idx.is_floating_point() or idx.is_complex() or idx.dtype == torch.bool:
        raise ValueError(f"{name} must hold integers, got dtype {idx.dtype}")
    idx = idx.to(torch.int64)
    if int(idx.min()) < 0 or int(idx.max()) >= n:
        raise ValueError(f"{name} must be a permutation of range({n}); got values {int(idx.min())}..{int(idx.max())}")
    missing = torch.nonzero(torch.bincount(idx, minlength=n) == 0).flatten()
    if missing.numel():
        raise ValueError(
            f"{name} must be a permutation of range({n}) (every index exactly once); "
            f"{missing.numel()} missing, e.g. {missing[:5].tolist()}"
        )
    return idx


def shuffle_index(channels: int, groups: int) -> Tensor:
    """Gather index σ of the channel shuffle: ``channel_shuffle(x, g) == x[:, σ]``.

    Output channel ``c`` reads input channel ``(c % g) * (C / g) + c // g``.
    """
    c = torch.arange(channels)
    return (c % groups) * (channels // groups) + c // groups


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """ShuffleNet channel shuffle of an ``(N, C, H, W)`` tensor: view as ``(N, g, C/g, H, W)``,
    swap the two channel axes, flatten back. ``groups`` must divide ``C``."""
    n, c, h, w = x.shape
    if c % groups != 0:
        raise ValueError(f"channel_shuffle: groups={groups} does not divide {c} channels")
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class ChannelShuffle(nn.Module):
    """Module form of :func:`channel_shuffle` with a fixed number of ``groups``."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        check_positive(groups=groups)
        self.groups = groups

    def forward(self, x: Tensor) -> Tensor:
        return channel_shuffle(x, self.groups)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class GroupConv2d(nn.Module):
    """Grouped convolution with optional channel permutations and an optional channel shuffle.

    Semantics, for input ``x`` of shape ``(N, C_in, H, W)``::

        y   = conv(x[:, in_perm])        # conv = nn.Conv2d(C_in, C_out, k, groups=groups), Eq. 2
        out = y[:, out_perm]             # module output channel j is y[:, out_perm[j]]
        out = channel_shuffle(out, shuffle)   # only if shuffle > 0 (ShuffleNet reshape/transpose)

    ``in_perm`` / ``out_perm`` are permutations of ``range(C_in)`` / ``range(C_out)``; ``None`` (or the
    identity) means no permutation, and identity permutations cost nothing in the forward. The grouped
    conv is the submodule ``conv`` (so ``.conv.weight`` is ``(C_out, C_in / groups, k, k)``); the
    permutations are persistent ``int64`` buffers ``in_perm`` / ``out_perm`` (saved with the
    ``state_dict``; the identity when not given). The forward runs derived gathers: identity
    permutations are skipped, and the output permutation and the shuffle are fused into one gather.
    ``padding=None`` means same padding ``(k - 1) // 2 * dilation``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: Optional[int] = None,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = False,
        in_perm: Optional[Sequence[int] | Tensor] = None,
        out_perm: Optional[Sequence[int] | Tensor] = None,
        shuffle: int = 0,
    ) -> None:
        super().__init__()
        check_positive(in_channels=in_channels, out_channels=out_channels, stride=stride, groups=groups)
        pad = check_padding(kernel_size, padding, dilation)
        for side, c in (("in_channels", in_channels), ("out_channels", out_channels)):
            if c % groups:
                valid = [d for d in divisors(in_channels) if out_channels % d == 0]
                raise ValueError(
                    f"groups={groups} does not divide {side}={c}; valid group counts for "
                    f"{in_channels}->{out_channels}: {', '.join(map(str, valid))}"
                )
        if isinstance(shuffle, bool) or not isinstance(shuffle, int) or shuffle < 0:
            raise ValueError(f"shuffle must be a non-negative integer (0 = off), got {shuffle!r}")
        if shuffle and out_channels % shuffle:
            raise ValueError(
                f"shuffle={shuffle} does not divide out_channels={out_channels}; valid values: "
                f"0 (off), {', '.join(map(str, divisors(out_channels)))}"
            )
        self.in_channels, self.out_channels, self.groups, self.shuffle = in_channels, out_channels, groups, shuffle
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, pad, dilation, groups=groups, bias=bias)
        device = self.conv.weight.device  # the meta device too: permutations are validated on the CPU
        self.register_buffer("in_perm", _as_perm("in_perm", in_perm, in_channels).to(device))
        self.register_buffer("out_perm", _as_perm("out_perm", out_perm, out_channels).to(device))
        # The gathers the forward actually runs (None = identity, skipped); derived, not saved.
        self.register_buffer("in_index", None, persistent=False)
        self.register_buffer("out_index", None, persistent=False)
        self._refresh()

    def _refresh(self) -> None:
        """Derive the forward gathers from ``in_perm``, ``out_perm`` and ``shuffle``.

        Identity permutations become None (no work); the output permutation and the shuffle are fused
        into one gather ``out = y[:, out_index]`` with ``out_index = out_perm[σ]`` (σ: :func:`shuffle_index`).
        """
        device = self.in_perm.device
        in_perm = _as_perm("in_perm", self.in_perm, self.in_channels)
        out_perm = _as_perm("out_perm", self.out_perm, self.out_channels)
        if self.shuffle > 1:
            out_perm = out_perm[shuffle_index(self.out_channels, self.shuffle)]
        identity_in = torch.arange(self.in_channels, device="cpu")
        identity_out = torch.arange(self.out_channels, device="cpu")
        self.in_index = None if torch.equal(in_perm, identity_in) else in_perm.to(device)
        self.out_index = None if torch.equal(out_perm, identity_out) else out_perm.to(device)

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._refresh()  # the loaded permutations replace the built ones

    def forward(self, x: Tensor) -> Tensor:
        if self.in_index is not None:
            x = gather_channels(x, self.in_index)
        y = self.conv(x)
        if self.out_index is not None:
            y = gather_channels(y, self.out_index)
        return y

    def extra_repr(self) -> str:
        parts = [f"groups={self.groups}"]
        if self.in_perm.is_meta:
            ident_in = ident_out = True
        else:
            ident_in = torch.equal(self.in_perm.cpu(), torch.arange(self.in_channels, device="cpu"))
            ident_out = torch.equal(self.out_perm.cpu(), torch.arange(self.out_channels, device="cpu"))
        if not ident_in:
            parts.append("in_perm=True")
        if not ident_out:
            parts.append("out_perm=True")
        if self.shuffle:
            parts.append(f"shuffle={self.shuffle}")
        return ", ".join(parts)
