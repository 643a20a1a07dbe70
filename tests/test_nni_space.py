"""NNI 3.0 adapter: a group-count space as an NNI ModelSpace, NNI samples back to mgnas specs, NNI searches."""

from __future__ import annotations

import json
import random

import pytest
import torch

pytest.importorskip("nni")

from mgnas.search_spaces import get_space  # noqa: E402
from mgnas.strategies._experimental import ExperimentalWarning  # noqa: E402
from mgnas.strategies.nni_space import run_nni_nas, to_mgnas_spec, to_nni_space  # noqa: E402

import mgnas.cli as cli  # noqa: E402
from mgnas.cli._nni import NNINasCommand  # noqa: E402
from mgnas.models import adapt_spec, build_model  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:.*run_nni_nas is experimental")
DIGITS = {"in_channels": 1, "num_classes": 10, "input_size": (1, 8, 8)}


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    torch.set_num_threads(1)
    names = {c.name for c in cli.COMMANDS}
    if NNINasCommand.name not in names:
        monkeypatch.setattr(cli, "COMMANDS", [*cli.COMMANDS, NNINasCommand()])


@pytest.fixture(scope="module")
def space():
    return get_space("resnet20_groups")


@pytest.fixture(scope="module")
def model_space(space):
    return to_nni_space(space, **DIGITS)


def _nni_choices(model_space) -> dict[str, list]:
    return {m.label: list(m.values) for m in model_space.simplify().values()}


def _adapted(spec):
    return adapt_spec(spec, in_channels=1, num_classes=10, input_size=(1, 8, 8))


def _in_space(space, spec) -> bool:
    """A spec adapted to digits is in the space once adapted back to the space's own data shape."""
    c, h, w = space.base.input_size
    return space.contains(adapt_spec(spec, in_channels=c, num_classes=space.base.num_classes, input_size=(c, h, w)))


def test_labels_and_candidates_equal_the_mgnas_space(space, model_space):
    choices = _nni_choices(model_space)
    assert list(choices) == space.labels()
    for dim in space.dimensions():
        assert choices[dim.label] == [str(g) for g in dim.choices]


@pytest.mark.parametrize("pick", ["first", "last", "random"])
def test_frozen_nni_sample_is_the_mgnas_network(space, model_space, pick):
    rng = random.Random(3)
    choose = {"first": lambda d: d.choices[0], "last": lambda d: d.choices[-1],
              "random": lambda d: rng.choice(d.choices)}
    sample = {d.label: str(choose[pick](d)) for d in space.dimensions()}
    frozen = model_space.freeze(sample)
    spec = to_mgnas_spec(space, sample)
    assert space.contains(spec)
    reference = build_model(_adapted(spec))
    assert sum(p.numel() for p in frozen.parameters()) == sum(p.numel() for p in reference.parameters())
    # same modules at the same places: mgnas's weights load strictly and give the same outputs
    state = {f"net.{k}": v for k, v in reference.state_dict().items()}
    frozen.load_state_dict(state, strict=True)
    frozen.eval(), reference.eval()
    x = torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(frozen(x), reference(x))


def test_sample_values_may_be_ints_or_strings(space):
    choices = space.sample_choices(7)
    assert to_mgnas_spec(space, choices) == to_mgnas_spec(space, {k: str(v) for k, v in choices.items()})


def test_bad_input_is_one_clear_error(space):
    good = {label: "1" for label in space.labels()}
    with pytest.raises(ValueError, match=r"unknown label 'stages\.9"):
        to_mgnas_spec(space, {**good, "stages.9.0.conv1.groups": "1"})
    with pytest.raises(ValueError, match=r"stages\.0\.0\.conv1\.groups='3' is not one of \[1, 2, 4, 8, 16\]"):
        to_mgnas_spec(space, {**good, "stages.0.0.conv1.groups": "3"})
    with pytest.raises(ValueError, match="lacks 1 label"):
        to_mgnas_spec(space, dict(list(good.items())[1:]))
    with pytest.raises(ValueError, match="supports group-count spaces .*supported: .*resnet20_groups"):
        to_nni_space("mgic_resnet56", **DIGITS)
    with pytest.raises(ValueError, match="no two-level switch"):
        to_nni_space(space, two_level=True, **DIGITS)
    with pytest.raises(ValueError, match="strategy 'enas' is not supported"):
        run_nni_nas("resnet20_groups", strategy="enas")


