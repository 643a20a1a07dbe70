"""Multi-objective successive halving (MO-ASHA) and Hyperband on Optuna storage.

Optuna prunes single-objective studies only; a multi-objective study (accuracy vs params/MACs) would train every
trial to its last epoch. This module prunes them on epochs, as MO-ASHA does (Salinas et al. 2021; Schmucker et
al. 2020), with the state in the study's storage so that many workers and resumed runs decide on the same data.

Rungs. With ``min_epochs`` r, reduction factor η and ``max_epochs`` R, rung k is reached after r·η^k epochs;
the rungs are those with r·η^k < R (a trial that reaches R simply completes). Hyperband runs
⌊log_η(R/r)⌋ + 1 brackets; bracket s has the rungs k >= s (bracket 0 is plain successive halving). The bracket
of a trial is chosen deterministically from the study name and trial number (crc32, weighted by Hyperband's
trial allocation n_s = ⌈S·η^(S-1-s)/(S-s)⌉ with S brackets), as :class:`optuna.pruners.HyperbandPruner` does,
so every worker and every resume agrees; trials of different brackets never compete.

Promotion (asynchronous, like ASHA). When a trial reaches rung k it records its objective values there, then
is compared with the *n* results recorded at rung k so far (itself included; every trial of its bracket that
is running, complete or pruned, failed and waiting trials excluded). The results are ordered by

1. non-dominated rank (0 = not dominated by any other result at the rung; the study's directions are
   respected: accuracy maximised, params/MACs minimised), then
2. crowding distance within the rank (NSGA-II, Deb et al. 2002; normalised by the rank's range per objective,
   boundary points infinite, tied values treated alike: larger first), then
3. the first objective (the study's first, usually accuracy: better first), so that of two extremes of the
   front the more accurate one wins, then
4. trial number (older first), so that the order is total and every worker computes the same one.

The trial continues if it is among the first ⌈n/η⌉: the top 1/η of the rung, rounded in the trial's favour (the
first result at a rung always continues, as in ASHA). While n < η a trial continues only if no result at the rung
dominates it (non-dominated rank 0): Optuna's single-objective rule ("promote the first η−1 trials only if they are
the best so far", as a stopped trial cannot be promoted later) carried over to several objectives, where "best so
far" becomes "on the rung's current front". MO-ASHA's reference implementation (syne-tune) uses an ε-net for
step 2 and continues rank position p (0-based) while p/n ≤ 1/η, i.e. the first ⌊n/η⌋ + 1; ⌈n/η⌉ is the same
except when η divides n. An earlier version kept the first ⌊n/η⌋: in ``bench_mosha.py`` that lost a front point
that is poor after one epoch in 3 of 6 seeds (hypervolume down to 0.37 of the unpruned study's), where ⌈n/η⌉ kept
≥ 0.99 in all six for 0.47 of the epochs (see RESULTS.md).

A NaN value (a diverged run) is the worst value of its objective.

Storage. Rung k's values are the user attr ``rung_<k>`` (a list of floats, objective order; k indexes the
ladder r·η^k in every bracket) and the trial's bracket is ``sha_bracket``. A pruned trial records
``pruned_rung`` (k), ``pruned_at_epoch`` and ``pruned_reason``. Other trials are read with
``study.get_trials(deepcopy=False)``. A retried trial (a copy of a failed one, user attrs included) overwrites
the copied rung values with its own when it reaches each rung. In a study config, r is ``pruner_min_epochs``
(default 1), η ``reduction_factor`` (default 3) and R ``train.epochs``.
"""

from __future__ import annotations

import binascii
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["nondominated_ranks", "crowding_distance", "promotion_order", "promotable", "keep_count",
           "MOSuccessiveHalving",
           "make_mo_pruner", "MO_PRUNERS"]

#: The ``--pruner`` values this module serves on multi-objective studies.
MO_PRUNERS = ("sha", "hyperband")
_COMPETING = ("RUNNING", "COMPLETE", "PRUNED")


# --------------------------------------------------------------------------- pure functions
def _sign(direction: Any) -> float:
    name = str(getattr(direction, "name", direction)).lower()
    if name in ("minimize", "min"):
        return 1.0
    if name in ("maximize", "max"):
        return -1.0
    raise ValueError(f"direction {direction!r} is not minimize or maximize")


def _minimised(points: Sequence[Sequence[float]], directions: Sequence[Any]) -> list[tuple[float, ...]]:
    """Points in "smaller is better" form; NaN (a diverged run) becomes +inf, the worst value."""
    signs = [_sign(d) for d in directions]
    out = []
    for p in points:
        if len(p) != len(signs):
            raise ValueError(f"point {tuple(p)} has {len(p)} values for {len(signs)} directions")
        out.append(tuple(math.inf if math.isnan(float(v)) else s * float(v) for s, v in zip(signs, p)))
    return out


