"""``mgnas demo`` end to end (short): search, then the MGIC study, then index.html linking everything."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("optuna")

import mgnas.cli as cli  # noqa: E402
from mgnas.spec import load  # noqa: E402
from mgnas.viz import index_data  # noqa: E402


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)  # the same run whichever tests ran before in this process
    out = tmp_path_factory.mktemp("demo") / "run"
    try:
        # short: 1 search epoch, 2 study trials of 1 epoch each (the default 3 only trains the trials longer)
        rc = cli.main(["demo", "--out", str(out), "--epochs", "1", "--study-trials", "2", "--study-epochs", "1",
                       "--no-progress"])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    return out


def test_demo_writes_search_study_and_index(demo):
    for name in ("spec.json", "result.json", "report.html", "study/trials.csv", "study/pareto.html",
                 "study/study.db", "index.html"):
        assert (demo / name).is_file(), name
    sections = index_data(demo)
    assert [s.title.split(":")[0] for s in sections] == ["search", "study"]
    search, study = sections
    assert search.summary["parameters"] == f"{load(demo / 'spec.json').metrics['params']:,}"
    finished = sum(int(n) for n in re.findall(r"(\d+) (?:complete|pruned)", study.summary["trials"]))
    assert finished == 2
    assert study.table_rows and all((demo / row[0]).is_file() for row in study.table_rows)


def test_study_epochs_sets_the_epochs_of_every_trial(demo):
    import optuna

    trials = optuna.load_study(study_name="demo", storage=f"sqlite:///{demo / 'study' / 'study.db'}").trials
    assert len(trials) == 2 and all(len(t.user_attrs["val_accuracy_history"]) == 1 for t in trials)


def test_every_link_of_the_index_resolves(demo):
    page = (demo / "index.html").read_text()
    links = re.findall(r"href='([^']+)'", page)
    assert {"report.html", "spec.json", "study/pareto.html", "study/trials.csv"} <= set(links)
    missing = [link for link in links if not (demo / link).is_file()]
    assert not missing, missing


@pytest.mark.parametrize("flag, value", [("--study-trials", "-1"), ("--study-epochs", "0")])
def test_bad_study_trials_exits_2_before_anything_is_written(demo, capsys, flag, value):
    assert cli.main(["demo", "--out", str(demo), flag, value]) == 2
    assert flag in capsys.readouterr().err
    assert not Path(f"{demo}-2").exists()