def test_run_nni_nas_is_marked_experimental(monkeypatch):
    import mgnas.strategies._experimental as experimental

    monkeypatch.setattr(experimental, "_WARNED", set())
    assert run_nni_nas.__experimental__ and "Experimental" in run_nni_nas.__doc__
    with pytest.warns(ExperimentalWarning, match="NNI 3.0"), pytest.raises(ValueError):
        run_nni_nas("resnet20_groups", strategy="enas")


def test_two_level_switch_is_fixed_by_the_adapter():
    space = get_space("wrn34_2_groups")
    model_space = to_nni_space(space, in_channels=3, num_classes=10, input_size=(3, 8, 8), two_level=True)
    labels = list(_nni_choices(model_space))
    assert "two_level" not in labels and labels == [lb for lb in space.labels() if lb != "two_level"]
    sample = {label: "2" for label in labels}
    spec = to_mgnas_spec(space, sample, two_level=True)
    assert spec.provenance["choices"]["two_level"] is True
    reference = build_model(adapt_spec(spec, in_channels=3, num_classes=10, input_size=(3, 8, 8)))
    frozen = model_space.freeze(sample)
    assert sum(p.numel() for p in frozen.parameters()) == sum(p.numel() for p in reference.parameters())


def test_random_oneshot_one_epoch_ends_in_an_mgnas_spec(space, tmp_path):
    spec = run_nni_nas("resnet20_groups", "digits", "random_oneshot", epochs=1, out_dir=tmp_path, seed=0)
    assert spec.provenance["strategy"] == "nni:random_oneshot"
    assert _in_space(space, spec)
    assert spec.content_hash() == _adapted(space.freeze(spec.provenance["choices"])).content_hash()
    params = sum(p.numel() for p in build_model(spec).parameters())
    assert params == spec.metrics["params"]
    saved = json.loads((tmp_path / "spec.json").read_text())
    assert saved["provenance"]["choices"] == spec.provenance["choices"]
    assert (tmp_path / "nni").is_dir() and (tmp_path / "nni_sample.json").is_file()


def test_darts_one_epoch(space):
    spec = run_nni_nas(space, "digits", "darts", epochs=1, seed=1)
    assert spec.provenance["strategy"] == "nni:darts"
    assert _in_space(space, spec)


def test_random_multi_trial_ends_in_an_mgnas_spec(space):
    spec = run_nni_nas(space, "digits", "random", epochs=1, trials=2, seed=2)
    assert spec.provenance["strategy"] == "nni:random"
    assert _in_space(space, spec)


def test_cli_nni_nas(tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(["nni-nas", "--space", "resnet20_groups", "--data", "digits", "--strategy", "random-oneshot",
                     "--epochs", "1", "--out", str(out), "--batch-size", "128"])
    text = capsys.readouterr().out
    assert code == 0
    assert "experimental" in text and "stages.2.2.conv2.groups" in text and str(out / "spec.json") in text
    saved = json.loads((out / "spec.json").read_text())
    assert f"{saved['metrics']['params']:,} params" in text
    # the same --out again: refused, one line, exit 2
    assert cli.main(["nni-nas", "--space", "resnet20_groups", "--out", str(out)]) == 2
    assert "already holds a result" in capsys.readouterr().err


@pytest.mark.parametrize("flags, words", [
    (["--space", "mgic_resnet56"], "supports group-count spaces"),
    (["--space", "nope_groups"], "nope_groups"),
    (["--space", "resnet20_groups", "--epochs", "0"], "--epochs: 0 is outside the valid range"),
    (["--space", "resnet20_groups", "--data", "mnist"], "unknown data set"),
])
def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys, flags, words):
    assert cli.main(["nni-nas", *flags, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1
