"""Multi-objective successive halving / Hyperband (issue 10 §3): the pure ranking functions against a brute-force
non-dominated sort on small hand-made rungs, then the storage-backed pruner on real Optuna storages (many
"workers" = fresh study objects on one storage, and a resume from the file)."""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

optuna = pytest.importorskip("optuna")

from mgnas.strategies.study._pruning import (  # noqa: E402
    MOSuccessiveHalving,
    crowding_distance,
    make_mo_pruner,
    nondominated_ranks,
    promotable,
    promotion_order,
)

ACC_PARAMS = ("maximize", "minimize")


# --------------------------------------------------------------------------- brute force (independent of the module)
def _better_or_equal(a, b, directions):
    return all((x >= y) if d == "maximize" else (x <= y) for x, y, d in zip(a, b, directions))


def _brute_dominates(a, b, directions):
    return _better_or_equal(a, b, directions) and tuple(a) != tuple(b)


def _brute_ranks(points, directions):
    """Peel fronts: the points no remaining point dominates form the next front."""
    remaining, ranks, rank = set(range(len(points))), {}, 0
    while remaining:
        front = {i for i in remaining
                 if not any(_brute_dominates(points[j], points[i], directions) for j in remaining if j != i)}
        for i in front:
            ranks[i] = rank
        remaining -= front
        rank += 1
    return [ranks[i] for i in range(len(points))]


def _brute_crowding(points, members):
    """Crowding distance of each member, by its definition: per objective, the gap between the nearest value
    below and the nearest value above its own, over the members' range; a minimum or maximum of any objective
    is inf (more than two members), everything is inf for two or fewer."""
    out = {}
    for i in members:
        total = 0.0
        for m in range(len(points[i])):
            vals = [points[j][m] for j in members]
            v = points[i][m]
            below, above = [x for x in vals if x < v], [x for x in vals if x > v]
            if not below or not above:
                total = math.inf
                break
            total += (min(above) - max(below)) / (max(vals) - min(vals))
        out[i] = total if len(members) > 2 else math.inf
    return out


def _brute_promoted(points, directions, eta):
    """The set of indices that continue past the rung, each decided as if it had arrived last."""
    ranks = _brute_ranks(points, directions)
    if len(points) < eta:
        return {i for i, r in enumerate(ranks) if r == 0}
    keep = math.ceil(len(points) / eta)  # the top 1/eta, rounded up
    crowd = {}
    for r in set(ranks):
        crowd.update(_brute_crowding(points, [i for i, x in enumerate(ranks) if x == r]))
    first = [p[0] if directions[0] == "minimize" else -p[0] for p in points]  # the first objective, better first
    best = sorted(range(len(points)), key=lambda i: (ranks[i], -crowd[i], first[i], i))
    return set(best[:keep])


# Small hand-made rungs: (accuracy, params) points, with the expected survivors for eta=2 and eta=3.
HAND_MADE = [
    # a clear front of three (0, 1, 3) over two dominated points
    # (eta 2 keeps ceil(5/2) = 3: the whole front; eta 3 keeps 2: the front's extremes)
    ([(0.90, 100.0), (0.80, 50.0), (0.70, 80.0), (0.85, 70.0), (0.60, 120.0)], {2: {0, 1, 3}, 3: {0, 1}}),
    # a chain (each point dominates the next): the top ceil(n/eta) of the chain survive
    ([(0.95, 10.0), (0.90, 20.0), (0.80, 30.0), (0.70, 40.0)], {2: {0, 1}, 3: {0, 1}, 4: {0}}),
    # all on one front: the extremes (infinite crowding) go first, then the least crowded middle point
    ([(0.5, 10.0), (0.6, 20.0), (0.62, 22.0), (0.9, 90.0), (0.7, 40.0), (0.95, 100.0)], {2: {0, 5, 4}, 3: {0, 5}}),
    # two extremes of the front tie on crowding: the more accurate one (the first objective) wins
    ([(0.5, 10.0), (0.9, 90.0), (0.2, 95.0)], {2: {0, 1}, 3: {1}}),
    # fewer results than eta: everything on the front continues, dominated ones stop
    ([(0.5, 10.0), (0.4, 12.0)], {3: {0}}),
]


@pytest.mark.parametrize("points, expected", HAND_MADE)
def test_promotion_matches_hand_made_and_brute_force(points, expected):
    for eta, survivors in expected.items():
        got = {i for i in range(len(points)) if promotable(points, i, ACC_PARAMS, eta)}
        assert got == survivors == _brute_promoted(points, ACC_PARAMS, eta), eta


