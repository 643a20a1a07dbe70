"""Nested search trials (issue 10 §2): ``mgnas study --trial search --budgets ...`` runs a DGConv search inside each
trial over the suggested structure's supernet and records the frozen architecture. Checks: the recorded specs hold
no DGConv, rebuild to the recorded params and MACs, meet ζ <= o, and (MGIC) have different group counts on
different channel levels; the Table 3 config is a 5-point grid over budgets alone, and its digits twin runs end
to end. CPU, digits, 1 epoch."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from mgnas.search_spaces import get_space, list_spaces  # noqa: E402
from mgnas.strategies.study import StudyConfig, load_study_data, open_storage, study_overrides  # noqa: E402
from mgnas.strategies.study._config import BUDGET_LABEL, _search_space  # noqa: E402
from mgnas.strategies.study._trial_search import run_search_trial, structure_choices  # noqa: E402

import mgnas  # noqa: E402
from mgnas import cli  # noqa: E402
from mgnas.config import load_config  # noqa: E402
from mgnas.profile import count  # noqa: E402
from mgnas.spec import loads  # noqa: E402
from mgnas.train.config import TrainConfig  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "experiments" / "configs"
TABLE3 = CONFIGS / "study_dgconv_g_resnext50_table3.yaml"
TWIN = CONFIGS / "study_dgconv_g_resnet20_digits.yaml"
TRAIN = TrainConfig(epochs=1, batch_size=512, optimizer="adamw", lr=3e-3, weight_decay=1e-4)  # few steps: cheap


@pytest.fixture(autouse=True)
def _register(monkeypatch):
    if not any(c.name == "study" for c in cli.COMMANDS):
        from mgnas.cli._study import ParetoCommand, StudyCommand

        monkeypatch.setattr(cli, "COMMANDS", [*cli.COMMANDS, StudyCommand(), ParetoCommand()])


def _recount(spec):
    counted = count(mgnas.build_model(spec), spec.input_size, per_layer=False)
    return int(counted.params), int(counted.macs)


def _level_groups(spec) -> dict[str, dict[int, set[int]]]:
    """{block address: {channel level: group counts of its convs}} for every conv that sits on a channel level."""
    out: dict[str, dict[int, set[int]]] = {}
    for path, conv in spec.convs():
        m = re.search(r"\w*level\w*\[(\d+)\]", path)  # the field path of a conv on channel level k
        if m is not None:
            out.setdefault(path[:m.start()], {}).setdefault(int(m.group(1)), set()).add(conv.groups)
    return out


# --------------------------------------------------------------------------- the spaces' supernets per structure
def test_supernet_of_follows_the_structure():
    mgic = get_space("mgic_resnet56")
    assert mgic.supernet_labels() == mgic.labels()
    default = mgic.supernet_of(mgic.default_choices())
    assert default.content_hash() == mgic.supernet_spec().content_hash()
    assert any(c.kind == "dgconv" for _, c in default.convs())
    # another structure (another coarsest size) gives another supernet
    other = None
    for label, d in ((d.label, d) for d in mgic.dimensions()):
        for value in d.choices:
            try:
                spec = mgic.supernet_of({**mgic.default_choices(), label: value})
            except ValueError:
                continue
            if spec.content_hash() != default.content_hash():
                other = spec
                break
        if other is not None:
            break
    assert other is not None and any(c.kind == "dgconv" for _, c in other.convs())
    groups = get_space("resnet20_groups")
    assert groups.supernet_labels() == []  # DGConv learns every group count
    assert groups.supernet_of({}).content_hash() == groups.supernet_spec().content_hash()
    assert structure_choices(mgic, mgic.default()) == mgic.default_choices()


@pytest.mark.parametrize("name", list_spaces())
def test_every_space_gives_its_supernet_per_structure(name):
    space = get_space(name)
    assert set(space.supernet_labels()) <= set(space.labels())
    try:
        default = space.supernet_spec()
    except NotImplementedError:
        with pytest.raises(NotImplementedError):
            space.supernet_of(space.default_choices())
        return
    assert space.supernet_of(space.default_choices()).content_hash() == default.content_hash()


# --------------------------------------------------------------------------- one nested trial on MGIC
def test_nested_mgic_trial_is_frozen_within_budget_and_grouped_per_level():
    config = StudyConfig(space="mgic_resnet56", data="digits", trial_kind="search", budgets=("b=16",), train=TRAIN,
                         pruner="sha")  # a multi-objective pruner reads params at every epoch
    data = load_study_data(config)
    space = get_space(config.space)
    seen = []
    candidate, metrics = run_search_trial(None, config, data, spec=space.default(), budget="b=16",
                                          on_epoch_end=lambda e, acc, values: seen.append((e, acc, values)))
    spec = candidate.spec
    assert {c.kind for _, c in spec.convs()}.isdisjoint({"dgconv"})
    assert _recount(spec) == (candidate.params, candidate.macs)
    attrs = metrics["user_attrs"]
    assert attrs["within_budget"] and attrs["zeta"] <= attrs["o"] and attrs["zeta_over_o"] <= 1.0
    assert attrs["budget"] == "b=16" and len(attrs["groups"]) > 0
    # the group count is learned per channel level: in some MGIC block two levels differ
    levels = _level_groups(spec)
    assert levels and any(len(set().union(*per.values())) > 1 and len(per) > 1 for per in levels.values())
    assert any(max(g) > 1 for per in levels.values() for g in per.values())
    # the per-epoch hook saw the supernet's accuracy with the counts of the current hard gates
    assert [e for e, _, _ in seen] == [1] and seen[0][2][0] == seen[0][1] and seen[0][2][1] > 0
    # the frozen model (searched weights loaded) computes what the supernet computed
    model = candidate.model.eval()
    correct = total = 0
    import torch

    with torch.no_grad():
        for x, y in data.val:
            correct += int((model(x).argmax(1) == y).sum())
            total += int(y.numel())
    assert abs(correct / total - metrics["val_accuracy"]) <= 1.0 / total + 1e-9


# --------------------------------------------------------------------------- the Table 3 config and its digits twin
def test_table3_config_is_a_grid_over_five_budgets():
    config = load_config(StudyConfig, TABLE3, study_overrides(TABLE3, {}))
    assert config.trial_kind == "search" and config.sampler == "grid" and config.space == "resnext50_groups"
    grid = _search_space(config)
    assert grid == {BUDGET_LABEL: ["b=32", "b=64", "b=96", "b=128", "b=256"]}
    assert config.trials == 5 and config.data.startswith("imagenet:")


def test_digits_twin_runs_end_to_end(tmp_path):
    url = f"journal:{tmp_path / 'study.log'}"
    code = cli.main(["study", "--config", str(TWIN), "--out", str(tmp_path / "out"), "--storage", url,
                     "--epochs-per-trial", "1", "--no-plots"])
    assert code == 0
    config = load_config(StudyConfig, TWIN, study_overrides(TWIN, {}))
    study = optuna.load_study(study_name=config.name, storage=open_storage(url))
    trials = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
    assert sorted(t.params[BUDGET_LABEL] for t in trials) == sorted(config.budgets)
    for t in trials:
        assert set(t.params) == {BUDGET_LABEL}  # a group-count space: Optuna chooses the budget only
        spec = loads(_spec_json(t, study))
        assert all(c.kind != "dgconv" for _, c in spec.convs())
        params, macs = _recount(spec)
        assert params == t.user_attrs["params"] == t.values[1] and macs == t.user_attrs["macs"]
        assert t.user_attrs["zeta"] <= t.user_attrs["o"] and t.user_attrs["within_budget"]
        assert t.user_attrs["budget"] == t.params[BUDGET_LABEL]
        assert re.fullmatch(r"b=\d+", t.user_attrs["budget"])


def _spec_json(trial, study) -> str:
    """A trial's spec JSON, from the study's artifact store (or the older user attr)."""
    from mgnas.strategies.study._pareto import trial_spec_json
    from mgnas.strategies.study._storage import study_artifact_store

    text = trial_spec_json(trial, study_artifact_store(study))
    assert text, f"trial {trial.number} has no spec"
    return text


def test_bad_budgets_are_one_line_errors(tmp_path, capsys):
    base = ["study", "--space", "resnet20_groups", "--data", "digits", "--trial", "search", "--out", str(tmp_path)]
    for budgets in ("x=3", "b=16,b=16"):
        assert cli.main([*base, "--budgets", budgets]) == 2
        err = capsys.readouterr().err.strip()
        assert "budget" in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert cli.main(base) == 2 and "--budgets" in capsys.readouterr().err
