import json
import subprocess
import sys

import pytest

from mgnas.spec import FORMAT, ArchSpec, ConvSpec, SpecError, label_to_path, load, loads, path_to_label, save


def _spec(**conv):
    c = {"kind": "group", "in_channels": 40, "out_channels": 40, "kernel_size": 3, "groups": 8, **conv}
    return ArchSpec(family="resnet", stages=[{"blocks": [{"type": "basic", "conv2": c}]}])


def test_spec_imports_no_torch():
    code = "import sys, mgnas.spec; assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_json_round_trip_and_hash(tmp_path):
    spec = _spec().with_metrics(params=1).with_provenance(seed=3).with_name("x")
    path = save(spec, tmp_path / "s.json")
    again = load(path)
    assert again == spec
    assert json.loads(path.read_text())["format"] == FORMAT
    # the hash ignores name, provenance and metrics, but not the architecture
    assert again.with_metrics(params=2).with_name("y").content_hash() == spec.content_hash()
    assert _spec(groups=4).content_hash() != spec.content_hash()


def test_error_names_the_field_path():
    with pytest.raises(SpecError, match=r"^stages\[0\]\.blocks\[0\]\.conv2\.groups: 48 does not divide 40"):
        _spec().with_values({"stages.0.0.conv2.groups": 48})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kernel_size": 0}, "kernel_size: must be a positive integer"),
        ({"padding": 5}, "padding: 5 exceeds the kernel's reach 2"),
        ({"kind": "fancy"}, "unknown conv kind 'fancy'"),
        ({"groups": 2, "kind": "dense"}, "a dense conv has groups 1"),
        ({"in_perm": [0, 0] + list(range(2, 40))}, "must be a permutation of 0..39"),
        ({"wat": 1}, "wat: unknown conv key"),
    ],
)
def test_conv_errors_say_what_to_change(change, message):
    data = _spec().to_dict()
    data["stages"][0]["blocks"][0]["conv2"].update(change)
    with pytest.raises(SpecError, match=message):
        ArchSpec.from_dict(data)


def test_unknown_top_level_key_and_format_version():
    data = _spec().to_dict()
    with pytest.raises(SpecError, match="^colour: unknown spec key"):
        ArchSpec.from_dict({**data, "colour": "red"})
    with pytest.raises(SpecError, match="^format: unsupported format 'mgnas.arch/2'"):
        ArchSpec.from_dict({**data, "format": "mgnas.arch/2"})
    with pytest.raises(SpecError, match="not valid JSON"):
        loads("{nope")


def test_block_needs_a_type():
    with pytest.raises(SpecError, match=r"stages\[0\]\.blocks\[1\]\.type"):
        ArchSpec(family="resnet", stages=[{"blocks": [{"type": "a"}, {"conv": 1}]}])


def test_labels_and_paths_are_inverse():
    label = "stages.2.0.conv2.groups"
    assert label_to_path(label) == "stages[2].blocks[0].conv2.groups"
    assert path_to_label(label_to_path(label)) == label
    assert _spec().get("stages.0.0.conv2.groups") == 8
    assert label_to_path("stage2.block0.conv2.groups") == label_to_path(label)  # the deprecated spelling still reads


def test_convs_iterates_with_paths():
    convs = list(_spec().convs())
    assert [p for p, _ in convs] == ["stages[0].blocks[0].conv2"]
    assert convs[0][1] == ConvSpec(40, 40, 3, kind="group", groups=8)


def test_conv_param_formulas():
    assert ConvSpec(64, 64, 3, kind="group", groups=4).num_params() == 64 * 64 * 9 // 4
    # Lee et al. §3.2: d^2 mn/N + d^2 n + mN
    assert ConvSpec(64, 32, 3, kind="two_level", groups=4).num_params() == 9 * 64 * 32 // 4 + 9 * 64 + 32 * 4
