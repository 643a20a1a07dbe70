import pytest
import torch
from torch import nn

from mgnas.models import create_model
from mgnas.profile import count, parse_input_size


def test_grouped_conv_counted_as_grouped():
    dense = count(nn.Conv2d(64, 64, 3, padding=1, bias=False), "64x8x8")
    grouped = count(nn.Conv2d(64, 64, 3, padding=1, groups=8, bias=False), "64x8x8")
    assert dense.macs == 64 * 64 * 9 * 64
    assert grouped.macs * 8 == dense.macs
    assert grouped.params * 8 == dense.params


def test_shared_module_params_once_macs_every_call():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 1, bias=False)

        def forward(self, x):
            return self.conv(self.conv(x))

    r = count(Twice(), "4x2x2")
    assert r.params == 16
    assert r.macs == 2 * 16 * 4
    (layer,) = r.layers
    assert layer.calls == 2 and layer.macs == r.macs and layer.params == 16


def test_resnet_counts_match_papers():
    r = count(create_model("resnet56_cifar"), "3x32x32")
    assert r.params == 853_018
    assert abs(r.macs - 125e6) / 125e6 < 0.01  # MGIC Table 2: 125M FLOPs (multiply-adds)
    r = count(create_model("resnext50_32x4d"), (3, 224, 224))
    assert r.params == 25_028_904
    assert abs(r.macs - 4.2e9) / 4.2e9 < 0.02
    assert sum(layer.params for layer in r.layers) == r.params
    assert sum(layer.macs for layer in r.layers) == r.macs


def test_count_restores_training_mode():
    m = create_model("resnet20_cifar").train()
    count(m, "3x32x32")
    assert m.training


@pytest.mark.parametrize("bad", ["3x224", "axbxc", "0x3x3", ""])
def test_bad_input_size(bad):
    with pytest.raises(ValueError, match="CxHxW"):
        parse_input_size(bad)


def test_input_size_forms():
    assert parse_input_size("3x32x32") == (3, 32, 32)
    assert parse_input_size([1, 8, 8]) == (1, 8, 8)
    assert count(nn.Flatten(), "1x2x2").macs == 0
    assert torch.is_grad_enabled()


def test_conv_rows_show_kind_and_groups():
    from mgnas.ops import DGConv2d, TwoLevelGroupConv2d
    from mgnas.ops.group import GroupConv2d
    from mgnas.profile._count import conv_kind

    assert conv_kind(nn.Conv2d(8, 8, 3)) == ("dense", 1)
    assert conv_kind(nn.Conv2d(8, 16, 3, groups=4)) == ("group g=4", 4)
    assert conv_kind(nn.Conv2d(8, 8, 3, groups=8)) == ("depthwise g=8", 8)
    perm = list(range(8))[::-1]
    assert conv_kind(GroupConv2d(8, 8, 1, groups=2, in_perm=perm)) == ("group g=2 +perm", 2)
    assert conv_kind(TwoLevelGroupConv2d(8, 8, 3, groups=4)) == ("two_level g=4", 4)
    dg = DGConv2d(8, 8, 3)
    dg.set_gates([0, 1, 0])
    assert conv_kind(dg) == ("dgconv g=4 (factors 2×2×2)", 4)
    assert conv_kind(nn.BatchNorm2d(8)) == ("", None)
    rows = count(create_model("mgic_resnet56"), "3x32x32").layers
    assert any(r.kind.startswith("mgic restriction g=") for r in rows)
