"""``mgnas study`` / ``mgnas pareto``: workers on journal, SQLite and PostgreSQL storages, crash + resume,
Pareto export checked by brute force, bad input. CPU, short trials (MGIC-ResNet-56 on 8x8 digits, 1 epoch)."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from mgnas.strategies._pareto import dominates  # noqa: E402
from mgnas.strategies.optuna_study import StudyConfig, open_storage, open_study  # noqa: E402

from mgnas import cli  # noqa: E402
from mgnas.cli._study import ParetoCommand, StudyCommand  # noqa: E402

WORKER = Path(__file__).with_name("_study_worker.py")
FAST = ["--space", "mgic_resnet56", "--data", "digits", "--epochs-per-trial", "1", "--batch-size", "128",
        "--sampler", "random", "--no-plots", "--set", "heartbeat_interval=1", "--set", "grace_period=3"]
PG_BIN = Path("/usr/lib/postgresql/15/bin")


@pytest.fixture(autouse=True)
def _register(monkeypatch):
    if not any(c.name == "study" for c in cli.COMMANDS):
        monkeypatch.setattr(cli, "COMMANDS", [*cli.COMMANDS, StudyCommand(), ParetoCommand()])


def _worker(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([sys.executable, str(WORKER), *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _load(storage: str, name: str):
    return optuna.load_study(study_name=name, storage=open_storage(storage))


def _check_finished(study, n: int) -> None:
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == n, [(t.number, t.state.name) for t in trials]
    complete = [tuple(sorted(t.params.items())) for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == len(set(complete)), "a parameter set was counted twice"
    for t in trials:
        if t.state.name == "COMPLETE":
            assert "spec_artifact" in t.user_attrs and "spec" not in t.user_attrs  # the spec is an artifact
            assert t.user_attrs["params"] == t.values[1]


def _two_workers(tmp_path: Path, storage: str, n: int = 4) -> None:
    procs = [_worker("study", *FAST, "--trials", str(n), "--storage", storage, "--study-name", "w",
                     "--out", str(tmp_path / f"w{i}"), "--seed", str(i)) for i in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err[-2000:]
    _check_finished(_load(storage, "w"), n)


def test_two_workers_journal(tmp_path):
    _two_workers(tmp_path, f"journal:{tmp_path / 'study.log'}")


def test_two_workers_sqlite_created_first(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    open_study(StudyConfig(study_name="w", sampler="random"), open_storage(url))  # the storage exists first
    _two_workers(tmp_path, url)


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_killed_worker_is_retried_and_nothing_finished_is_lost(tmp_path, kind):
    path = tmp_path / ("study.db" if kind == "sqlite" else "study.log")
    url = f"sqlite:///{path}" if kind == "sqlite" else f"journal:{path}"
    args = ["study", *FAST, "--trials", "3", "--storage", url, "--study-name", "k", "--out", str(tmp_path / "o")]
    first = _worker(*args)
    deadline, study = time.time() + 120, None
    while time.time() < deadline:  # wait for one finished trial and a second one training (all choices made)
        time.sleep(0.3)
        if path.exists():
            try:
                study = _load(url, "k")
            except KeyError:
                continue
            trials = study.get_trials(deepcopy=False)
            if any(t.state.name == "COMPLETE" for t in trials) and any(
                    t.state.name == "RUNNING" and "spec_hash" in t.user_attrs for t in trials):
                break
    first.send_signal(signal.SIGKILL)
    first.communicate()
    before = {t.number: t.values for t in _load(url, "k").get_trials(deepcopy=False) if t.state.name == "COMPLETE"}
    killed = [t for t in _load(url, "k").get_trials(deepcopy=False) if t.state.name == "RUNNING"]
    assert before and killed and killed[0].params, "the first worker was not caught mid-training"
    second = _worker(*args)
    out, err = second.communicate(timeout=240)
    assert second.returncode == 0, err[-2000:]
    study = _load(url, "k")
    _check_finished(study, 3)
    after = {t.number: t.values for t in study.get_trials(deepcopy=False)}
    assert all(after[n] == v for n, v in before.items())  # no finished trial lost or changed
    states = {t.number: t.state.name for t in study.get_trials(deepcopy=False)}
    assert states[killed[0].number] == "FAIL"
    retried = [t for t in study.get_trials(deepcopy=False) if t.system_attrs.get("failed_trial") == killed[0].number]
    assert retried and retried[0].params == killed[0].params


@pytest.fixture(scope="module")
def small_study(tmp_path_factory):
    """A 4-trial MGIC study on digits, run in-process through the CLI, then exported by ``mgnas pareto``."""
    out = tmp_path_factory.mktemp("study")
    mp = pytest.MonkeyPatch()
    if not any(c.name == "study" for c in cli.COMMANDS):
        mp.setattr(cli, "COMMANDS", [*cli.COMMANDS, StudyCommand(), ParetoCommand()])
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 threads on a shared 2-core machine can be many times slower
    mp.setenv("MGNAS_THREADS", "1")  # ... and mgnas.cli sizes its threads by mgnas.runtime's policy
    t0 = time.perf_counter()
    rc = cli.main(["study", "--space", "mgic_resnet56", "--data", "digits", "--epochs-per-trial", "1",
                   "--batch-size", "64", "--trials", "4", "--objectives", "accuracy,params,macs", "--study-name", "s",
                   "--out", str(out)])
    assert rc == 0
    seconds = time.perf_counter() - t0
    url = f"sqlite:///{out / 'study.db'}"
    rc = cli.main(["pareto", "--storage", url, "--study-name", "s", "--out", str(out / "export")])
    mp.undo()
    torch.set_num_threads(threads)
    assert rc == 0
    return out, url, seconds


def test_fast_mgic_study_on_digits(small_study):
    out, url, seconds = small_study
    study = _load(url, "s")
    _check_finished(study, 4)
    assert (out / "trials.csv").is_file() and (out / "pareto.html").is_file() and (out / "config.yaml").is_file()
    assert seconds < 300  # ~15 s alone on 2 cores; a loose bound: other jobs share the machine


def test_pareto_export_is_non_dominated_and_rebuilds(small_study):
    from mgnas.models import build_model
    from mgnas.profile import count
    from mgnas.spec import load

    out, url, _ = small_study
    study = _load(url, "s")
    directions = [d.name.lower() for d in study.directions]
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    files = sorted((out / "export" / "front").glob("trial_*.json"))
    assert files
    expected = {t.number for t in complete if not any(dominates(u.values, t.values, directions) for u in complete)}
    exported = set()
    for f in files:
        spec = load(f)
        number = spec.provenance["trial"]
        exported.add(number)
        trial = next(t for t in complete if t.number == number)
        assert not any(dominates(u.values, trial.values, directions) for u in complete)  # brute force
        assert spec.metrics["params"] == trial.user_attrs["params"] == trial.values[1]
        assert count(build_model(spec), tuple(spec.input_size), per_layer=False).params == spec.metrics["params"]
    assert exported == expected
    rows = (out / "export" / "trials.csv").read_text().splitlines()
    assert len(rows) == 1 + len(study.get_trials(deepcopy=False))
    data = json.loads((out / "export" / "pareto.json").read_text())
    assert sorted(data["front"]["front"]) == sorted(expected)
    hv = data["hypervolume"]["hypervolume"]
    assert all(b >= a for a, b in itertools.pairwise(hv))  # hypervolume never decreases


def _bad(capsys, argv):
    rc = cli.main(argv)
    err = capsys.readouterr().err.strip()
    return rc, err


@pytest.mark.parametrize("extra, needle", [
    (["--space", "nope"], "unknown space"),
    (["--sampler", "cmaes"], "sampler"),
    (["--objectives", "accuracy,latency"], "objectives"),
    (["--storage", "postgresql+psycopg2://nobody@127.0.0.1:1/none"], "cannot be opened"),
    (["--storage", "sqlite:////no/such/dir/x.db"], "does not exist"),
    (["--objectives", "accuracy"], "already exists"),
])
def test_bad_input_one_line_exit_2(small_study, tmp_path, capsys, extra, needle):
    out, url, _ = small_study
    before = [(t.number, t.state.name, t.values) for t in _load(url, "s").get_trials(deepcopy=False)]
    argv = ["study", "--space", "mgic_resnet56", "--data", "digits", "--trials", "5", "--study-name", "s",
            "--storage", url, "--out", str(tmp_path / "x"), "--no-plots", *extra]
    rc, err = _bad(capsys, argv)
    assert rc == 2 and len(err.splitlines()) == 1 and needle in err, err
    after = [(t.number, t.state.name, t.values) for t in _load(url, "s").get_trials(deepcopy=False)]
    assert after == before  # the existing study is untouched
    assert _load(url, "s").directions == [optuna.study.StudyDirection.MAXIMIZE] + [
        optuna.study.StudyDirection.MINIMIZE] * 2


def test_pareto_bad_input(small_study, capsys, tmp_path):
    _, url, _ = small_study
    rc, err = _bad(capsys, ["pareto", "--storage", url, "--study-name", "zzz", "--out", str(tmp_path)])
    assert rc == 2 and "no study named" in err and len(err.splitlines()) == 1


# --------------------------------------------------------------------------- PostgreSQL
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres(tmp_path):
    if not (PG_BIN / "initdb").exists() or not (PG_BIN / "pg_ctl").exists():
        pytest.skip(f"PostgreSQL server binaries not found in {PG_BIN} (apt-get install postgresql)")
    pytest.importorskip("psycopg2", reason="the psycopg2 driver (psycopg2-binary) is not installed")
    root = Path(tempfile.mkdtemp(prefix="mgnas-pg-"))  # under /tmp: the server user must reach it
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root: run the server as the postgres (or nobody) user
        user = "postgres" if _has_user("postgres") else "nobody"
        shutil.chown(root, user=user)
        prefix = ["runuser", "-u", user, "--"]
    data, port = root / "data", _free_port()
    try:
        _pg(prefix, "initdb", "-D", str(data), "-U", "mgnas", "-A", "trust")
        _pg(prefix, "pg_ctl", "-D", str(data), "-l", str(root / "log"), "-w", "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start")
        yield f"postgresql+psycopg2://mgnas@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _pg(prefix: list[str], tool: str, *args: str) -> None:
    proc = subprocess.run([*prefix, str(PG_BIN / tool), *args], capture_output=True, text=True)
    assert proc.returncode == 0, f"{tool} failed: {proc.stderr[-1000:]}"


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def test_two_workers_postgresql(tmp_path, postgres):
    open_study(StudyConfig(study_name="w", sampler="random"), open_storage(postgres))
    _two_workers(tmp_path, postgres)


@pytest.mark.parametrize("name", ["study_mgic_resnet56_ablation", "study_mgiad_cifar10", "study_mgiad_cifar100"])
def test_experiment_configs_load_and_fill_their_grid(name):
    import math

    from mgnas.strategies.optuna_study import _search_space

    from mgnas.config import load_config

    path = Path(__file__).resolve().parents[1] / "experiments" / "configs" / f"{name}.yaml"
    config = load_config(StudyConfig, path)
    assert config.sampler == "grid" and config.trials == math.prod(len(v) for v in _search_space(config).values())
    assert config.train.epochs == 200 and config.train.optimizer == "sgd"


# --------------------------------------------------------------------------- the full-size check (slow)
@pytest.mark.slow
def test_twenty_trial_mgic_study_on_digits(tmp_path):
    """20 short MGIC-ResNet-56 trials on digits (TPE, 3 epochs each): < 15 min on 2 cores, >= 3 Pareto points."""
    t0 = time.perf_counter()
    rc = cli.main(["study", "--space", "mgic_resnet56", "--data", "digits", "--trials", "20", "--epochs-per-trial",
                   "3", "--pruner", "none", "--study-name", "twenty", "--out", str(tmp_path)])
    seconds = time.perf_counter() - t0
    assert rc == 0
    study = _load(f"sqlite:///{tmp_path / 'study.db'}", "twenty")
    _check_finished(study, 20)
    assert seconds < 15 * 60, f"{seconds:.0f} s"
    front = sorted((tmp_path / "front").glob("trial_*.json"))
    assert len(front) >= 3, [t.values for t in study.best_trials]
    print(f"20 trials in {seconds:.0f} s, {len(front)} Pareto points")


def test_trial_line_says_how_each_trial_ended():  # create_trial numbers its trials -1
    from mgnas.strategies.optuna_study import trial_line

    ok = optuna.trial.create_trial(values=[0.8125, 304282.0], user_attrs={"seconds": 3.25})
    assert trial_line(ok, ("accuracy", "params")) == (
        "trial -1: complete: accuracy 0.8125, params 304,282 (3.2 s training)")
    pruned = optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, user_attrs={"infeasible": "levels 3"})
    assert trial_line(pruned, ("accuracy",)) == "trial -1: pruned: infeasible: levels 3"
    dup = optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, user_attrs={"duplicate_of": 4})
    assert "trial 4" in trial_line(dup, ("accuracy",))


# --------------------------------------------------------------------------- the storage in Optuna's own tools
def _journal_study(tmp_path: Path) -> str:
    url = f"journal:{tmp_path / 'study.log'}"
    study = open_study(StudyConfig(study_name="j", sampler="random"), open_storage(url))
    dist = optuna.distributions.CategoricalDistribution([4, 8])
    study.add_trial(optuna.trial.create_trial(params={"group_size": 8}, distributions={"group_size": dist},
                                              values=[0.5, 1000.0], user_attrs={"params": 1000}))
    return url


@contextlib.contextmanager
def _dashboard(storage_arg: str, artifact_dir: Path | None = None):
    """Start the real ``optuna-dashboard`` server on the storage; yield a GET function for its REST API."""
    import urllib.request

    exe = Path(sys.executable).with_name("optuna-dashboard")
    if not exe.exists():
        pytest.skip("optuna-dashboard is not installed (pip install optuna-dashboard)")
    port = _free_port()
    extra = ["--artifact-dir", str(artifact_dir)] if artifact_dir is not None else []
    proc = subprocess.Popen([str(exe), storage_arg, "--host", "127.0.0.1", "--port", str(port), *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def get(path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.read()

    try:
        deadline = time.time() + 60
        while True:
            try:
                get("/api/studies")
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise AssertionError(f"optuna-dashboard did not serve: {proc.stderr.read()[-1000:]}") from None
                time.sleep(0.3)
        yield get
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _dashboard_studies(storage_arg: str) -> list[dict]:
    """The studies the real ``optuna-dashboard``'s REST API lists for the storage."""
    with _dashboard(storage_arg) as get:
        return json.loads(get("/api/studies"))["study_summaries"]