def test_promotion_matches_brute_force_on_random_rungs():
    rng = random.Random(0)
    for case in range(300):
        n = rng.randint(1, 9)
        k = rng.choice([2, 3])
        directions = tuple(rng.choice(["maximize", "minimize"]) for _ in range(k))
        # a coarse grid of values makes ties and duplicate points common
        points = [tuple(float(rng.randint(0, 4)) for _ in range(k)) for _ in range(n)]
        assert nondominated_ranks(points, directions) == _brute_ranks(points, directions), (case, points)
        for eta in (2, 3, 4):
            got = {i for i in range(n) if promotable(points, i, directions, eta)}
            assert got == _brute_promoted(points, directions, eta), (case, points, directions, eta)


def test_directions_are_respected():
    points = [(0.9, 100.0), (0.8, 50.0), (0.7, 80.0)]
    assert nondominated_ranks(points, ACC_PARAMS) == [0, 0, 1]
    assert nondominated_ranks(points, ("minimize", "maximize")) == [0, 1, 0]
    flipped = [(-a, -p) for a, p in points]
    assert nondominated_ranks(flipped, ("minimize", "maximize")) == [0, 0, 1]
    with pytest.raises(ValueError, match="directions"):
        nondominated_ranks([(1.0,)], ACC_PARAMS)


def test_nan_ranks_last():
    assert nondominated_ranks([(float("nan"), 10.0), (0.5, 10.0)], ACC_PARAMS) == [1, 0]


def test_crowding_distance_values():
    d = crowding_distance([(0.0, 4.0), (1.0, 3.0), (3.0, 1.0), (4.0, 0.0)])
    assert d[0] == d[3] == math.inf
    assert d[1] == pytest.approx(3 / 4 + 3 / 4) and d[2] == pytest.approx(3 / 4 + 3 / 4)
    assert crowding_distance([(1.0, 2.0), (2.0, 1.0)]) == [math.inf, math.inf]
    assert promotion_order([(0.5, 1.0), (0.9, 9.0), (0.6, 2.0), (0.3, 5.0)], ACC_PARAMS) == [1, 0, 2, 3]


# --------------------------------------------------------------------------- the storage-backed pruner
def _study(storage, name="mo", directions=ACC_PARAMS):
    return optuna.create_study(storage=storage, study_name=name, directions=list(directions), load_if_exists=True)


def _run(pruner, study, curve, params, max_epochs):
    """Run one trial through ``pruner``: accuracy ``curve[e-1]`` at epoch e; returns (trial number, epochs done)."""
    trial = study.ask()
    for epoch in range(1, max_epochs + 1):
        reason = pruner.report(trial, epoch, (curve[epoch - 1], params))
        if reason is not None:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return trial.number, epoch
    study.tell(trial, [curve[-1], params])
    return trial.number, max_epochs


def test_rungs_and_brackets():
    sha = MOSuccessiveHalving(ACC_PARAMS, max_epochs=8, min_epochs=1, eta=2)
    assert sha.rung_epochs() == [1, 2, 4] and sha.n_brackets == 1
    assert sha.bracket_rungs(0) == {1: 0, 2: 1, 4: 2}
    hb = MOSuccessiveHalving(ACC_PARAMS, max_epochs=9, min_epochs=1, eta=3, hyperband=True)
    assert hb.rung_epochs() == [1, 3] and hb.n_brackets == 3
    assert hb.bracket_rungs(1) == {3: 1} and hb.bracket_rungs(2) == {}
    brackets = [hb.bracket_of("s", n) for n in range(300)]
    assert brackets == [hb.bracket_of("s", n) for n in range(300)]  # deterministic
    counts = [brackets.count(s) for s in range(3)]
    assert counts[0] > counts[2] > 0  # bracket 0 (most aggressive) gets the most trials, the last one some
    with pytest.raises(ValueError):
        MOSuccessiveHalving(ACC_PARAMS, max_epochs=4, eta=1)


