"""A study through a plain ``postgresql://`` URL against a real PostgreSQL server (issue 11, class 8).

SQLAlchemy 2.1 maps a plain ``postgresql://`` URL to psycopg 3 (``psycopg``), not psycopg2: the ``optuna`` and
``dev`` extras install ``psycopg[binary]``. The server is the one ``tests/test_study.py``'s fixture starts from
the PostgreSQL binaries (the test is skipped, saying so, where they are not installed).
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("optuna")
pytest.importorskip("psycopg", reason="the psycopg 3 driver (psycopg[binary], optuna extra) is not installed")

from test_study import postgres  # noqa: E402,F401  (the fixture: a throw-away server on a free port)

import mgnas.cli as cli  # noqa: E402

FAST = ["--space", "mgic_resnet56", "--data", "digits", "--epochs-per-trial", "1", "--batch-size", "256",
        "--sampler", "random", "--pruner", "none", "--no-plots"]


def _plain(url: str) -> str:
    scheme, rest = url.split("://", 1)
    assert scheme.startswith("postgresql")
    return f"postgresql://{rest}"


def test_plain_url_uses_psycopg3():
    from sqlalchemy.engine import make_url

    assert make_url("postgresql://u@h/db").get_dialect().driver == "psycopg"


def test_study_and_pareto_through_a_plain_postgresql_url(tmp_path, capsys, postgres):  # noqa: F811
    url = _plain(postgres)
    out = tmp_path / "study"
    assert cli.main(["study", *FAST, "--trials", "1", "--storage", url, "--study-name", "plain",
                     "--out", str(out)]) == 0, capsys.readouterr().err
    assert json.loads((out / "study.json").read_text()) == {"storage": url, "study_name": "plain"}
    import optuna

    study = optuna.load_study(study_name="plain", storage=url)
    assert sum(t.state.name == "COMPLETE" for t in study.get_trials()) == 1
    capsys.readouterr()
    front = tmp_path / "front"
    assert cli.main(["pareto", "--storage", url, "--study-name", "plain", "--out", str(front), "--no-png"]) == 0
    assert (front / "trials.csv").read_text().count("COMPLETE") == 1
    assert list((front / "front").glob("trial_*.json"))
