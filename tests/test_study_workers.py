"""``mgnas study --jobs N``: local worker processes on one storage (issue 10 §1), and the thread policy of
:mod:`mgnas.runtime`. CPU, tiny trials (MGIC-ResNet-56 on 8x8 digits, 1 epoch, batch 128)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from mgnas.strategies.study import open_storage  # noqa: E402
from mgnas.strategies.study._workers import WorkerPlan, parse_devices, parse_jobs, plan_workers  # noqa: E402

from mgnas import cli  # noqa: E402

FAST = ["--space", "mgic_resnet56", "--data", "digits", "--epochs-per-trial", "1", "--batch-size", "128",
        "--sampler", "random", "--no-plots", "--set", "heartbeat_interval=1", "--set", "grace_period=3"]


def _load(url: str, name: str):
    return optuna.load_study(study_name=name, storage=open_storage(url))


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


#: Every trial trains (no infeasible suggestion pruned in a moment): a grid of 6 buildable MGIC structures.
GRID = ["--sampler", "grid", "--set", "fixed.levels=null", "--set", "fixed.level_rule=paper",
        "--set", "choices.group_size=[4,8]", "--set", "choices.coarse_size=[16,32,64]"]


def _parent(tmp_path: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([sys.executable, "-m", "mgnas", "study", *FAST, *GRID, "--out", str(tmp_path), *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait(predicate, timeout: float = 240.0, what: str = "the condition", proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the command ended before {what}: {proc.communicate()[0][-3000:]}")
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _trials(url: str, name: str) -> list:
    try:
        return _load(url, name).get_trials(deepcopy=False)
    except (KeyError, Exception):  # noqa: BLE001 - the storage may not exist yet
        return []


# --------------------------------------------------------------------------- planning (no processes)
def test_plan_cpu_splits_cores_among_workers():
    plans = plan_workers(2, cores=2, gpus=0)
    assert plans == [WorkerPlan(0, 1, "cpu", 0), WorkerPlan(1, 1, "cpu", 0)]
    assert [p.threads for p in plan_workers(3, cores=16, gpus=0, loader_workers=8)] == [5, 5, 5]
    assert [p.loader_workers for p in plan_workers(3, cores=16, gpus=0, loader_workers=8)] == [5, 5, 5]
    assert len(plan_workers("auto", cores=6, gpus=0)) == 6
    assert plan_workers(4, cores=2, gpus=0)[0].threads == 1  # never 0


def test_plan_gpus_worker_i_gets_devices_i_div_k():
    plans = plan_workers("auto", devices=[0, 1, 3], per_device=2, cores=12)
    assert [p.device for p in plans] == ["cuda:0", "cuda:0", "cuda:1", "cuda:1", "cuda:3", "cuda:3"]
    assert {p.threads for p in plans} == {2}
    assert [p.device for p in plan_workers("auto", per_device=2, cores=8, gpus=2)] == ["cuda:0"] * 2 + ["cuda:1"] * 2
    assert [p.device for p in plan_workers(2, device="cpu", cores=8, gpus=2)] == ["cpu", "cpu"]
    with pytest.raises(ValueError, match="per-device"):
        plan_workers(5, devices=[0, 1], per_device=2, cores=8)
    with pytest.raises(ValueError, match="no GPU"):
        plan_workers(2, device="cuda", cores=8, gpus=0)
    assert parse_jobs("auto") == "auto" and parse_jobs("3") == 3 and parse_devices("0, cuda:2") == [0, 2]
    for bad in ("0", "-1", "two"):
        with pytest.raises(ValueError, match="--jobs"):
            parse_jobs(bad)
    with pytest.raises(ValueError, match="--devices"):
        parse_devices("0,0")


def test_bad_jobs_flag_is_one_line_exit_2(tmp_path, capsys):
    rc = cli.main(["study", *FAST, "--trials", "1", "--jobs", "zero", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "--jobs" in err, err


def test_thread_policy(monkeypatch):
    import torch

    from mgnas.runtime import available_cores, configure_threads, default_threads

    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("MGNAS_THREADS", raising=False)
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        assert default_threads() == available_cores() == len(os.sched_getaffinity(0))
        assert default_threads(workers=available_cores() * 4) == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        assert default_threads() == 3  # the user's OpenMP setting is respected
        monkeypatch.setenv("MGNAS_THREADS", "2")
        assert configure_threads() == 2 and torch.get_num_threads() == 2  # MGNAS_THREADS wins
        assert configure_threads(1) == 1 and torch.get_num_threads() == 1  # an explicit count wins
        monkeypatch.setenv("MGNAS_THREADS", "many")
        with pytest.raises(ValueError, match="MGNAS_THREADS"):
            configure_threads()
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------- real workers
def test_jobs_2_runs_exactly_n_trials_and_records_where(tmp_path, monkeypatch):
    """In-process parent (`mgnas.cli.main`), two worker processes: exactly 3 finished trials, none twice, each
    trial records its worker, threads, device, pid and host."""
    monkeypatch.setenv("MGNAS_THREADS", "1")
    feasible = ["--set", "fixed.levels=null", "--set", "choices.group_size=[4,8,16]"]  # no all-infeasible draw
    rc = cli.main(["study", *FAST, *feasible, "--trials", "3", "--jobs", "2", "--study-name", "j",
                   "--out", str(tmp_path), "--seed", "3"])
    assert rc == 0
    study = _load(f"sqlite:///{tmp_path / 'study.db'}", "j")
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 3, [(t.number, t.state.name) for t in trials]
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    complete = [tuple(sorted(t.params.items())) for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == len(set(complete)), "a parameter set was trained twice"
    threads = max(1, len(os.sched_getaffinity(0)) // 2)
    for t in finished:
        a = t.user_attrs
        assert a["worker"] in (0, 1) and a["threads"] == threads and a["device"] == "cpu", a
        assert a["pid"] != os.getpid() and a["host"]
    pids = {t.user_attrs["worker"]: t.user_attrs["pid"] for t in finished}
    assert len(set(pids.values())) == len(pids)  # one process per worker
    assert not _children(os.getpid()), "a worker outlived the command"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killing_the_parent_leaves_no_orphan(tmp_path, sig):
    """SIGTERM: the parent stops its workers; SIGKILL: the workers see their parent die (PR_SET_PDEATHSIG) and
    stop. Either way no worker is left, and the interrupted trials are failed (and, on SIGTERM, queued again)."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    parent = _parent(tmp_path, "--trials", "4", "--jobs", "2", "--study-name", "o")
    try:
        _wait(lambda: len(_children(parent.pid)) == 2, what="two workers", proc=parent)
        workers = _children(parent.pid)
        _wait(lambda: any(t.state.name == "RUNNING" and "spec_hash" in t.user_attrs for t in _trials(url, "o")),
              what="a trial in training", proc=parent)
        parent.send_signal(sig)
        parent.wait(timeout=60)
        _wait(lambda: not any(_alive(p) for p in workers), timeout=60, what="the workers to exit")
    finally:
        if parent.poll() is None:
            parent.kill()
        out, _ = parent.communicate()
    assert parent.returncode != 0
    trials = _trials(url, "o")
    assert not any(t.state.name == "RUNNING" for t in trials), ([(t.number, t.state.name) for t in trials], out)
    failed = [t for t in trials if t.state.name == "FAIL" and not t.user_attrs.get("surplus")]
    assert failed, [(t.number, t.state.name) for t in trials]
    retried = {t.system_attrs.get("failed_trial") for t in trials if t.state.name == "WAITING"}
    assert {t.number for t in failed} <= retried  # re-running the command retries them


