"""Nothing overwritten (issue 11, class 3): one rule for every command's output directory (``mgnas._rundir``),
outputs renamed into place only on success (``mgnas._atomic``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import mgnas.cli as cli
from mgnas._atomic import atomic_path, write_text_atomic
from mgnas._rundir import MARKER, RunDirError, check_dir, claim_dir, claimed, read_marker, sweep_dead_temps

STUDY = {"study_name": "s1", "storage": "sqlite:///x/study.db"}


def _snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line(capsys, code, argv, *expect):
    assert cli.main(argv) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for text in expect:
        assert text in err, err
    return err


def _fake_run(folder, kind, identity=None, files=("config.yaml", "checkpoint.pt")):
    claim_dir(folder, kind, identity=identity, command=["mgnas", kind])
    for name in files:
        (folder / name).write_text(f"{kind}'s {name}\n")
    return _snapshot(folder)


# ------------------------------------------------------------------ the rule, command by command
def test_study_into_a_search_directory_is_refused(tmp_path, capsys):
    run = tmp_path / "search"
    before = _fake_run(run, "search")
    _one_line(capsys, 2, ["study", "--space", "mgic_resnet56", "--data", "digits", "--trials", "1",
                          "--out", str(run)], "holds a run of `mgnas search`")
    assert _snapshot(run) == before  # config.yaml untouched


def test_study_into_a_legacy_search_directory_is_refused(tmp_path, capsys):
    run = tmp_path / "old"
    run.mkdir()
    (run / "config.yaml").write_text("search\n")
    (run / "checkpoint.pt").write_text("x")
    before = _snapshot(run)
    _one_line(capsys, 2, ["study", "--space", "mgic_resnet56", "--data", "digits", "--trials", "1",
                          "--out", str(run)], "holds a search or train run (checkpoint.pt)")
    assert _snapshot(run) == before


@pytest.mark.parametrize("kind", ["study", "train", "pareto"])
def test_search_and_train_refuse_another_kind_even_with_resume(tmp_path, capsys, kind):
    run = tmp_path / "d"
    before = _fake_run(run, kind, identity=STUDY if kind in ("study", "pareto") else None)
    command = "search" if kind != "search" else "train"
    args = ["--space", "resnet20_groups"] if command == "search" else ["--model", "resnet20_cifar"]
    for resume in ([], ["--resume"]):
        _one_line(capsys, 2, [command, *args, "--data", "digits", "--epochs", "1", "--out", str(run), *resume,
                              "--no-progress"], f"holds a run of `mgnas {kind}`")
    assert _snapshot(run) == before


def test_same_kind_needs_resume(tmp_path, capsys):
    run = tmp_path / "s"
    before = _fake_run(run, "search")
    _one_line(capsys, 2, ["search", "--space", "resnet20_groups", "--data", "digits", "--epochs", "1",
                          "--out", str(run), "--no-progress"], "already holds a run", "--resume")
    assert _snapshot(run) == before


def test_pareto_into_another_studys_directory_is_refused(tmp_path, capsys):
    optuna = pytest.importorskip("optuna")
    db = f"sqlite:///{tmp_path / 'other.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="mine", storage=db, directions=["maximize", "minimize"])
    study.add_trial(optuna.trial.create_trial(values=[0.5, 100.0], params={}, distributions={}))
    other = tmp_path / "other"
    before = _fake_run(other, "study", identity={"study_name": "theirs", "storage": db},
                       files=("trials.csv", "pareto.html", "study.json"))
    (other / "front").mkdir()
    (other / "front" / "trial_0003.json").write_text("{}")
    before = _snapshot(other)
    _one_line(capsys, 2, ["pareto", "--storage", db, "--study-name", "mine", "--out", str(other), "--no-png"],
              "holds a run of `mgnas study` 'theirs'", "pareto writes only into the directory of the same study")
    assert _snapshot(other) == before  # trials.csv, pareto.html and front/ untouched


def test_pareto_rules():
    """pareto --out into a study's own directory: only for that same study (same name and storage)."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        study = Path(d) / "study"
        _fake_run(study, "study", identity=STUDY, files=("study.json",))
        check_dir(study, "pareto", identity=STUDY)  # the same study: allowed
        check_dir(study, "study", identity=STUDY)  # re-running the study resumes it
        for other in ({"study_name": "s2", "storage": STUDY["storage"]}, {"study_name": "s1", "storage": "journal:j"}):
            with pytest.raises(RunDirError, match="pareto writes only into the directory of the same study"):
                check_dir(study, "pareto", identity=other)
            with pytest.raises(RunDirError, match="another study"):
                check_dir(study, "study", identity=other)
        export = Path(d) / "export"
        claim_dir(export, "pareto", identity=STUDY)
        check_dir(export, "pareto", identity=STUDY)
        with pytest.raises(RunDirError, match="another study"):
            check_dir(export, "pareto", identity={"study_name": "s2", "storage": "sqlite:///y.db"})
        with pytest.raises(RunDirError, match="`mgnas pareto`"):
            check_dir(export, "study", identity=STUDY)
        # legacy study directory (no marker): study.json names the study
        legacy = Path(d) / "legacy"
        legacy.mkdir()
        (legacy / "study.json").write_text(json.dumps(STUDY))
        check_dir(legacy, "pareto", identity=STUDY)
        with pytest.raises(RunDirError, match="study 's1' \\(study.json\\), another study"):
            check_dir(legacy, "pareto", identity={"study_name": "s9", "storage": STUDY["storage"]})
        # a file is not a directory; foreign files without a marker are left alone and the directory is used
        (Path(d) / "f").write_text("x")
        with pytest.raises(RunDirError, match="is a file"):
            check_dir(Path(d) / "f", "search")
        mine = Path(d) / "mine"
        mine.mkdir()
        (mine / "notes.txt").write_text("keep me")
        claim_dir(mine, "search")
        assert read_marker(mine)["kind"] == "search" and (mine / "notes.txt").read_text() == "keep me"