def test_storage_pruner_prunes_and_records(tmp_path):
    path = str(tmp_path / "j.log")
    study = _study(optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path)))
    sha = MOSuccessiveHalving(ACC_PARAMS, max_epochs=4, min_epochs=1, eta=2)  # rungs after epochs 1 and 2
    # trial 0 is alone at every rung: it continues to the end
    assert _run(sha, study, [0.5, 0.6, 0.7, 0.8], 100.0, 4) == (0, 4)
    # trial 1 is dominated by trial 0 at rung 0 (n=2, keep 1): pruned after epoch 1
    assert _run(sha, study, [0.4, 0.5, 0.6, 0.7], 200.0, 4) == (1, 1)
    # trial 2 is on the front (smaller): n=3 keeps ceil(3/2) = 2, both extremes; at rung 1 n=2 keeps 1: trial 0,
    # the more accurate extreme of the two
    assert _run(sha, study, [0.3, 0.4, 0.5, 0.6], 50.0, 4) == (2, 2)
    trials = study.get_trials()
    assert trials[0].user_attrs["rung_0"] == [0.5, 100.0] and trials[0].user_attrs["rung_1"] == [0.6, 100.0]
    assert "pruned_rung" not in trials[0].user_attrs
    pruned = trials[1]
    assert pruned.state.name == "PRUNED" and pruned.user_attrs["pruned_rung"] == 0
    assert pruned.user_attrs["pruned_at_epoch"] == 1 and "rank 1" in pruned.user_attrs["pruned_reason"]
    assert "rank 0" in trials[2].user_attrs["pruned_reason"] and trials[2].user_attrs["pruned_rung"] == 1

    # another worker / a resumed run: a fresh study object and pruner on the same file see the same rungs
    resumed = optuna.load_study(study_name="mo", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(path)))
    fresh = MOSuccessiveHalving(ACC_PARAMS, max_epochs=4, min_epochs=1, eta=2)
    # (0.45, 120) is dominated by trial 0's (0.5, 100) at rung 0
    assert _run(fresh, resumed, [0.45, 0.9, 0.9, 0.9], 120.0, 4) == (3, 1)
    # (0.9, 120): on the front at rung 0 (n=5 keeps 3); at rung 1 (n=3 keeps 2) it and trial 2 are the extremes
    assert _run(fresh, resumed, [0.9, 0.9, 0.9, 0.9], 120.0, 4) == (4, 4)
    assert resumed.get_trials()[4].user_attrs["rung_1"] == [0.9, 120.0]


def test_failed_and_waiting_trials_do_not_compete():
    study = _study(optuna.storages.InMemoryStorage())
    sha = MOSuccessiveHalving(ACC_PARAMS, max_epochs=4, min_epochs=1, eta=2)
    failed = study.ask()
    assert sha.report(failed, 1, (0.99, 1.0)) is None  # would dominate everything...
    study.tell(failed, state=optuna.trial.TrialState.FAIL)  # ...but it failed
    live = study.ask()
    # a retry of the failed trial, waiting, with its rung values copied (as RetryFailedTrialCallback does)
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.WAITING,
                                              user_attrs={"rung_0": [0.99, 1.0], "sha_bracket": 0}))
    assert sha.report(live, 1, (0.5, 10.0)) is None
    other = study.ask()  # takes the waiting retry: its copied rung_0 is overwritten by its own result
    assert sha.report(other, 1, (0.4, 20.0)) is not None  # dominated by the live trial (n=2, keep 1)
    assert study.get_trials()[other.number].user_attrs["rung_0"] == [0.4, 20.0]


def test_hyperband_brackets_do_not_compete():
    study = _study(optuna.storages.InMemoryStorage())
    hb = MOSuccessiveHalving(ACC_PARAMS, max_epochs=9, min_epochs=1, eta=3, hyperband=True)
    epochs = {}
    for number in range(12):
        acc = 0.9 - 0.05 * number  # every later trial is dominated by every earlier one
        n, done = _run(hb, study, [acc] * 9, 100.0 + number, 9)
        epochs[n] = (hb.bracket_of("mo", n), done)
    for n, (bracket, done) in epochs.items():
        first = min((e for e, k in hb.bracket_rungs(bracket).items()), default=None)
        same = [m for m, (b, _) in epochs.items() if b == bracket and m < n]
        if first is None:
            assert done == 9  # the last bracket never prunes
        elif not same:
            assert done == 9  # first of its bracket: nothing to compare with at any rung
        else:
            assert done == first  # dominated by an earlier trial of its own bracket at its first rung
        trial = study.get_trials()[n]
        if first is not None:
            assert trial.user_attrs["sha_bracket"] == bracket
    assert len({b for b, _ in epochs.values()}) >= 2


def test_make_mo_pruner():
    cfg = SimpleNamespace(pruner="sha", directions=["maximize", "minimize"], train=SimpleNamespace(epochs=8))
    sha = make_mo_pruner(cfg)
    assert sha is not None and sha.rung_epochs() == [1, 3] and not sha.hyperband
    hb = make_mo_pruner(SimpleNamespace(**{**vars(cfg), "pruner": "hyperband", "reduction_factor": 2}))
    assert hb.hyperband and hb.rung_epochs() == [1, 2, 4]
    assert make_mo_pruner(SimpleNamespace(**{**vars(cfg), "pruner": "median"})) is None
    assert make_mo_pruner(SimpleNamespace(**{**vars(cfg), "directions": ["maximize"]})) is None