def test_dashboard_shows_metric_names_and_the_spec_artifact(small_study):
    """optuna-dashboard (with --artifact-dir beside the storage) names the objectives and serves each
    trial's spec artifact, which rebuilds to the recorded parameter count."""
    from mgnas.models import build_model
    from mgnas.profile import count
    from mgnas.spec import loads

    out, url, _ = small_study
    study = _load(url, "s")
    assert study.metric_names == ["accuracy", "params", "macs"]
    assert study.user_attrs["artifact_dir"] == str((out / "artifacts").resolve())
    with _dashboard(url, out / "artifacts") as get:
        summary = json.loads(get("/api/studies"))["study_summaries"][0]
        detail = json.loads(get(f"/api/studies/{summary['study_id']}?after=0"))
        assert detail["objective_names"] == ["accuracy", "params", "macs"]
        trial = next(t for t in detail["trials"] if t["state"] == "Complete")
        attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
        assert "spec" not in attrs and len(json.dumps(attrs)) < 4000  # no 16-30 KB spec in the attrs
        artifact = next(a for a in trial["artifacts"] if a["artifact_id"] == attrs["spec_artifact"])
        assert artifact["filename"].endswith(".spec.json") and artifact["mimetype"] == "application/json"
        spec = loads(get(f"/artifacts/{summary['study_id']}/{trial['trial_id']}/{artifact['artifact_id']}").decode())
    assert spec.content_hash() == attrs["spec_hash"]
    assert count(build_model(spec), tuple(spec.input_size), per_layer=False).params == int(attrs["params"])
    from mgnas.strategies.study._config import numeric_order

    numeric = 0
    for t in study.get_trials(deepcopy=False):  # numeric choices are stored as numbers, in ascending order
        for label, dist in t.distributions.items():
            if label != "level_rule":
                numeric += 1
                assert not any(isinstance(c, str) for c in dist.choices), (label, dist.choices)
                assert list(dist.choices) == numeric_order(dist.choices), (label, dist.choices)
                assert t.params[label] is None or isinstance(t.params[label], int)
    assert numeric > 0


