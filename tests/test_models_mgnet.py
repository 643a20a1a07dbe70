"""MgNet / MGiaD networks (families "mgnet", "mgiad"): paper counts, spec structure, spec errors."""

import pytest
import torch
from torch import nn

from mgnas.models import build_model, create_model, model_spec
from mgnas.ops import DGConv2d, MgNetTransfer
from mgnas.spec import ArchSpec, SpecError


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- paper counts
def test_mgnet_counts_match_table_1():
    four, three = _params(create_model("mgnet_cifar", levels=4)), _params(create_model("mgnet_cifar", levels=3))
    assert four == pytest.approx(2_751_000, rel=0.01) and three == pytest.approx(101_000, rel=0.01)
    # the authors' code counts a first-level Π and R (2·9·c_1) that it never applies; nothing else differs
    assert four + 2 * 9 * 64 == 2_750_666
    assert three + 2 * 9 * 16 == 100_794


def test_mgnet_smoothings_only_add_batchnorms():
    two, four = _params(create_model("mgnet_cifar", levels=3)), _params(create_model("mgnet_cifar", levels=3,
                                                                                        smoothings=4))
    assert four - two == 2 * 4 * (16 + 32 + 64)


# (c_K, gs, λ) -> paper weights (Table II)
TABLE_II = {(64, 4, 1): 393_000, (64, 8, 1): 458_000, (64, 64, 1): 1_361_000, (64, 4, 3): 1_020_000,
            (64, 8, 3): 1_269_000}


@pytest.mark.parametrize(("c_k", "gs", "lam"), list(TABLE_II))
def test_mgiad_counts_match_table_2(c_k, gs, lam):
    model = create_model("mgiad_cifar", coarse_channels=c_k, group_size=gs, channel_scale=lam)
    assert _params(model) == pytest.approx(TABLE_II[c_k, gs, lam], rel=0.04)


def test_post_smoothing_adds_only_batchnorms_table_8():
    counts = [_params(create_model("mgiad_cifar", group_size=4, channel_scale=3, post_smooth=p)) for p in (1, 2, 3)]
    # widths 192/384/768/768 with channel levels down to 96: Σ = 3840 channels, 2 BNs per extra step
    assert counts[1] - counts[0] == counts[2] - counts[1] == 4 * 3840
    assert counts[1] == pytest.approx(1_035_000, rel=0.04) and counts[2] == pytest.approx(1_051_000, rel=0.04)


def test_cifar100_head_table_5():
    c10, c100 = _params(create_model("mgiad_cifar", group_size=8)), _params(create_model("mgiad_cifar",
                                                                                           group_size=8,
                                                                                           num_classes=100))
    assert c100 - c10 == 90 * 257 and c100 == pytest.approx(481_000, rel=0.04)


# --------------------------------------------------------------------------- forward / structure
@pytest.mark.parametrize(("name", "kwargs"), [
    ("mgnet_cifar", {"levels": 3}), ("mgnet_cifar", {"group_size": 8}),
    ("mgiad_cifar", {"coarse_channels": 8, "levels": 3, "group_size": 4}),
    ("mgiad_cifar", {"coarse_channels": 32, "group_size": 8, "post_smooth": 2}),
])
def test_forward_backward(name, kwargs):
    model = create_model(name, **kwargs)
    y = model(torch.randn(2, 3, 32, 32))
    assert y.shape == (2, 10)
    y.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_spec_records_the_per_level_structure():
    spec = model_spec("mgiad_cifar", coarse_channels=32, group_size=8, channel_scale=2, post_smooth=3)
    assert spec.family == "mgiad" and len(spec.stages) == 4
    first, last = spec.stages[0]["blocks"][0], spec.stages[3]["blocks"][0]
    assert first["Pi"] is None and first["R"] is None
    assert last["Pi"]["groups"] == 512 and last["Pi"]["stride"] == 2 and last["post_smooth"] == 3
    widths = [lv["A"]["in_channels"] for lv in last["levels"]]
    assert widths == [512, 256, 128, 64, 32]
    assert [lv["A"].get("groups", 1) for lv in last["levels"]] == [64, 32, 16, 8, 1]
    assert spec.get("stages.3.0.levels.4.B.kind") == "dense"
    assert "R" not in last["levels"][-1] and last["levels"][0]["P"]["in_channels"] == 256
    assert spec.provenance["model_kwargs"]["channel_scale"] == 2
    assert ArchSpec.from_dict(spec.to_dict()) == spec