def test_brute_force_helpers_agree_on_all_orders():
    # the brute force itself: permuting the points permutes the ranks
    points = [(0.9, 100.0), (0.8, 50.0), (0.7, 80.0), (0.85, 70.0)]
    base = _brute_ranks(points, ACC_PARAMS)
    for perm in itertools.permutations(range(4)):
        assert _brute_ranks([points[i] for i in perm], ACC_PARAMS) == [base[i] for i in perm]


# --------------------------------------------------------------------------- end to end: mgnas study --pruner sha
WORKER = Path(__file__).with_name("_study_worker.py")


@pytest.fixture
def _study_command(monkeypatch):
    from mgnas import cli

    if not any(c.name == "study" for c in cli.COMMANDS):
        from mgnas.cli._study import ParetoCommand, StudyCommand

        monkeypatch.setattr(cli, "COMMANDS", [*cli.COMMANDS, StudyCommand(), ParetoCommand()])
    return cli


def _recomputed_decisions(study, sha: MOSuccessiveHalving) -> dict[int, bool]:
    """For every trial that reached a rung: whether it should have continued, recomputed from the storage alone
    (one worker runs trials in number order, so trial t was compared with the earlier trials at that rung)."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.state.name in ("COMPLETE", "PRUNED")]
    decisions = {}
    for t in trials:
        for k in range(len(sha.rung_epochs())):
            mine = t.user_attrs.get(f"rung_{k}")
            if mine is None:
                continue
            earlier = [u for u in trials if u.number < t.number and f"rung_{k}" in u.user_attrs
                       and u.user_attrs.get("sha_bracket") == t.user_attrs.get("sha_bracket")]
            points = [u.user_attrs[f"rung_{k}"] for u in earlier] + [mine]
            decisions[(t.number, k)] = promotable(points, len(points) - 1, ACC_PARAMS, sha.eta)
    return decisions


def test_sha_study_trains_fewer_epochs_and_resumes_after_a_kill(tmp_path, _study_command):
    """A ``--pruner sha`` study killed after two finished trials and resumed: nothing finished is lost, every
    decision after the resume used the rung values recorded before the kill, and it trained fewer epochs than
    the same trials without pruning (every trained trial for all epochs)."""
    path = tmp_path / "study.log"
    url, epochs, n = f"journal:{path}", 2, 6
    args = ["study", "--space", "resnet20_groups", "--data", "digits", "--epochs-per-trial", str(epochs),
            "--batch-size", "512", "--sampler", "random", "--seed", "3", "--pruner", "sha", "--trials", str(n),
            "--storage", url, "--study-name", "sha", "--out", str(tmp_path / "o"), "--no-plots",
            "--set", "heartbeat_interval=1", "--set", "grace_period=3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    first = subprocess.Popen([sys.executable, str(WORKER), *args], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and first.poll() is None:
        time.sleep(0.2)
        if path.exists():
            with contextlib.suppress(KeyError):
                trials = optuna.load_study(study_name="sha", storage=_journal(path)).get_trials(deepcopy=False)
                if sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials) >= 2:
                    break
    first.send_signal(signal.SIGKILL)
    first.communicate()
    before = {t.number: dict(t.user_attrs) for t in
              optuna.load_study(study_name="sha", storage=_journal(path)).get_trials(deepcopy=False)
              if t.state.name in ("COMPLETE", "PRUNED")}
    assert 2 <= len(before) < n, "the first worker was not stopped mid-study"
    time.sleep(3.5)  # the killed worker's running trial goes stale (grace period 3 s) before the resume
    assert _study_command.main(args) == 0
    study = optuna.load_study(study_name="sha", storage=_journal(path))
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == n
    for number, attrs in before.items():  # what was recorded before the kill is still there, unchanged
        after = study.get_trials(deepcopy=False)[number].user_attrs
        assert {k: v for k, v in after.items() if k.startswith("rung_")} == \
               {k: v for k, v in attrs.items() if k.startswith("rung_")}
    sha = MOSuccessiveHalving(ACC_PARAMS, max_epochs=epochs)
    decisions = _recomputed_decisions(study, sha)
    assert decisions and any(number > max(before) for number, _ in decisions)
    for (number, k), keep in decisions.items():
        t = trials[number]
        assert (t.user_attrs.get("pruned_rung") == k) == (not keep), (number, k, t.user_attrs)
    pruned = [t for t in finished if "pruned_rung" in t.user_attrs]
    assert pruned and all(t.state.name == "PRUNED" and t.user_attrs["pruned_reason"] for t in pruned)
    trained = [t for t in finished if "val_accuracy_history" in t.user_attrs]
    run = sum(len(t.user_attrs["val_accuracy_history"]) for t in trained)
    assert run < len(trained) * epochs  # without the pruner every trained trial runs all its epochs
    assert all(len(t.user_attrs["val_accuracy_history"]) == epochs for t in trained if t.state.name == "COMPLETE")


def _journal(path):
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