def test_a_worker_killed_mid_trial_loses_no_finished_trial(tmp_path):
    """SIGKILL one worker while it trains: the study still ends with exactly N finished trials, every trial
    finished before the kill is unchanged, and the killed trial is failed and retried by the other worker."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    parent = _parent(tmp_path, "--trials", "3", "--jobs", "2", "--study-name", "k")
    seen: dict = {}
    try:
        def ready() -> bool:  # one read of the storage decides both, so the victim is still training when killed
            trials = _trials(url, "k")
            training = [t for t in trials if t.state.name == "RUNNING" and "spec_hash" in t.user_attrs]
            if training and any(t.state.name == "COMPLETE" for t in trials):
                seen.update(trials=trials, victim=training[0])
            return bool(seen)

        _wait(ready, what="one finished trial and one training", proc=parent)
        before = {t.number: t.values for t in seen["trials"] if t.state.name == "COMPLETE"}
        victim = seen["victim"]
        os.kill(victim.user_attrs["pid"], signal.SIGKILL)
        out, _ = parent.communicate(timeout=300)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.communicate()
    assert parent.returncode == 0, out[-3000:]
    trials = _trials(url, "k")
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials) == 3
    after = {t.number: t.values for t in trials}
    assert all(after[n] == v for n, v in before.items())
    states = {t.number: t.state.name for t in trials}
    assert states[victim.number] == "FAIL"
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert retried and retried[0].params == victim.params and retried[0].state.name in ("COMPLETE", "PRUNED")
    assert "[w0]" in out and "[w1]" in out  # the workers' lines, prefixed, in one output


def test_grid_order_is_the_same_in_every_worker():
    """Grid studies: trial n takes grid point n, so every worker must see the grid in one order (Optuna's
    GridSampler shuffles it by its seed; workers' samplers are otherwise salted apart)."""
    from mgnas.strategies.study import StudyConfig
    from mgnas.strategies.study._config import _sampler

    config = StudyConfig(sampler="grid", choices={"group_size": [4, 8, 16]}, fixed={"level_rule": "paper"})
    grids = [_sampler(config, salt=salt)._all_grids for salt in (0, 1, 12345)]
    assert grids[0] == grids[1] == grids[2] and len(grids[0]) == 3 * 3 * 4
