"""Every registered space: default() and 20 samples are contained, build and run; suggest replays freeze."""

import random

import pytest
import torch
from mgnas.search_spaces import FixedTrial, InfeasibleChoice, get_space, list_spaces

from mgnas.models import build_model, model_spec
from mgnas.spec import legacy_label

N_SAMPLES = 20


def _forward(spec, device="cpu"):
    """Build and run one forward pass. On the meta device the pass checks every shape without allocating
    weights (the ImageNet spaces hold 25-90M-parameter models; 20 real builds each take minutes on 2 cores)."""
    c, h, _ = spec.input_size
    side = 64 if h >= 128 else h
    with torch.device(device):
        model = build_model(spec).eval()
        with torch.no_grad():
            out = model(torch.randn(1, c, side, side))
    assert out.shape == (1, spec.num_classes)
    if device == "cpu":
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", list_spaces())
def test_default_and_samples_are_valid_and_build(name):
    space = get_space(name)
    default = space.default()
    assert space.contains(default)
    _forward(default)
    rng = random.Random(0)
    hashes = set()
    for i in range(N_SAMPLES):
        spec = space.sample(rng)
        assert space.contains(spec), f"sample {i} not contained: {spec.provenance['choices']}"
        hashes.add(spec.content_hash())
        _forward(spec, "cpu" if i < 3 else "meta")
    if space.size() > N_SAMPLES:
        assert len(hashes) > 1, "sampling never varied the architecture"


@pytest.mark.parametrize("name", list_spaces())
def test_suggest_replays_freeze_exactly(name):
    space = get_space(name)
    choices = space.sample_choices(random.Random(1))
    frozen = space.freeze(choices)
    trial = FixedTrial(choices)
    replayed = space.suggest(trial)
    assert replayed == frozen
    assert trial.used == choices  # every label asked, in full


@pytest.mark.parametrize("name", list_spaces())
def test_supernet_has_dgconvs_and_builds(name):
    space = get_space(name)
    try:
        spec = space.supernet_spec()
    except NotImplementedError:
        pytest.skip(f"{name} has no differentiable supernet (documented)")
    kinds = [c.kind for _, c in spec.convs()]
    assert "dgconv" in kinds
    build_model(spec)


@pytest.mark.parametrize("name", list_spaces())
def test_unknown_label_and_bad_value(name):
    space = get_space(name)
    with pytest.raises(ValueError, match="unknown label"):
        space.freeze({"no.such.label": 1})
    dim = space.dimensions()[0]
    with pytest.raises(ValueError, match="is not one of"):
        space.freeze({dim.label: "not-a-choice"})


def test_resnext_space_matches_named_models():
    space = get_space("resnext50_groups")
    assert space.default().content_hash() == model_spec("resnext50_32x4d").content_hash()
    assert space.supernet_spec().content_hash() == model_spec("g_resnext50").content_hash()
    assert not space.contains(model_spec("resnet50"))
    spec = space.freeze({"stages.2.0.conv2.groups": 4})
    assert spec.get("stages[2].blocks[0].conv2.groups") == 4
    assert spec.get("stages.2.1.conv2.groups") == 32


def test_labels_are_layer_names_and_the_old_spelling_is_deprecated():
    space = get_space("resnet20_groups")
    assert space.labels()[0] == "stages.0.0.conv1.groups"
    assert all(label.startswith("stages.") and label.endswith(".groups") for label in space.labels())
    with pytest.warns(DeprecationWarning, match="stages.1.0.conv1.groups"):
        spec = space.freeze({"stage1.block0.conv1.groups": 4})
    assert spec == space.freeze({"stages.1.0.conv1.groups": 4})
    assert space.suggest(FixedTrial({**space.default_choices(), "stages.1.0.conv1.groups": 4})) == spec
    old = {legacy_label(k): v for k, v in space.default_choices().items()}  # a trial recorded with old labels
    assert space.suggest(FixedTrial(old)) == space.default()


def test_permuted_search_result_is_in_the_group_space():
    space = get_space("resnext50_groups")
    spec = space.default()
    conv = spec.get("stages[0].blocks[0].conv2")
    perm = list(range(conv["in_channels"]))[::-1]
    assert space.contains(spec.with_values({"stages[0].blocks[0].conv2.in_perm": perm}))


def test_infeasible_is_a_value_error_with_reason():
    assert issubclass(InfeasibleChoice, ValueError)
