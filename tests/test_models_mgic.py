"""MGIC model family: paper counts (Tables 2-4, 7-8), spec explicitness, DGConv levels, argument errors."""

import time

import pytest
import torch

from mgnas.models import build_model, create_model, list_models, model_spec
from mgnas.ops import ChannelRestriction, MGICBlock
from mgnas.profile import count
from mgnas.spec import ArchSpec, SpecError

M = 1e6


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def mgic_blocks(model):
    return [m for m in model.modules() if isinstance(m, MGICBlock)]


def test_registered():
    assert {"mgic_resnet56", "mgic_resnet50", "mgic_mobilenetv3_large"} <= set(list_models("mgic*"))


# --------------------------------------------------------------------------- paper counts
@pytest.mark.parametrize("s_g, paper", [(32, 9.4 * M), (64, 15.1 * M), (16, 6.2 * M)])
def test_resnet50_table3_within_3_percent(s_g, paper):
    model = create_model("mgic_resnet50", group_size=s_g, coarse_size=64)
    assert abs(n_params(model) / paper - 1) <= 0.03, n_params(model)


def test_resnet50_code_conventions_give_9_41M():
    """DESIGN: with the authors' code conventions (its level rule) MGIC-ResNet-50 (32, 64) has 9.41M."""
    model = create_model("mgic_resnet50", group_size=32, coarse_size=64, level_rule="code")
    assert n_params(model) == 9_409_576
    r0 = model.stages[0][0].mgic.down[0]
    assert (r0.in_channels, r0.groups) == (256, 2)  # R on 4 * planes channels, planes / s_g groups


def test_resnet50_per_layer_count_is_fast():
    count(torch.nn.Conv2d(1, 1, 1), "1x1x1")  # warm up: the first FlopCounterMode imports torch._dynamo
    model = create_model("mgic_resnet50")
    start = time.process_time()  # CPU time: wall time on a shared 2-core machine measures the neighbours
    result = count(model, "3x224x224")
    assert time.process_time() - start < 10
    assert result.params == n_params(model) and 1.5e9 < result.macs < 2.5e9  # paper: 1.6 GFLOPs, see docstring
    assert any(layer.type == "ChannelRestriction" and layer.macs > 0 for layer in result.layers)


def test_resnet56_counts():
    """Paper: 0.41M / 60M FLOPs; the code's rule gives the authors' 0.284M (DESIGN), the paper's rule 0.310M."""
    code = create_model("mgic_resnet56", level_rule="code")
    assert n_params(code) == 284_410
    assert count(code, "3x32x32", per_layer=False).macs == pytest.approx(63.5e6, rel=0.01)
    assert n_params(create_model("mgic_resnet56")) == pytest.approx(0.310 * M, rel=0.01)


@pytest.mark.parametrize("s_g, s_c, code_rule", [
    (16, 64, 0.534), (16, 32, 0.499), (16, 16, 0.525), (32, 16, 0.875), (8, 16, 0.284), (4, 16, 0.164),
])
def test_resnet56_tables_7_8_as_documented(s_g, s_c, code_rule):
    model = create_model("mgic_resnet56", group_size=s_g, coarse_size=s_c, level_rule="code", group_rule="code")
    assert n_params(model) == pytest.approx(code_rule * M, abs=0.0006 * M)


@pytest.mark.parametrize("width, measured, paper", [(0.6, 3.374, 2.3), (1.0, 6.140, 5.2), (1.2, 7.656, 7.1)])
def test_mobilenetv3_counts_as_documented(width, measured, paper):
    model = create_model("mgic_mobilenetv3_large", width=width)
    assert n_params(model) == pytest.approx(measured * M, rel=0.002)
    assert abs(n_params(model) / (paper * M) - 1) < 0.5  # gap explained in the module docstring


# --------------------------------------------------------------------------- the spec
def test_spec_lists_every_level_conv():
    spec = model_spec("mgic_resnet56", level_rule="code")
    assert spec.config == {"level_rule": "code", "transfer_init": "paper"}
    block = spec.stages[2]["blocks"][1]
    assert (block["type"], block["cnn"], block["channels"], block["group_size"], block["coarse_size"]) == \
        ("mgic", "basic", 64, 8, 16)
    assert [lv["conv1"]["in_channels"] for lv in block["levels"]] == [64, 32, 16, 8]
    assert [lv["conv2"]["kind"] for lv in block["levels"]] == ["group"] * 3 + ["dense"]
    assert [lv["conv1"].get("groups", 1) for lv in block["levels"]] == [8, 4, 2, 1]
    first = spec.stages[1]["blocks"][0]["connector"]
    assert (first["in_channels"], first["out_channels"], first["stride"], first["groups"]) == (16, 32, 2, 16)
    assert ArchSpec.from_dict(spec.to_dict()) == spec


def test_mobilenet_spec_has_per_level_group_sizes():
    spec = model_spec("mgic_mobilenetv3_large")
    last = spec.stages[-1]["blocks"][-2]
    assert last["cnn"] == "inverted_residual" and last["se"] and last["act"] == "hswish"
    assert last["group_size"] == [80, 80]  # 160 = 2 groups of 80, 80 = 1 group (group_rule "code")
    assert spec.stages[0]["blocks"][0]["levels"][0]["conv1"] is None  # 16 -> 16: no expansion conv


