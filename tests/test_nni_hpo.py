"""``mgnas study --backend nni``: a 3-trial local NNI HPO experiment on digits ending in mgnas specs, the
search-space conversion, the trial entry point's infeasible / duplicate paths, the import into Optuna, bad input."""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import json
import os
import socket
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("nni")
optuna = pytest.importorskip("optuna")

from mgnas.strategies._experimental import ExperimentalWarning  # noqa: E402
from mgnas.strategies.nni_hpo import (  # noqa: E402
    decode_parameters,
    import_trials,
    nni_search_space,
    run_nni_study,
)
from mgnas.strategies.optuna_study import StudyConfig, StudyError, open_storage  # noqa: E402

from mgnas import cli  # noqa: E402
from mgnas.cli._study import ParetoCommand, StudyCommand  # noqa: E402

RESTRICT = ["--set", "fixed.levels=null", "--set", "choices.group_size=[4,8,16]"]  # 18 points, all feasible


def _register(mp: pytest.MonkeyPatch) -> None:
    if not any(c.name == "study" for c in cli.COMMANDS):
        mp.setattr(cli, "COMMANDS", [*cli.COMMANDS, StudyCommand(), ParetoCommand()])


@pytest.fixture(autouse=True)
def _commands(monkeypatch):
    _register(monkeypatch)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _leftovers(marker: str) -> list[str]:
    """Live processes belonging to the experiment under ``marker`` (NNI manager, tuner, trials)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        text = " ".join(proc.info["cmdline"] or [])
        words = text.split()
        if "--exp_params" in words and proc.info["pid"] != os.getpid():  # the tuner (and its sh -c wrapper):
            with contextlib.suppress(binascii.Error, ValueError, IndexError):  # its config is base64 JSON
                raw = words[words.index("--exp_params") + 1]
                text += base64.b64decode(raw + "=" * (-len(raw) % 4)).decode(errors="replace")
        if marker in text and proc.info["pid"] != os.getpid():
            found.append(f"{proc.info['pid']}: {text[:200]}")
    return found


@pytest.fixture(scope="module")
def nni_study(tmp_path_factory):
    """Run the 3-trial NNI experiment once through the CLI (TPE, 1 epoch, batch 128), then ``mgnas pareto``."""
    out = tmp_path_factory.mktemp("nni_study")
    mp = pytest.MonkeyPatch()
    _register(mp)
    mp.setenv("OMP_NUM_THREADS", "1")  # the trials are NNI's subprocesses: they inherit this
    port = _free_port()
    buf = io.StringIO()
    t0 = time.perf_counter()
    try:
        with contextlib.redirect_stdout(buf):
            rc = cli.main(["study", "--backend", "nni", "--nni-tuner", "tpe", "--nni-port", str(port),
                           "--space", "mgic_resnet56", "--data", "digits", "--epochs-per-trial", "1",
                           "--batch-size", "128", "--trials", "3", "--study-name", "n", "--out", str(out), *RESTRICT])
        seconds = time.perf_counter() - t0
        leftovers = _leftovers(str(out))
        url = f"sqlite:///{out / 'study.db'}"
        rc_pareto = cli.main(["pareto", "--storage", url, "--study-name", "n", "--out", str(out / "export"),
                              "--no-png"])
    finally:
        mp.undo()
    return SimpleNamespace(out=out, url=url, rc=rc, rc_pareto=rc_pareto, stdout=buf.getvalue(), port=port,
                           seconds=seconds, leftovers=leftovers)


def test_nni_experiment_imports_three_trials_that_rebuild(nni_study):
    from mgnas.search_spaces import get_space

    from mgnas.models import adapt_spec, build_model
    from mgnas.profile import count
    from mgnas.spec import loads

    assert nni_study.rc == 0, nni_study.stdout[-2000:]
    study = optuna.load_study(study_name="n", storage=open_storage(nni_study.url))
    trials = study.get_trials(deepcopy=False)
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3, [(t.state.name, t.user_attrs) for t in trials]
    assert len({t.user_attrs["nni_trial_id"] for t in trials}) == 3
    assert study.user_attrs["objectives"] == ["accuracy", "params"]
    space = get_space("mgic_resnet56")
    for t in trials:
        spec = loads(t.user_attrs["spec"])
        assert count(build_model(spec), tuple(spec.input_size), per_layer=False).params == t.user_attrs["params"]
        assert t.values == [t.user_attrs["val_accuracy"], t.user_attrs["params"]]
        assert set(t.params) == {"group_size", "coarse_size", "level_rule"} and t.params["group_size"] in (4, 8, 16)
        choices = {**t.params, "levels": None}  # the fixed label is pinned by the trial, not searched
        assert space.check_choices(choices) == choices == spec.provenance["choices"]
        expected = adapt_spec(space.freeze(choices), in_channels=1, num_classes=10, input_size=(1, 8, 8))
        assert expected.content_hash() == spec.content_hash()  # exactly the sample NNI chose, adapted to digits
        record = json.loads((nni_study.out / "nni" / "trials" / f"{t.user_attrs['nni_trial_id']}.json").read_text())
        assert record["choices"] == t.params and record["val_accuracy"] == t.values[0]
        assert len(t.user_attrs["val_accuracy_history"]) == 1 and t.intermediate_values == {0: t.values[0]}


def test_nni_results_export_like_optuna(nni_study):
    out = nni_study.out
    assert nni_study.rc_pareto == 0
    for folder in (out, out / "export"):
        assert (folder / "trials.csv").is_file() and (folder / "pareto.json").is_file()
        specs = sorted((folder / "front").glob("trial_*.json"))
        front = json.loads((folder / "pareto.json").read_text())["front"]["front"]
        assert specs and len(specs) == len(front)
    assert json.loads((out / "study.json").read_text())["backend"] == "nni"
    assert (out / "config.yaml").is_file()


def test_nni_web_ui_is_announced_with_the_interface_warning_and_nothing_is_left_running(nni_study):
    lines = nni_study.stdout.splitlines()
    assert any(line.startswith(f"NNI web UI: http://127.0.0.1:{nni_study.port}") for line in lines)
    assert any("listens on all network interfaces" in line for line in lines)
    assert any("experimental" in line for line in lines)
    assert nni_study.leftovers == []
    with socket.socket() as s:  # the manager's port is free again (REUSEADDR: past client sockets in TIME_WAIT)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("", nni_study.port))


def test_rerun_resumes_without_running_nni_again(nni_study, capsys):
    argv = ["study", "--backend", "nni", "--nni-port", str(nni_study.port), "--space", "mgic_resnet56", "--data",
            "digits", "--trials", "3", "--study-name", "n", "--out", str(nni_study.out), "--no-plots", *RESTRICT]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "NNI web UI" not in printed and "3 complete" in printed  # the study already holds its 3 trials


# --------------------------------------------------------------------------- search space conversion
def test_search_space_honours_fixed_and_choices_and_round_trips_none():
    cfg = StudyConfig(space="mgic_resnet56", fixed={"level_rule": "code"}, choices={"levels": [None, 1]})
    ss = nni_search_space(cfg)
    assert ss == {"group_size": {"_type": "choice", "_value": [4, 8, 16, 32]},
                  "coarse_size": {"_type": "choice", "_value": [16, 32, 64]},
                  "levels": {"_type": "choice", "_value": [None, 1]}}
    sent = json.loads(json.dumps({"group_size": 8, "coarse_size": 16, "levels": None}))
    assert decode_parameters(ss, sent) == {"group_size": 8, "coarse_size": 16, "levels": None}


def test_search_space_keeps_bools_apart_from_ints():
    from mgnas.search_spaces import get_space

    space = get_space("wrn28_10_groups")
    ss = nni_search_space(StudyConfig(space="wrn28_10_groups"))
    assert list(ss) == space.labels()
    label = next(d.label for d in space.dimensions() if any(isinstance(v, bool) for v in d.choices))
    params = {k: v["_value"][0] for k, v in ss.items()}
    params[label] = True
    decoded = decode_parameters(ss, json.loads(json.dumps(params)))
    assert decoded[label] is True
    params[label] = 1
    with pytest.raises(ValueError, match="not one of"):
        decode_parameters(ss, params)
    with pytest.raises(ValueError, match="missing"):
        decode_parameters(ss, {})


@pytest.mark.parametrize("cfg, needle", [
    (dict(fixed={"nope": 1}), "unknown label"),
    (dict(choices={"group_size": [5]}), "choices.group_size"),
    (dict(fixed={"group_size": 8, "coarse_size": 16, "levels": None, "level_rule": "paper"}), "nothing for NNI"),
])
def test_search_space_bad_input(cfg, needle):
    with pytest.raises(StudyError, match=needle):
        nni_search_space(StudyConfig(space="mgic_resnet56", **cfg))


def test_run_nni_study_is_experimental():
    assert run_nni_study.__experimental__ and "Experimental" in run_nni_study.__doc__
    from mgnas.strategies import _experimental

    _experimental._WARNED.discard(f"{run_nni_study.__module__}.run_nni_study")
    with pytest.warns(ExperimentalWarning), pytest.raises(StudyError, match="accuracy"):
        run_nni_study(StudyConfig(objectives=("params",)), "/nonexistent/never-created")


# --------------------------------------------------------------------------- the trial entry point
@pytest.fixture
def fake_nni(monkeypatch):
    """The real ``nni`` module with the trial API answered locally (no experiment needed)."""
    import nni

    state = SimpleNamespace(params=None, trial_id="T2", final=[], intermediate=[])
    monkeypatch.setattr(nni, "get_next_parameter", lambda: state.params)
    monkeypatch.setattr(nni, "get_trial_id", lambda: state.trial_id)
    monkeypatch.setattr(nni, "get_sequence_id", lambda: 2)
    monkeypatch.setattr(nni, "report_final_result", state.final.append)
    monkeypatch.setattr(nni, "report_intermediate_result", state.intermediate.append)
    return state


def _trial_dir(tmp_path: Path, **cfg) -> Path:
    from mgnas.config import dump_config

    (tmp_path / "trials").mkdir()
    (tmp_path / "study.yaml").write_text(dump_config(StudyConfig(space="mgic_resnet56", **cfg)))
    return tmp_path


def test_trial_reports_infeasible_choices_as_zero(tmp_path, fake_nni):
    from mgnas.strategies._nni_trial import run_trial

    out = _trial_dir(tmp_path)
    fake_nni.params = {"group_size": 32, "coarse_size": 16, "levels": None, "level_rule": "code"}
    record = run_trial(out / "study.yaml", out)
    assert "group_size 32 is impossible" in record["infeasible"]
    assert fake_nni.final[0]["default"] == 0.0 and not fake_nni.intermediate
    assert json.loads((out / "trials" / "T2.json").read_text())["infeasible"] == record["infeasible"]


def test_trial_does_not_train_a_choice_twice(tmp_path, fake_nni):
    from mgnas.strategies._nni_trial import run_trial

    out = _trial_dir(tmp_path, fixed={"levels": None})
    choices = {"group_size": 8, "coarse_size": 16, "level_rule": "paper"}
    (out / "trials" / "T1.json").write_text(json.dumps({"trial_id": "T1", "choices": choices, "val_accuracy": 0.7}))
    fake_nni.params = dict(choices)
    record = run_trial(out / "study.yaml", out)
    assert record["duplicate_of"] == "T1" and fake_nni.final == [{"default": 0.7, "duplicate_of": "T1"}]
    assert "val_accuracy" not in record and not fake_nni.intermediate  # not trained, not counted as trained


def test_import_maps_nni_outcomes_to_optuna_states(tmp_path):
    cfg = StudyConfig(space="mgic_resnet56", fixed={"levels": None}, objectives=("accuracy", "params"),
                      max_params=1000)
    ss = nni_search_space(cfg)
    choices = {"group_size": 8, "coarse_size": 16, "level_rule": "paper"}
    records = {
        "a": {"trial_id": "a", "choices": choices, "spec": "{}", "params": 2000, "macs": 5, "val_accuracy": 0.5,
              "test_accuracy": 0.4, "seconds": 1.0, "val_accuracy_history": [0.3, 0.5]},
        "b": {"trial_id": "b", "choices": choices, "duplicate_of": "a", "reported_accuracy": 0.5},
        "c": {"trial_id": "c", "choices": {**choices, "group_size": 4}, "infeasible": "why"},
    }
    for key, rec in records.items():
        (tmp_path / f"{key}.json").write_text(json.dumps(rec))
    hp = SimpleNamespace(parameters={**choices, "group_size": 16})
    jobs = [SimpleNamespace(trialJobId=k, status="SUCCEEDED", hyperParameters=[], stderrPath="") for k in "abc"]
    jobs.append(SimpleNamespace(trialJobId="d", status="FAILED", hyperParameters=[hp], stderrPath="/x/stderr"))
    study = optuna.create_study(directions=["maximize", "minimize"])
    assert import_trials(study, cfg, ss, tmp_path, jobs, experiment_id="E") == 4
    assert import_trials(study, cfg, ss, tmp_path, jobs) == 0  # idempotent: nothing imported twice
    a, b, c, d = study.get_trials(deepcopy=False)
    assert a.state.name == "COMPLETE" and a.values == [0.5, 2000.0] and a.intermediate_values == {0: 0.3, 1: 0.5}
    assert a.system_attrs["constraints:params"] == 1000.0 and a.user_attrs["nni_experiment_id"] == "E"
    assert b.state.name == "PRUNED" and b.user_attrs["duplicate_of"] == a.number and "val_accuracy" not in b.user_attrs
    assert c.state.name == "PRUNED" and c.user_attrs["infeasible"] == "why" and c.params["group_size"] == 4
    assert d.state.name == "FAIL" and d.params["group_size"] == 16 and d.user_attrs["nni_stderr"] == "/x/stderr"


def test_interrupted_experiment_keeps_finished_trials(tmp_path):
    from mgnas.strategies.nni_hpo import _jobs_from_records

    for name, seq, rec in (("x", 1, {"val_accuracy": 0.5}), ("y", 0, {"infeasible": "why"}), ("z", 2, {})):
        (tmp_path / f"{name}.json").write_text(json.dumps({"trial_id": name, "sequence": seq, **rec}))
    jobs = _jobs_from_records(tmp_path)
    assert [(j.trialJobId, j.status) for j in jobs] == [("y", "SUCCEEDED"), ("x", "SUCCEEDED"),
                                                        ("z", "USER_CANCELED")]


# --------------------------------------------------------------------------- bad input through the CLI
@pytest.fixture
def busy_port():
    with socket.socket() as s:
        s.bind(("", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.mark.parametrize("extra, needle", [
    (["--backend", "nni", "--sampler", "random"], "--sampler is for the optuna backend"),
    (["--nni-tuner", "evolution"], "--nni-tuner needs --backend nni"),
    (["--backend", "nni", "--objectives", "params,macs"], "must include accuracy"),
    (["--backend", "nni", "--trials", "100"], "exceeds the space's 18 points"),
    (["--backend", "nni", "--set", "choices.group_size=[5]"], "choices.group_size"),
    (["--backend", "nni", "--nni-port", "BUSY"], "already in use"),
])
def test_bad_input_one_line_exit_2(tmp_path, capsys, busy_port, extra, needle):
    extra = [str(busy_port) if a == "BUSY" else a for a in extra]
    argv = ["study", "--space", "mgic_resnet56", "--data", "digits", "--trials", "2", "--out", str(tmp_path / "o"),
            "--no-plots", *RESTRICT, *extra]
    rc = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "o" / "nni").exists()  # nothing was started


def test_nni_not_installed_is_one_line(tmp_path, capsys, monkeypatch):
    from mgnas.strategies import _nni_common

    def missing(nas: bool = False):
        raise _nni_common.NNIUnavailable("the NNI backend needs the nni extra (No module named 'nni'); install it "
                                         "with: pip install -c constraints.txt 'mgnas[nni]'")

    monkeypatch.setattr(_nni_common, "import_nni", missing)
    rc = cli.main(["study", "--backend", "nni", "--trials", "1", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "pip install" in err and "mgnas[nni]" in err, err
