"""GroupConv2d / channel_shuffle: permutation semantics, shuffle, state_dict, errors, TorchScript."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mgnas.ops import ChannelShuffle, GroupConv2d, channel_shuffle, create_conv2d


def _reference(m: GroupConv2d, x: torch.Tensor, in_perm, out_perm, shuffle: int) -> torch.Tensor:
    """The documented semantics, written out with plain indexing and the ShuffleNet reshape."""
    c = m.conv
    y = F.conv2d(x[:, in_perm], c.weight, c.bias, c.stride, c.padding, c.dilation, c.groups)
    y = y[:, out_perm]
    if shuffle:
        n, ch, h, w = y.shape
        y = y.reshape(n, shuffle, ch // shuffle, h, w).transpose(1, 2).reshape(n, ch, h, w)
    return y


@pytest.mark.parametrize("shuffle", [0, 3])
@pytest.mark.parametrize("bias", [False, True])
def test_perm_semantics(shuffle: int, bias: bool) -> None:
    in_perm, out_perm = torch.randperm(8), torch.randperm(12)
    m = GroupConv2d(8, 12, 3, groups=4, bias=bias, in_perm=in_perm, out_perm=out_perm, shuffle=shuffle)
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(m(x), _reference(m, x, in_perm, out_perm, shuffle))
    assert m.conv.weight.shape == (12, 2, 3, 3) and m.conv.groups == 4


def test_output_channel_j_reads_out_perm_j() -> None:
    # 1x1 depthwise conv with weight = channel index: output j must be y[:, out_perm[j]]
    out_perm = [2, 0, 3, 1]
    m = GroupConv2d(4, 4, 1, groups=4, out_perm=out_perm)
    with torch.no_grad():
        m.conv.weight.copy_(torch.arange(4.0).view(4, 1, 1, 1))
    out = m(torch.ones(1, 4, 1, 1)).flatten().tolist()
    assert out == [2.0, 0.0, 3.0, 1.0]


def test_in_perm_reads_x_in_perm() -> None:
    m = GroupConv2d(4, 4, 1, groups=4, in_perm=[3, 2, 1, 0])
    with torch.no_grad():
        m.conv.weight.fill_(1.0)
    x = torch.arange(4.0).view(1, 4, 1, 1)
    assert m(x).flatten().tolist() == [3.0, 2.0, 1.0, 0.0]


def test_channel_shuffle_matches_shufflenet() -> None:
    x = torch.arange(12.0).view(1, 12, 1, 1)
    # (g=3, 4) -> transpose -> flatten: 0,4,8,1,5,9,...
    assert channel_shuffle(x, 3).flatten().tolist() == [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]
    y = torch.randn(2, 12, 3, 3)
    torch.testing.assert_close(ChannelShuffle(4)(y), y.view(2, 4, 3, 3, 3).transpose(1, 2).reshape(2, 12, 3, 3))
    with pytest.raises(ValueError, match="does not divide 12"):
        channel_shuffle(y, 5)


def test_identity_perms_are_skipped_and_match_plain_conv() -> None:
    m = GroupConv2d(8, 8, 3, groups=2, in_perm=list(range(8)), out_perm=None)
    assert m.in_index is None and m.out_index is None
    ref = nn.Conv2d(8, 8, 3, 1, 1, groups=2, bias=False)
    ref.weight.data.copy_(m.conv.weight.data)
    x = torch.randn(2, 8, 6, 6)
    torch.testing.assert_close(m(x), ref(x))


def test_state_dict_round_trip() -> None:
    kw = dict(groups=4, bias=True, shuffle=2)
    m = GroupConv2d(8, 12, 3, in_perm=torch.randperm(8), out_perm=torch.randperm(12), **kw)
    sd = m.state_dict()
    assert {"in_perm", "out_perm", "conv.weight", "conv.bias"} <= set(sd)
    fresh = GroupConv2d(8, 12, 3, **kw)  # built with identity perms: the saved ones must be adopted
    fresh.load_state_dict(sd)
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(fresh(x), m(x))
    assert torch.equal(fresh.in_perm, m.in_perm)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_torchscript_and_export() -> None:
    m = GroupConv2d(8, 12, 3, groups=4, in_perm=torch.randperm(8), out_perm=torch.randperm(12), shuffle=3)
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(torch.jit.script(m)(x), m(x))
    torch.testing.assert_close(torch.export.export(m, (x,)).module()(x), m(x))


def test_padding_none_is_same_and_stride() -> None:
    m = GroupConv2d(4, 4, 5, stride=2, dilation=2, groups=2)
    assert m.conv.padding == (4, 4)
    assert m(torch.randn(1, 4, 9, 9)).shape == (1, 4, 5, 5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(groups=3), r"groups=3 does not divide in_channels=8; valid group counts for 8->12: 1, 2, 4"),
        (dict(groups=8), r"groups=8 does not divide out_channels=12"),
        (dict(in_perm=[0, 0, 1, 2, 3, 4, 5, 6]), r"in_perm must be a permutation of range\(8\).*missing, e.g. \[7\]"),
        (dict(out_perm=list(range(11))), r"out_perm must be a permutation of range\(12\) \(length 12\)"),
        (dict(out_perm=list(range(1, 13))), r"out_perm must be a permutation of range\(12\); got values 1..12"),
        (dict(kernel_size=0), r"kernel_size must be a positive integer, got 0"),
        (dict(padding=3), r"padding 3 exceeds the kernel's reach 2"),
        (dict(shuffle=5), r"shuffle=5 does not divide out_channels=12"),
    ],
)
def test_bad_input(kwargs: dict, message: str) -> None:
    args = dict(in_channels=8, out_channels=12, kernel_size=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        GroupConv2d(**args)


def test_factory_builds_group_conv() -> None:
    m = create_conv2d("group", 8, 8, 3, groups=4, in_perm=list(reversed(range(8))))
    assert isinstance(m, GroupConv2d) and m.conv.groups == 4
    assert isinstance(create_conv2d("group", 8, 8, 3, groups=4), nn.Conv2d)


def test_builds_on_the_meta_device_for_counting():
    """Large models are counted on the meta device (no weights allocated); permuted/shuffled convs too."""
    from mgnas.ops import GroupConv2d

    with torch.device("meta"):
        m = GroupConv2d(8, 8, 3, groups=2, in_perm=list(range(8))[::-1], shuffle=2)
        y = m(torch.randn(1, 8, 4, 4))
    assert y.is_meta and y.shape == (1, 8, 4, 4)
    assert sum(p.numel() for p in m.parameters()) == 8 * 4 * 9


def test_permuted_group_conv_traces_and_exports_with_any_batch_size() -> None:
    """Eager mode gathers whole H·W planes with a batch-size dependent row index (``gather_channels``);
    traced, scripted, FX-traced and exported forms keep ``index_select``, so they take any batch size."""
    torch.manual_seed(0)
    m = GroupConv2d(8, 12, 3, 1, 1, 1, groups=4, in_perm=torch.randperm(8), out_perm=torch.randperm(12)).eval()
    x2, x5 = torch.randn(2, 8, 5, 5), torch.randn(5, 8, 5, 5)
    ref = torch.conv2d(x5[:, m.in_perm], m.conv.weight, m.conv.bias, 1, 1, 1, 4)[:, m.out_index]
    with torch.no_grad():
        assert torch.allclose(m(x5), ref, atol=1e-6)
        traced = torch.jit.trace(m, x2)
        assert torch.allclose(traced(x5), ref, atol=1e-6)
        assert torch.allclose(torch.jit.script(m)(x5), ref, atol=1e-6)
        assert torch.allclose(torch.fx.symbolic_trace(m)(x5), ref, atol=1e-6)
        program = torch.export.export(m, (x2,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},))
        assert torch.allclose(program.module()(x5), ref, atol=1e-6)