def _dgconv_spec():
    data = model_spec("mgic_resnet56", level_rule="code").to_dict()
    for stage in data["stages"]:
        for block in stage["blocks"]:
            for level in block["levels"][:-1]:
                for conv in level.values():
                    conv["kind"] = "dgconv"
                    conv.pop("groups", None)
    return data


def test_dgconv_levels_give_the_mgic_dgconv_supernet():
    ops = pytest.importorskip("mgnas.ops.dgconv")
    model = build_model(_dgconv_spec())
    assert sum(isinstance(m, ops.DGConv2d) for m in model.modules()) == 2 * (9 * 1 + 9 * 2 + 9 * 3)
    model(torch.randn(2, 3, 32, 32)).sum().backward()


def test_transfer_init_from_config():
    spec = model_spec("mgic_resnet56")
    paper = build_model(spec)
    code = build_model(spec.with_values({"config": {"level_rule": "paper", "transfer_init": "code"}}))
    restrictions = [m for m in paper.modules() if isinstance(m, ChannelRestriction)]
    assert restrictions and all((m.weight > 0).all() for m in restrictions)
    assert any((m.weight < 0).any() for m in code.modules() if isinstance(m, ChannelRestriction))


@pytest.mark.parametrize("path, value, error", [
    ("config", {"level_rule": "paper", "colour": 1}, r"^config\.colour: unknown key"),
    ("config", {"level_rule": "sideways"}, r"^config\.level_rule: 'sideways' is not one of"),
    ("stages[2].blocks[1].levels[0].conv1.out_channels", 32, r"levels\[0\]\.conv1\.out_channels: is 32"),
    ("stages[1].blocks[0].connector", None, r"^stages\[1\]\.blocks\[0\]\.connector: a 16->32 block needs"),
    ("stages[0].blocks[0].group_size", 3, r"^stages\[0\]\.blocks\[0\]\.group_size: group_size 3"),
    ("stages[0].blocks[0].levels[0].conv1.stride", 2, r"conv1\.stride: must be 1"),
    ("stages[0].blocks[0].colour", 1, r"^stages\[0\]\.blocks\[0\]\.colour: unknown key"),
])
def test_bad_specs_name_the_field(path, value, error):
    data = model_spec("mgic_resnet56", level_rule="code").to_dict()
    spec = ArchSpec.from_dict(data).with_values({path: value}) if path != "config" else None
    if spec is None:
        data["config"] = value
        spec = data
    with pytest.raises(SpecError, match=error):
        build_model(spec)


def test_more_levels_than_the_rule_allows_is_a_spec_error():
    data = model_spec("mgic_resnet56").to_dict()  # paper rule: stage 0 (16 channels) has one level
    block = data["stages"][0]["blocks"][0]
    block["levels"] = model_spec("mgic_resnet56", level_rule="code").to_dict()["stages"][0]["blocks"][0]["levels"]
    with pytest.raises(SpecError, match=r"^stages\[0\]\.blocks\[0\]\.levels: levels 1 is deeper"):
        build_model(data)


# --------------------------------------------------------------------------- named-model arguments
def test_levels_caps_the_hierarchy():
    model = create_model("mgic_resnet56", levels=1)
    assert {len(b.widths) for b in mgic_blocks(model)} == {1, 2}  # stage 0 (paper rule, 16 <= 16) has 1 level
    plain = create_model("mgic_mobilenetv3_large", levels=0)
    assert all(len(b.widths) == 1 for b in mgic_blocks(plain))


@pytest.mark.parametrize("name, kwargs, match", [
    ("mgic_resnet56", {"group_size": 48}, r"group_size 48 is impossible.*valid group sizes: 2, 4, 8, 16, 32 \("),
    ("mgic_resnet56", {"group_size": 32, "level_rule": "code"},
     r"widths? \[16, 32, 64\].*valid group sizes: 2, 4, 8, 16 \(or group_rule='code'"),
    ("mgic_resnet50", {"group_size": 48}, r"group_size 48 .*valid group sizes: 1, 2, 4, 8, 16, 32, 64, 128 \("),
    ("mgic_resnet56", {"levels": 9}, r"levels 9 is deeper .*valid values: 0\.\.2"),
    ("mgic_resnet50", {"levels": 5}, r"levels 5 is deeper .*valid values: 0\.\.3"),
    ("mgic_resnet56", {"width": 1.25, "coarse_size": 4}, r"coarse_size 4 is impossible .*valid coarse sizes"),
    ("mgic_resnet56", {"level_rule": "sideways"}, r"level_rule 'sideways' is unknown; valid values: paper, code"),
    ("mgic_resnet56", {"transfer_init": "zeros"}, r"transfer_init 'zeros' is unknown; valid values: paper, code"),
    ("mgic_mobilenetv3_large", {"group_rule": "exact"}, r"group_size 64 is impossible"),
    ("mgic_mobilenetv3_large", {"width": 0}, r"width must be a positive number"),
])
def test_impossible_arguments_raise_value_error(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        create_model(name, **kwargs)


@pytest.mark.parametrize("name, size", [("mgic_resnet56", 32), ("mgic_resnet50", 64), ("mgic_mobilenetv3_large", 64)])
def test_forward_backward_small_input(name, size):
    model = create_model(name, num_classes=7)
    out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 7)
    out.sum().backward()
