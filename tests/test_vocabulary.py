"""One vocabulary (issue 12 §2): a layer has one name in space labels, result.json, count rows and reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mgnas.search_spaces import get_space

import mgnas.cli as cli
from mgnas.models import build_model, list_models, model_spec
from mgnas.profile import count
from mgnas.spec import label_to_path, layer_name, legacy_label
from mgnas.viz import read_history, report_data


@pytest.fixture(scope="module")
def search(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("vocab") / "run"
    from mgnas.cli._search import SearchCommand

    names = {c.name for c in cli.COMMANDS}
    extra = [SearchCommand()] if "search" not in names else []
    saved = list(cli.COMMANDS)
    cli.COMMANDS.extend(extra)
    try:
        rc = cli.main(["search", "--space", "resnet20_groups", "--data", "digits", "--budget", "b=4", "--epochs", "1",
                       "--out", str(out), "--no-progress"])
    finally:
        cli.COMMANDS[:] = saved
    assert rc == 0
    return out


def test_one_layer_one_name_everywhere(search, capsys):
    space = get_space("resnet20_groups")
    label = space.labels()[3]
    name = label.removesuffix(".groups")
    assert name == "stages.0.1.conv2"
    # the search's result.json
    result = json.loads((search / "result.json").read_text())
    assert [lay["name"] for lay in result["layers"]] == [lab.removesuffix(".groups") for lab in space.labels()]
    # mgnas count --json of the discovered spec
    capsys.readouterr()
    assert cli.main(["count", str(search / "spec.json"), "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)["layers"]}
    assert name in rows and rows[name]["module"] == f"{name}.conv"
    assert rows[name]["kind"] in ("dense", "group g=2", "group g=2 +perm") or rows[name]["kind"].startswith("group g=")
    assert rows[name]["groups"] == result["groups"][3]
    # the report data
    data = report_data(read_history(search / "history.jsonl"), result)
    assert data.groups.labels[3] == data.frames.layers[3] == name
    # and the name addresses the spec field (the state_dict prefix for this family)
    spec = json.loads((search / "spec.json").read_text())
    assert label_to_path(label) == "stages[0].blocks[1].conv2.groups"
    assert spec["stages"][0]["blocks"][1]["conv2"]["groups"] == result["groups"][3]
    assert any(k.startswith(f"{name}.conv") for k in build_model(model_spec("resnet20_cifar")).state_dict())


def test_count_rows_show_kind_and_groups_of_a_supernet():
    spec = get_space("resnet20_groups").supernet_spec()
    model = build_model(spec)
    rows = {r.name: r for r in count(model, spec.input_size).layers}
    row = rows["stages.0.0.conv1"]
    assert row.type == "DGConv2d" and row.kind.startswith("dgconv g=") and "factors 2×2×2×2" in row.kind
    assert row.groups == model.get_submodule("stages.0.0.conv1.conv").num_groups()
    assert rows["stem.conv"].kind == "dense" and rows["stages.0.0.conv1.bn"].kind == ""


@pytest.mark.parametrize("name", ["mgnet_cifar", "mg_cifar", "mobilenetv2"])
def test_every_spec_conv_is_one_count_row_named_by_its_layer_name(name):
    spec = model_spec(name)
    rows = count(build_model(spec), spec.input_size).layers
    names = {r.name for r in rows if r.kind}
    assert {layer_name(p) for p, _ in spec.convs()} <= names


def test_count_of_a_space_name_counts_its_default_and_says_so(capsys):
    assert cli.main(["count", "resnet20_groups", "--totals"]) == 0
    captured = capsys.readouterr()
    assert "resnet20_groups is a search space" in captured.err and "--supernet" in captured.err
    default = get_space("resnet20_groups").default()
    assert f"{count(build_model(default), default.input_size, per_layer=False).params:,}" in captured.out
    assert cli.main(["count", "resnet20_groups", "--supernet", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert any(r["kind"].startswith("dgconv") for r in out["layers"])
    assert cli.main(["count", "resnet20_cifar", "--supernet"]) == 2


def test_spelling_round_trips():
    for path in ("stages[2].blocks[0].conv2.groups", "stages[0].blocks[0].levels[1].A", "stem.convs[0]",
                 "stages[3].blocks[0].conv1[2]", "num_classes"):
        assert label_to_path(layer_name(path)) == path
        assert label_to_path(legacy_label(path)) == path
    assert layer_name("stage2.block0.conv2.groups") == "stages.2.0.conv2.groups"


def test_no_registered_model_is_unnamed():
    """Every conv built from a spec knows its layer name (what count rows and reports show)."""
    for name in ("resnet20_cifar", "mgic_resnet56", "wrn34_2"):
        assert name in list_models()
        spec = model_spec(name)
        tagged = {getattr(m, "mgnas_layer", None) for m in build_model(spec).modules()} - {None}
        assert tagged == {layer_name(p) for p, _ in spec.convs()}


def test_search_layer_names_follow_the_order_of_groups_and_gates_on_mgic(tmp_path):
    """MGIC builds its modules level by level: result["layers"] must follow budget.layers (the order of
    result["groups"] and the history's gates), not the spec's order."""
    from mgnas.strategies.differentiable import DifferentiableSearch, SearchConfig

    from mgnas.config import load_config

    cfg = load_config(SearchConfig, None, {"space": "mgic_resnet56", "data": "digits", "train.epochs": 1})
    search = DifferentiableSearch(cfg, tmp_path, progress=False)
    names = [layer["name"] for layer in search.layer_info()]
    assert names == [m.mgnas_layer for m in search.budget.layers]
    spec_order = [layer_name(p) for p, c in search.supernet_spec.convs() if c.kind == "dgconv"]
    assert sorted(names) == sorted(spec_order) and names != spec_order
