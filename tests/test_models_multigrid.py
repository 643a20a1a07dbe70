"""Multigrid family (Ke et al. Tables 1-2): counts vs the paper, spec layout, errors, forward/backward."""

import pytest
import torch

from mgnas.models import build_model, create_model, model_spec
from mgnas.ops.multigrid import MultigridConv2d
from mgnas.profile import count
from mgnas.spec import SpecError

M = 1e6

# (model, kwargs, paper params, paper "FLOPs" = multiply-adds, MAC tolerance)
PAPER = [
    ("r_mg34", {}, 32.9 * M, 5760 * M, 0.01),
    ("r_mg_cifar", {"depth": 12}, 20.56 * M, 457.20 * M, 0.01),
    ("r_mg_cifar", {"depth": 22}, 44.79 * M, 1007.70 * M, 0.01),
    ("r_mg_cifar", {"depth": 32}, 69.02 * M, 1558.20 * M, 0.01),
    ("r_mg_cifar", {"depth": 42}, 93.26 * M, 2108.71 * M, 0.01),
    ("mg_cifar", {"depth": 6}, 8.34 * M, 116.63 * M, 0.01),
    ("mg_cifar", {"depth": 11}, 20.46 * M, 391.88 * M, 0.01),
    ("mg_cifar", {"depth": 16}, 32.58 * M, 667.13 * M, 0.01),
    ("mg_cifar", {"depth": 21}, 44.69 * M, 942.38 * M, 0.01),
    ("pmg", {"depth": 9}, 8.46 * M, 186.21 * M, 1e-4),
    ("pmg", {"depth": 16}, 20.60 * M, 468.09 * M, 1e-4),
    ("pmg", {"depth": 23}, 32.74 * M, 749.98 * M, 1e-4),  # the paper's "PMG-30" row, see the family docstring
    ("r_pmg", {"depth": 16}, 20.60 * M, 468.09 * M, 1e-4),
    ("r_pmg", {"depth": 30}, 44.88 * M, 1031.87 * M, 1e-4),
    ("r_pmg", {"depth": 44}, 69.16 * M, 1595.64 * M, 1e-4),
]


def _count_on_meta(name, **kwargs):
    """Parameters and MACs without allocating the (up to 93M-parameter) weights."""
    with torch.device("meta"):
        model = create_model(name, **kwargs)
        return count(model, model.spec.input_size, per_layer=False)


@pytest.mark.parametrize(("name", "kwargs", "params", "macs", "macs_tol"), PAPER,
                         ids=[f"{n}{k.get('depth', '')}" for n, k, *_ in PAPER])
def test_counts_match_paper(name, kwargs, params, macs, macs_tol):
    result = _count_on_meta(name, **kwargs)
    assert abs(result.params / params - 1) <= 0.01, f"{result.params:,} params vs paper {params:,.0f}"
    assert abs(result.macs / macs - 1) <= macs_tol, f"{result.macs:,} MACs vs paper {macs:,.0f}"


def test_pmg30_has_four_layers_per_stage_not_the_papers_row():
    assert _count_on_meta("pmg", depth=30).params == _count_on_meta("r_pmg", depth=30).params


def test_meta_count_equals_real_count():
    spec = model_spec("mg_cifar", depth=6)
    real = count(build_model(spec), "3x32x32", per_layer=False)
    meta = _count_on_meta("mg_cifar", depth=6)
    assert (real.params, real.macs) == (meta.params, meta.macs)


def test_spec_records_every_grid_conv_of_every_layer():
    spec = model_spec("r_mg_cifar", depth=12)
    blocks = [b for s in spec.stages for b in s["blocks"]]
    units = [b for b in blocks if b["type"] == "mg_residual"]
    assert [len(u["conv1"]) for u in units] == [3, 3, 3, 3, 2]
    assert [b["merge"] for b in blocks if b["type"] == "mg_pool"] == [False, False, False, True, True]
    convs = dict(spec.convs())
    assert len(convs) == 3 + 2 * (3 + 3 + 3 + 3 + 2)  # stem + two mg-convs per unit
    first = convs["stages[0].blocks[0].conv1[1]"]  # grid 1 of stage 1 reads 64 + 32 + 16 channels
    assert (first.in_channels, first.out_channels, first.kernel_size, first.bias) == (112, 32, 3, True)
    assert convs["stages[3].blocks[0].conv1[2]"].kernel_size == 1  # the 1x1 grid
    assert spec.head["in_features"] == 896  # 512 + 384 after the final merge