def _dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` dominates ``b`` (minimisation): no worse in every objective, better in one."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def nondominated_ranks(points: Sequence[Sequence[float]], directions: Sequence[Any]) -> list[int]:
    """Non-dominated sorting (Deb et al. 2002): rank 0 is the front, rank 1 the front once rank 0 is removed, ….

    ``directions``: one ``"minimize"``/``"maximize"`` (or :class:`optuna.study.StudyDirection`) per objective.
    """
    pts = _minimised(points, directions)
    n = len(pts)
    dominated_by = [0] * n                  # how many points dominate i
    dominates: list[list[int]] = [[] for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if _dominates(pts[i], pts[j]):
                dominates[i].append(j)
                dominated_by[j] += 1
            elif _dominates(pts[j], pts[i]):
                dominates[j].append(i)
                dominated_by[i] += 1
    ranks = [-1] * n
    front = [i for i in range(n) if dominated_by[i] == 0]
    rank = 0
    while front:
        nxt = []
        for i in front:
            ranks[i] = rank
            for j in dominates[i]:
                dominated_by[j] -= 1
                if dominated_by[j] == 0:
                    nxt.append(j)
        front, rank = nxt, rank + 1
    return ranks


def crowding_distance(points: Sequence[Sequence[float]]) -> list[float]:
    """NSGA-II crowding distance of each point within ``points`` (one front): per objective, the gap between its
    neighbours over the objective's range; a point at the minimum or maximum of any objective gets ``inf``.

    Ties are treated symmetrically (the neighbours are the nearest *different* values below and above), so the
    distance does not depend on the order of the points nor on the directions. Two or fewer points: all ``inf``.
    """
    n = len(points)
    if n <= 2:
        return [math.inf] * n
    dist = [0.0] * n
    for m in range(len(points[0])):
        values = [float(p[m]) for p in points]
        distinct = sorted(set(values))
        lo, hi = distinct[0], distinct[-1]
        span = hi - lo
        where = {v: j for j, v in enumerate(distinct)}
        for i, v in enumerate(values):
            if v in (lo, hi):
                dist[i] = math.inf
            elif math.isfinite(span) and span > 0:
                j = where[v]
                dist[i] += (distinct[j + 1] - distinct[j - 1]) / span
    return dist


def promotion_order(points: Sequence[Sequence[float]], directions: Sequence[Any]) -> list[int]:
    """Indices of ``points`` best first: by non-dominated rank, then crowding distance (larger first) within the
    rank, then the first objective (better first), then index (the caller lists points in trial-number order,
    so older trials win exact ties)."""
    ranks = nondominated_ranks(points, directions)
    pts = _minimised(points, directions)
    crowd = [0.0] * len(points)
    for r in set(ranks):
        members = [i for i, x in enumerate(ranks) if x == r]
        for i, d in zip(members, crowding_distance([pts[i] for i in members])):
            crowd[i] = d
    return sorted(range(len(points)), key=lambda i: (ranks[i], -crowd[i], pts[i][0], i))


def promotable(points: Sequence[Sequence[float]], index: int, directions: Sequence[Any], eta: int,
               keep: Callable[[int, int], int] | None = None) -> bool:
    """Whether ``points[index]`` continues past a rung holding ``points`` (its own result included).

    True if it is among the first :func:`keep_count` (⌈n/η⌉) of :func:`promotion_order`; while n < η, True if no
    other result dominates it. ``keep(n, η)`` replaces :func:`keep_count` (``replay_mosha.py`` compares rules).
    """
    if not 0 <= index < len(points):
        raise IndexError(f"index {index} outside the {len(points)} points")
    if eta < 2:
        raise ValueError(f"reduction factor must be >= 2, got {eta}")
    if len(points) < eta:
        return nondominated_ranks(points, directions)[index] == 0
    return index in promotion_order(points, directions)[:(keep or keep_count)(len(points), eta)]


def keep_count(n: int, eta: int) -> int:
    """How many of ``n`` results at a rung continue once n >= η: ⌈n/η⌉."""
    return -(-n // eta)


# --------------------------------------------------------------------------- the storage-backed pruner
@dataclass(frozen=True)
class MOSuccessiveHalving:
    """MO-ASHA (``brackets=1``) or MO-Hyperband over epochs; state in the trials' user attrs (see the module doc).

    Call :meth:`report` after every epoch; it returns ``None`` (continue) or the reason the trial must stop (the
    caller then raises ``optuna.TrialPruned(reason)``).
    """

    directions: tuple[str, ...]
    max_epochs: int
    min_epochs: int = 1
    eta: int = 3
    hyperband: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "directions", tuple(str(getattr(d, "name", d)).lower() for d in self.directions))
        for d in self.directions:
            _sign(d)
        if self.min_epochs < 1 or self.max_epochs < self.min_epochs:
            raise ValueError(f"MO-SHA: the first rung (pruner_min_epochs, {self.min_epochs}) must be between 1 and the "
                             f"epochs of a trial ({self.max_epochs})")
        if self.eta < 2:
            raise ValueError(f"MO-SHA reduction factor must be >= 2, got {self.eta}")

    # ------------------------------------------------------------------ the ladder
    def rung_epochs(self) -> list[int]:
        """Epochs at the rungs k = 0, 1, …: r·η^k < R."""
        out, e = [], self.min_epochs
        while e < self.max_epochs:
            out.append(e)
            e *= self.eta
        return out

    @property
    def n_brackets(self) -> int:
        if not self.hyperband:
            return 1
        return int(math.floor(math.log(self.max_epochs / self.min_epochs) / math.log(self.eta) + 1e-9)) + 1

    def bracket_rungs(self, bracket: int) -> dict[int, int]:
        """``{epoch: rung index}`` of one bracket."""
        return {e: k for k, e in enumerate(self.rung_epochs()) if k >= bracket}

    def _allocation(self, bracket: int) -> int:
        s = self.n_brackets - 1 - bracket
        return math.ceil(self.n_brackets * self.eta ** s / (s + 1))

    def bracket_of(self, study_name: str, number: int) -> int:
        """The trial's bracket: deterministic in (study name, trial number), weighted by Hyperband's allocation."""
        if self.n_brackets == 1:
            return 0
        total = sum(self._allocation(s) for s in range(self.n_brackets))
        n = binascii.crc32(f"{study_name}_{number}".encode()) % total
        for s in range(self.n_brackets):
            n -= self._allocation(s)
            if n < 0:
                return s
        return self.n_brackets - 1  # unreachable

    # ------------------------------------------------------------------ one epoch of one trial
    def report(self, trial: Any, epoch: int, values: Sequence[float]) -> str | None:
        """Record ``values`` (objective order) if ``epoch`` (epochs done, 1-based) is a rung of the trial's bracket
        and decide; ``None`` means continue, a string is the reason to prune (also stored on the trial)."""
        if len(values) != len(self.directions):
            raise ValueError(f"{len(values)} values for {len(self.directions)} objectives")
        study = trial.study
        bracket = self.bracket_of(study.study_name, trial.number)
        k = self.bracket_rungs(bracket).get(int(epoch))
        if k is None:
            if int(epoch) == 1:  # every trial shows its bracket, also one without rungs (Hyperband's last)
                trial.set_user_attr("sha_bracket", bracket)
            return None
        key = f"rung_{k}"
        mine = [float(v) for v in values]
        trial.set_user_attr("sha_bracket", bracket)
        trial.set_user_attr(key, mine)
        numbers, points = [trial.number], [mine]
        for t in study.get_trials(deepcopy=False):
            if t.number == trial.number or t.state.name not in _COMPETING:
                continue
            recorded = t.user_attrs.get(key)
            if recorded is None or t.user_attrs.get("sha_bracket", 0) != bracket or len(recorded) != len(mine):
                continue
            numbers.append(t.number)
            points.append([float(v) for v in recorded])
        order = sorted(range(len(numbers)), key=lambda i: numbers[i])
        points = [points[i] for i in order]
        index = order.index(0)
        if promotable(points, index, self.directions, self.eta):
            return None
        rank = nondominated_ranks(points, self.directions)[index]
        rule = (f"not in the top {keep_count(len(points), self.eta)} of {len(points)}" if len(points) >= self.eta
                else f"dominated while fewer than {self.eta} results are recorded ({len(points)})")
        reason = (f"MO-SHA rung {k} (epoch {epoch}, bracket {bracket}): non-dominated rank {rank}, {rule} "
                  "at this rung")
        trial.set_user_attr("pruned_rung", k)
        trial.set_user_attr("pruned_at_epoch", int(epoch))
        trial.set_user_attr("pruned_reason", reason)
        return reason


def make_mo_pruner(config: Any) -> MOSuccessiveHalving | None:
    """The multi-objective pruner of a study config (``pruner`` sha/hyperband and several objectives), else None.

    Reads ``config.pruner``, ``config.directions``, ``config.train.epochs`` (R) and, when the config has them,
    ``pruner_min_epochs`` (r, default 1) and ``reduction_factor`` (η, default 3).
    """
    directions = list(config.directions)
    if config.pruner not in MO_PRUNERS or len(directions) < 2:
        return None
    return MOSuccessiveHalving(tuple(directions), max_epochs=int(config.train.epochs),
                               min_epochs=int(getattr(config, "pruner_min_epochs", 1) or 1),
                               eta=int(getattr(config, "reduction_factor", 3) or 3),
                               hyperband=config.pruner == "hyperband")