def test_transfers_reuse_the_neighbouring_levels_operators():
    model = create_model("mgiad_cifar")
    transfers = [s.transfer for s in model.stages]
    assert transfers[0] is None and all(isinstance(t, MgNetTransfer) for t in transfers[1:])
    for prev, stage in zip(model.stages, model.stages[1:]):
        assert stage.transfer.A_fine is prev.smoother.A and stage.transfer.A_coarse is stage.smoother.A


def test_frozen_groups_and_dgconv_supernet_come_from_the_spec():
    spec = model_spec("mgiad_cifar", coarse_channels=32)
    frozen = build_model(spec.with_values({"stages.3.0.levels.1.A.groups": 8}))
    assert frozen.stages[3].smoother.A.groups == 64 and frozen.stages[3].smoother.cycles[0].coarse.A.groups == 8
    grouped = {p: c.replace(kind="dgconv", groups=1).to_dict() for p, c in spec.convs()
               if p.endswith((".A", ".B")) and c.groups > 1}
    supernet = build_model(spec.with_values(grouped))
    assert sum(isinstance(m, DGConv2d) for m in supernet.modules()) == len(grouped) == 2 * (1 + 2 + 3 + 3)
    supernet(torch.randn(2, 3, 32, 32)).sum().backward()


def test_mgnet_exports():
    model = create_model("mgiad_cifar", coarse_channels=8, levels=3).eval()
    x = torch.randn(1, 3, 32, 32)
    program = torch.export.export(model, (x,))
    assert torch.allclose(program.module()(x), model(x), atol=1e-5)


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(("name", "kwargs", "message"), [
    ("mgiad_cifar", {"group_size": 3}, r"group_size 3 does not divide .* valid group sizes: 1, 2, 4, 8, 16, 32, 64$"),
    ("mgiad_cifar", {"coarse_channels": 128}, r"coarse_channels 128 .* valid coarse_channels: 1\.\.64"),
    ("mgiad_cifar", {"coarse_channels": 32, "levels": 3}, r"valid coarse_channels: 1\.\.16"),
    ("mgiad_cifar", {"levels": 5}, "levels 5 is not supported; valid levels: 3"),
    ("mgiad_cifar", {"channel_scale": 0}, "channel_scale must be an integer >= 1"),
    ("mgiad_cifar", {"post_smooth": -1}, "post_smooth must be an integer >= 0"),
    ("mgnet_cifar", {"group_size": 48}, "group_size 48 does not divide every width .* valid group sizes: 1, 2, 4"),
    ("mgnet_cifar", {"levels": 2}, "valid levels: 3"),
    ("mgnet_cifar", {"smoothings": 0}, "smoothings must be an integer >= 1"),
])
def test_impossible_arguments_are_value_errors(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        model_spec(name, **kwargs)


def _edit(spec: ArchSpec, fn) -> dict:
    data = spec.to_dict()
    fn(data)
    return data


@pytest.mark.parametrize(("edit", "path"), [
    (lambda d: d["stages"][1]["blocks"][0].update(extra=1), "stages[1].blocks[0].extra"),
    (lambda d: d["stages"][1]["blocks"][0]["levels"][0].update(Q=1), "stages[1].blocks[0].levels[0].Q"),
    (lambda d: d["stages"][1]["blocks"][0]["levels"][0].pop("P"), "stages[1].blocks[0].levels[0].P"),
    (lambda d: d["stages"][0]["blocks"][0].update(Pi=d["stages"][1]["blocks"][0]["Pi"]), "stages[0].blocks[0].Pi"),
    (lambda d: d["stages"][2]["blocks"][0].update(R=None), "stages[2].blocks[0].R"),
    (lambda d: d["stages"][1]["blocks"][0]["levels"].pop(0), "stages[1].blocks[0].levels[0].A.in_channels"),
    (lambda d: d["stages"][1]["blocks"][0].update(type="mgnet_level"), "stages[1].blocks[0].type"),
    (lambda d: d["head"].update(in_features=128), "head.in_features"),
])
def test_bad_specs_name_the_field(edit, path):
    data = _edit(model_spec("mgiad_cifar"), edit)
    with pytest.raises(SpecError) as err:
        build_model(data)
    assert err.value.path == path