def test_same_storage_spellings(tmp_path, monkeypatch):
    from mgnas._rundir import same_storage

    monkeypatch.chdir(tmp_path)
    assert same_storage("sqlite:///a/study.db", f"sqlite:///{tmp_path}/a/study.db")
    assert not same_storage("sqlite:///a/study.db", "sqlite:///b/study.db")
    assert same_storage("postgresql://u@h/db", "postgresql://u@h/db")


def test_nni_nas_and_demo_refuse_other_runs(tmp_path, capsys):
    run = tmp_path / "t"
    before = _fake_run(run, "train")
    with pytest.raises(RunDirError, match="`mgnas train`"):
        check_dir(run, "nni-nas")
    from mgnas.cli._demo import _free_dir

    assert _free_dir(run) == tmp_path / "t-2"  # the demo never writes into another run
    (tmp_path / "m").mkdir()
    claim_dir(tmp_path / "m", "search")
    assert _free_dir(tmp_path / "m") == tmp_path / "m-2"  # a killed run's marker alone is enough
    assert _snapshot(run) == before


def test_a_run_refused_late_leaves_no_directory(tmp_path, capsys):
    out = tmp_path / "new"
    _one_line(capsys, 2, ["search", "--space", "no_such_space", "--data", "digits", "--epochs", "1",
                          "--out", str(out), "--no-progress"])
    assert not out.exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="late"), claimed(existing, "train"):
        assert read_marker(existing)["kind"] == "train"
        raise ValueError("bad input found late")
    assert sorted(p.name for p in existing.iterdir()) == ["notes.txt"]  # marker withdrawn, files kept
    with pytest.raises(OSError), claimed(existing, "train"):
        (existing / "checkpoint.pt").write_text("x")
        raise OSError("killed after writing")
    assert read_marker(existing)["kind"] == "train"  # the run wrote something: its marker stays (--resume)


# ------------------------------------------------------------------ atomic outputs
def test_atomic_path_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "weights.pt"
    target.write_bytes(b"old and complete")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("exporter crashed")
    assert target.read_bytes() == b"old and complete"
    assert os.listdir(tmp_path) == ["weights.pt"]
    write_text_atomic("new", target)
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["weights.pt"]


def test_failing_export_never_replaces_an_existing_file(tmp_path, monkeypatch):
    from mgnas.export import _export

    target = tmp_path / "m.onnx"
    target.write_bytes(b"previous model")

    def broken(model, x, path, opset):
        path.write_bytes(b"partial")
        raise RuntimeError("onnxscript: opset 1 is not supported")

    monkeypatch.setattr(_export, "_write_onnx", broken)
    with pytest.raises(RuntimeError, match="opset 1"):
        _export.export("resnet20_cifar", "onnx", target, check=False, opset=1)
    assert target.read_bytes() == b"previous model"
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]  # no temporary file, no manifest of a failed export


def test_sweep_removes_only_dead_writers_temps(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    (tmp_path / f".spec.json.tmp{pid}").write_text("x")
    (tmp_path / f".trials.csv.tmp{os.getpid()}").write_text("mine, still writing")
    (tmp_path / "front").mkdir()
    (tmp_path / "front" / f".trial_0001.json.tmp{pid}").write_text("x")
    (tmp_path / "keep.tmp").write_text("not ours")
    removed = sweep_dead_temps(tmp_path)
    assert sorted(p.name for p in removed) == sorted([f".spec.json.tmp{pid}", f".trial_0001.json.tmp{pid}"])
    assert sorted(os.listdir(tmp_path)) == sorted([f".trials.csv.tmp{os.getpid()}", "front", "keep.tmp"])


def test_marker_records_kind_and_command(tmp_path):
    out = claim_dir(tmp_path / "r", "study", identity=STUDY, command=["mgnas", "study", "--out", "r"])
    marker = json.loads((out / MARKER).read_text())
    assert marker["kind"] == "study" and marker["identity"] == STUDY and marker["command"][1] == "study"
    assert marker["created"]