def test_progressive_layers_grow_from_the_coarsest_grid():
    spec = model_spec("pmg", depth=9)
    stage0 = spec.stages[0]["blocks"]
    assert [len(b["convs"]) for b in stage0 if b["type"] == "mg_layer"] == [1, 2, 3]
    assert model_spec("r_pmg", depth=16).stages[0]["blocks"][0]["type"] == "mg_residual"


def test_grouped_variant_and_invalid_groups():
    dense = _count_on_meta("r_mg_cifar", depth=12).params
    spec = model_spec("r_mg_cifar", depth=12, conv="group", groups=16)
    kinds = {c.kind for p, c in spec.convs() if not p.startswith("stem")}
    assert kinds == {"group"} and all(c.kind == "dense" for p, c in spec.convs() if p.startswith("stem"))
    assert _count_on_meta("r_mg_cifar", depth=12, conv="group", groups=16).params < dense / 10
    with pytest.raises(ValueError, match="valid groups: 1, 2, 4, 8, 16"):
        model_spec("r_mg34", conv="group", groups=3)


@pytest.mark.parametrize(("name", "depth", "match"), [
    ("r_mg_cifar", 13, "12, 22, 32, 42"), ("mg_cifar", 7, "6, 11, 16, 21"),
    ("pmg", 10, "9, 16, 23, 30"), ("r_pmg", 1, "16, 30, 44"),
])
def test_bad_depth_names_the_valid_depths(name, depth, match):
    with pytest.raises(ValueError, match=match):
        model_spec(name, depth=depth)


def _edit(spec, path, value):
    data = spec.to_dict()
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


@pytest.mark.parametrize(("path", "value", "match"), [
    (["stages", 0, "blocks", 0, "conv1", 1, "in_channels"], 64, r"stages\[0\].blocks\[0\].conv1\[1\].in_channels"),
    (["stages", 0, "blocks", 0, "conv2", 0, "out_channels"], 80, r"conv2\[0\].out_channels"),
    (["stages", 0, "blocks", 0, "conv1", 0, "stride"], 2, r"conv1\[0\].stride"),
    (["stages", 0, "blocks", 0, "extra"], 1, r"stages\[0\].blocks\[0\].extra"),
    (["stages", 0, "blocks", 0, "conv1"], [], r"conv1: must be a non-empty list"),
    (["head", "in_features"], 512, "head.in_features"),
    (["stages", 1, "blocks", 0, "type"], "mg_bogus", "unknown block type"),
])
def test_bad_specs_are_spec_errors_naming_the_field(path, value, match):
    spec = model_spec("r_mg_cifar", depth=12)
    with pytest.raises(SpecError, match=match), torch.device("meta"):
        build_model(_edit(spec, path, value))


def test_narrowing_residual_unit_is_a_spec_error():
    spec = model_spec("r_mg_cifar", depth=12)
    data = _edit(spec, ["stages", 0, "blocks", 0, "conv1", 2, "out_channels"], 8)
    data["stages"][0]["blocks"][0]["conv2"][1]["in_channels"] = 64 + 32 + 8
    data["stages"][0]["blocks"][0]["conv2"][2]["in_channels"] = 32 + 8
    data["stages"][0]["blocks"][0]["conv2"][2]["out_channels"] = 8
    with pytest.raises(SpecError, match="cannot narrow"), torch.device("meta"):
        build_model(data)


def test_dgconv_supernet_builds_and_trains_every_grid_conv():
    spec = model_spec("mg_cifar", depth=6)
    values = {p: c.replace(kind="dgconv").to_dict() for p, c in spec.convs() if not p.startswith("stem")}
    model = build_model(spec.with_values(values))
    gates = [m.gates for m in model.modules() if hasattr(m, "gates")]
    assert len(gates) == sum(len(m.convs) for m in model.modules() if isinstance(m, MultigridConv2d))
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert all(g.grad is not None for g in gates)


@pytest.mark.parametrize(("name", "kwargs", "size"), [
    ("r_mg34", {}, 64), ("r_mg34", {}, 36),  # 36 px: odd grids 9/5/3 line up
    ("r_pmg", {"depth": 16}, 32), ("mg_cifar", {"depth": 6}, 32),
])
def test_forward_backward_small_input(name, kwargs, size):
    model = create_model(name, **kwargs)
    out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, model.spec.num_classes)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