def test_trials_csv_feasible_agrees_with_infeasible_pruning():
    import csv
    import io

    from mgnas.strategies.study._pareto import _trials_csv

    study = optuna.create_study(directions=["maximize", "minimize"])
    study.add_trial(optuna.trial.create_trial(values=[0.5, 10.0]))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED,
                                              user_attrs={"infeasible": "group_size 32 must divide 16"}))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, user_attrs={"duplicate_of": 0}))
    rows = list(csv.DictReader(io.StringIO(_trials_csv(study, ["accuracy", "params"]))))
    assert [r["feasible"] for r in rows] == ["True", "False", "True"]
    assert rows[1]["attr_infeasible"].startswith("group_size 32")


def test_numeric_choices_are_suggested_in_ascending_order():
    from mgnas.strategies.study._config import numeric_order

    assert numeric_order([32, 4, 16]) == [4, 16, 32]
    assert numeric_order([3, None, 1]) == [None, 1, 3]
    assert numeric_order(["code", "paper"]) == ["code", "paper"]
    config = StudyConfig(sampler="grid", choices={"group_size": [16, 4]})
    from mgnas.strategies.study._config import _search_space

    assert _search_space(config)["group_size"] == [4, 16]


def test_storages_open_in_optuna_dashboard_and_the_optuna_cli(small_study, tmp_path):
    _, url, _ = small_study
    journal = _journal_study(tmp_path)
    path = journal[len("journal:"):]
    for storage_arg, name in ((url, "s"), (path, "j")):
        studies = _dashboard_studies(storage_arg)
        assert [s["study_name"] for s in studies] == [name]
        assert studies[0]["directions"][0] == "maximize"
    optuna_cli = str(Path(sys.executable).with_name("optuna"))
    numbers = [t.number for t in _load(url, "s").get_trials(deepcopy=False)]
    journal_args = [path, "--storage-class", "JournalFileBackend"]
    for storage_args, name, want in (([url], "s", numbers), (journal_args, "j", [0])):
        proc = subprocess.run([optuna_cli, "--storage", *storage_args, "trials", "-f", "json", "--study-name", name],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-1000:]
        assert [row["number"] for row in json.loads(proc.stdout)] == want
