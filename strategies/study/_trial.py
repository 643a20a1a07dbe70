"""One trial's work, by kind (``config.trial_kind``), shared by the Optuna and NNI backends.

- ``train``: ``space.suggest(trial)`` -> spec adapted to the data set (:func:`build_candidate`) ->
  :func:`train_candidate` for ``train.epochs`` epochs -> :func:`objective_values`.
- ``search``: the same structural suggestion plus a budget (parameter ``budget``, one of ``config.budgets``);
  :func:`mgnas.strategies.study._trial_search.run_search_trial` runs a DGConv search over that structure's
  supernet and returns the frozen architecture as a :class:`Candidate` with its metrics.

Accuracy is the *validation* accuracy (the test accuracy is only recorded, as user attr ``test_accuracy``,
so the front is not selected on the test split). Every trial records its spec (see :func:`record_candidate`),
``params``, ``macs`` and the metrics of :data:`METRIC_ATTRS`.

- Infeasible suggestions (:class:`~mgnas.search_spaces.InfeasibleChoice`) are pruned; the reason is user attr
  ``infeasible``.
- A suggestion equal to an already completed trial, or to one another worker started earlier, is pruned
  (user attr ``duplicate_of``), so no parameter set is counted twice.
- The spec is an Optuna artifact (``trial_NNNN.spec.json`` in the study's artifact store; user attrs
  ``spec_artifact`` and ``spec_hash``), not a 16-30 KB user attr.
- Every trial records where it ran: ``worker``, ``threads``, ``device``, ``pid``, ``host``.
- Every trial seeds torch, ``random`` and NumPy with :func:`trial_seed` (``train.seed``, trial number) before it
  builds its model, so its initial weights, and hence its result, do not depend on which worker runs it nor on
  what the trials before it did (how many were pruned, how long they trained).
- ``max_params``: ``trial.set_constraint("params", params - max_params)`` (Optuna 5; feasible when <= 0).
- Per epoch (:class:`EpochReporter`): the validation accuracies go to user attr ``val_accuracy_history``;
  single-objective studies report to Optuna's pruner; multi-objective studies with ``--pruner sha|hyperband``
  ask the multi-objective pruner of :mod:`._pruning`. A pruned trial records ``pruned_at_epoch`` (and, for the
  multi-objective pruner, ``pruned_rung`` and ``pruned_reason``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ._config import BUDGET_LABEL, StudyConfig, numeric_order
from ._storage import start_heartbeat

__all__ = ["Candidate", "METRIC_ATTRS", "trial_seed", "seed_trial", "build_candidate", "train_candidate",
           "objective_values", "epoch_values", "load_study_data", "trial_line", "EpochReporter", "record_candidate",
           "record_metrics", "check_duplicate", "make_mo_pruner", "Interrupt", "INTERRUPT"]

#: The trial metrics every backend records as user attrs (besides ``params``, ``macs``, the spec).
METRIC_ATTRS = ("val_accuracy", "test_accuracy", "seconds")


def load_study_data(config: StudyConfig) -> Any:
    """The study's data set, loaded with its training config's batch sizes, workers and seed."""
    from mgnas.data import load_data

    tc = config.train
    return load_data(config.data, batch_size=tc.batch_size, eval_batch_size=tc.eval_batch_size,
                     workers=tc.workers, seed=tc.seed, download=config.download)


def trial_seed(seed: int, number: int) -> int:
    """The seed of trial ``number`` of a study whose training seed is ``seed`` (distinct per trial, < 2**31)."""
    return (int(seed) * 1_000_003 + int(number)) % 2**31


def seed_trial(seed: int, number: int) -> None:
    """Seed torch, ``random`` and NumPy for trial ``number`` (see :func:`trial_seed`)."""
    from mgnas.train.engine import seed_everything

    seed_everything(trial_seed(seed, number))


@dataclass(frozen=True)
class Candidate:
    """An architecture ready to train: its spec adapted to the data set, the built model and its counts."""

    spec: Any
    model: Any
    params: int
    macs: int

    def attrs(self) -> dict[str, Any]:
        """The user attrs a study records before training: ``params``, ``macs``, ``spec`` (JSON, one line)."""
        return {"params": self.params, "macs": self.macs, "spec": self.spec.to_json(indent=None)}


def build_candidate(spec: Any, data: Any) -> Candidate:
    """Adapt ``spec`` to the data (input channels, classes, size), build it and count it.

    Raises :class:`~mgnas.search_spaces.InfeasibleChoice` when the combination cannot be built.
    """
    from mgnas.models import adapt_spec, build_model
    from mgnas.profile import count

    c, h, w = data.input_size
    spec = adapt_spec(spec, in_channels=c, num_classes=data.num_classes, input_size=(c, h, w))
    model = build_model(spec)
    counted = count(model, (c, h, w), per_layer=False)
    return Candidate(spec, model, int(counted.params), int(counted.macs))


class Interrupt:
    """A stop request (SIGTERM / Ctrl-C in a local worker) raised as KeyboardInterrupt only where that is safe.

    An exception raised at an arbitrary point can land inside a storage write (an SQLAlchemy transaction that is
    then never rolled back, keeping the SQLite lock and the trial RUNNING). So a worker's signal handler calls
    :meth:`request`: it raises at once inside :meth:`allowed` (pure training), else it is only recorded and
    :meth:`check` raises it at the next safe point (an epoch end, between trials).
    """

    def __init__(self) -> None:
        self.requested = False
        self._allowed = 0

    def request(self) -> None:
        self.requested = True
        if self._allowed > 0:
            self._allowed = 0
            raise KeyboardInterrupt

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def allowed(self) -> Iterator[None]:
        self.check()
        self._allowed += 1
        try:
            yield
        finally:
            self._allowed = max(0, self._allowed - 1)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        saved, self._allowed = self._allowed, 0
        try:
            yield
        finally:
            self._allowed = saved
        self.check()


#: The process's stop request (see :class:`Interrupt`); local workers' signal handlers call ``INTERRUPT.request``.
INTERRUPT = Interrupt()


def train_candidate(candidate: Candidate, config: StudyConfig, data: Any, *, progress: bool = False,
                    on_epoch_end: Any = None) -> dict[str, Any]:
    """Train with :class:`~mgnas.train.Trainer` for ``config.train``; return its metrics plus
    ``val_accuracy_history``. ``on_epoch_end(epoch, val_accuracy, history)`` runs after every epoch
    (epochs count from 1; it may raise to stop the trial, e.g. ``optuna.TrialPruned``). Trains on
    ``config.device``."""
    from mgnas.train import Trainer

    history: list[float] = []

    def hook(epoch: int, logs: dict[str, Any]) -> dict[str, Any]:
        history.append(float(logs["val_accuracy"]))
        if on_epoch_end is not None:
            with INTERRUPT.deferred():  # the hook writes to the storage
                on_epoch_end(epoch, history[-1], history)
        return {}

    trainer = Trainer(candidate.model, config.train, data, None, progress=progress, on_epoch_end=hook,
                      device=config.device)
    with INTERRUPT.allowed():
        metrics = trainer.fit()
    return {**metrics, "val_accuracy_history": history}


def objective_values(config: StudyConfig, candidate: Candidate, metrics: dict[str, Any]) -> Any:
    """The study's objective values in ``config.objectives`` order (a float for a single objective)."""
    out = list(epoch_values(config, float(metrics["val_accuracy"]), candidate.params, candidate.macs))
    return out[0] if len(out) == 1 else out


def epoch_values(config: StudyConfig, val_accuracy: float, params: float, macs: float) -> tuple[float, ...]:
    """The objective values in ``config.objectives`` order from an accuracy and the counts (always a tuple)."""
    values = {"accuracy": float(val_accuracy), "params": float(params), "macs": float(macs)}
    return tuple(values[o] for o in config.objectives)


# --------------------------------------------------------------------------- recording
class _Surplus(Exception):
    """This trial was claimed after the study's quota was already claimed: drop it before training."""


class _RestrictedTrial:
    """The Optuna trial as the space sees it: pinned labels answered locally, restricted labels narrowed."""

    def __init__(self, trial: Any, fixed: dict[str, Any], choices: dict[str, list]) -> None:
        self.trial, self.fixed, self.choices = trial, fixed, choices

    def suggest_categorical(self, name: str, choices: list) -> Any:
        if name in self.fixed:
            return self.fixed[name]
        return self.trial.suggest_categorical(name, numeric_order(self.choices.get(name, choices)))


def check_duplicate(trial: Any) -> None:
    """Prune the trial (user attr ``duplicate_of``) when a completed trial, or a running one started before it
    (another worker), has the same parameters. Call it once every parameter is suggested."""
    import optuna

    states = optuna.trial.TrialState
    for t in trial.study.get_trials(deepcopy=False, states=(states.COMPLETE, states.RUNNING)):
        if t.number == trial.number or (t.state == states.RUNNING and t.number > trial.number):
            continue
        if t.params == trial.params:
            trial.set_user_attr("duplicate_of", t.number)
            raise optuna.TrialPruned(f"duplicate of trial {t.number}")


def record_candidate(trial: Any, config: StudyConfig, candidate: Candidate, artifacts: Any = None) -> None:
    """Record what the trial trains and its ``max_params`` constraint: user attrs ``params``, ``macs``,
    ``spec_hash`` and the spec itself, as an Optuna artifact (``spec_artifact``: its id; file
    ``trial_NNNN.spec.json``) when the study has an artifact store, else as user attr ``spec`` (JSON)."""
    attrs = candidate.attrs()
    spec_json = attrs.pop("spec")
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    trial.set_user_attr("spec_hash", candidate.spec.content_hash())
    if artifacts is None:
        trial.set_user_attr("spec", spec_json)
    else:
        import tempfile
        from pathlib import Path

        from optuna.artifacts import upload_artifact

        from ._storage import _quiet

        with tempfile.TemporaryDirectory(prefix="mgnas-spec-") as tmp:
            path = Path(tmp) / f"trial_{trial.number:04d}.spec.json"
            path.write_text(spec_json + "\n")
            with _quiet():
                artifact_id = upload_artifact(artifact_store=artifacts, file_path=str(path), study_or_trial=trial,
                                              mimetype="application/json", encoding="utf-8")
        trial.set_user_attr("spec_artifact", artifact_id)
    if config.max_params is not None:
        trial.set_constraint("params", float(candidate.params - config.max_params))


def record_metrics(trial: Any, metrics: dict[str, Any]) -> None:
    """Record :data:`METRIC_ATTRS` and the JSON-able extras of ``metrics["user_attrs"]`` (e.g. a search trial's
    ``zeta_over_o``)."""
    for key in METRIC_ATTRS:
        trial.set_user_attr(key, metrics[key])
    for key, value in (metrics.get("user_attrs") or {}).items():
        trial.set_user_attr(key, value)


class EpochReporter:
    """Called at every epoch end of a trial, ``(epoch, val_accuracy, values)`` with ``values`` the objective
    values at that epoch in ``config.objectives`` order; records the history and prunes (raises
    ``optuna.TrialPruned``) when the study's pruner says so."""

    def __init__(self, trial: Any, config: StudyConfig, mo_pruner: Any = None) -> None:
        self.trial, self.config, self.mo_pruner = trial, config, mo_pruner
        self.single = not config.multi_objective and config.pruner != "none"
        self.history: list[float] = []

    def __call__(self, epoch: int, val_accuracy: float, values: tuple[float, ...]) -> None:
        import optuna

        INTERRUPT.check()  # a safe point (a nested search's epoch end): stop here when asked to
        trial = self.trial
        self.history.append(float(val_accuracy))
        trial.set_user_attr("val_accuracy_history", list(self.history))
        if self.single:
            trial.report(float(values[0]), epoch)
            if trial.should_prune():
                trial.set_user_attr("pruned_at_epoch", epoch)
                raise optuna.TrialPruned(f"pruned at epoch {epoch}: {self.config.objectives[0]} {values[0]:.4f}")
        elif self.mo_pruner is not None:
            reason = self.mo_pruner.report(trial, epoch, tuple(float(v) for v in values))
            if reason:
                trial.set_user_attr("pruned_at_epoch", epoch)
                trial.set_user_attr("pruned_reason", str(reason))
                raise optuna.TrialPruned(f"pruned at epoch {epoch}: {reason}")


def make_mo_pruner(config: StudyConfig) -> Any:
    """The multi-objective pruner of :mod:`._pruning` for ``--pruner sha|hyperband`` on a multi-objective study,
    else None."""
    if not config.multi_objective or config.pruner not in ("sha", "hyperband"):
        return None
    from ._pruning import make_mo_pruner as make

    return make(config)


def trial_line(trial: Any, objectives: tuple[str, ...]) -> str:
    """One line saying how a trial ended: its objectives, or why it was pruned / dropped / failed."""
    attrs, state = trial.user_attrs, trial.state.name
    if state == "COMPLETE":
        shown = [f"{o} {v:.4f}" if o == "accuracy" else f"{o} {v:,.0f}" for o, v in zip(objectives, trial.values)]
        secs = attrs.get("seconds")
        what = ", ".join(shown) + (f" ({secs:.1f} s training)" if isinstance(secs, float) else "")
    elif "infeasible" in attrs:
        what = f"infeasible: {str(attrs['infeasible'])[:100]}"
    elif "duplicate_of" in attrs:
        what = f"same choices as trial {attrs['duplicate_of']}: not trained again"
    elif "pruned_reason" in attrs:
        what = f"pruned after epoch {attrs.get('pruned_at_epoch')}: {str(attrs['pruned_reason'])[:100]}"
    elif "pruned_at_epoch" in attrs:
        what = f"pruned after epoch {attrs['pruned_at_epoch']}"
    elif attrs.get("surplus"):
        what = "dropped: the study's trials were already claimed by other workers"
    else:
        what = "see the storage for details"
    return f"trial {trial.number}: {state.lower()}: {what}"


# --------------------------------------------------------------------------- the objective (dispatch by kind)
class _Objective:
    """The callable ``study.optimize`` runs: quota check, heartbeat (journal), then the trial of its kind."""

    def __init__(self, config: StudyConfig, data: Any, progress: bool) -> None:
        from mgnas.search_spaces import get_space

        self.config, self.data, self.progress = config, data, progress
        self.space = get_space(config.space)
        self.journal = False
        self.mo_pruner = make_mo_pruner(config)
        self.trial_attrs: dict[str, Any] = {}   # recorded on every trial (worker, threads, device, pid, host)
        self.current: int | None = None          # the trial id being run (to retry it after an interrupt)
        self.artifacts: Any = None               # the study's artifact store (specs), None: user attr "spec"

    def __call__(self, trial: Any) -> Any:
        self.current = trial._trial_id
        self._check_quota(trial)
        stop = start_heartbeat(trial, self.config.heartbeat_interval) if self.journal else None
        try:
            for key, value in self.trial_attrs.items():
                trial.set_user_attr(key, value)
            return self._run(trial)
        finally:
            if stop is not None:
                stop.set()

    def _check_quota(self, trial: Any) -> None:
        live = ("COMPLETE", "PRUNED", "RUNNING", "WAITING")
        before = [t for t in trial.study.get_trials(deepcopy=False) if t.number < trial.number and t.state.name in live]
        if len(before) >= self.config.trials:
            trial.set_user_attr("surplus", True)
            raise _Surplus(f"trial {trial.number}: the study's {self.config.trials} trials are already claimed")

    def _run(self, trial: Any) -> Any:
        import optuna
        from mgnas.search_spaces import InfeasibleChoice

        cfg = self.config
        reporter = EpochReporter(trial, cfg, self.mo_pruner)
        try:
            fixed = cfg.fixed
            if cfg.trial_kind == "search":  # the labels the supernet learns are not Optuna's to choose
                keep = set(self.space.supernet_labels())
                fixed = {**{d.label: d.default for d in self.space.dimensions() if d.label not in keep}, **fixed}
            spec = self.space.suggest(_RestrictedTrial(trial, fixed, cfg.choices))
            seed_trial(cfg.train.seed, trial.number)
            if cfg.trial_kind == "search":
                from ._trial_search import run_search_trial

                budget = trial.suggest_categorical(BUDGET_LABEL, list(cfg.budgets))
                check_duplicate(trial)
                candidate, metrics = run_search_trial(trial, cfg, self.data, spec=spec, budget=budget,
                                                      progress=self.progress, on_epoch_end=reporter)
                record_candidate(trial, cfg, candidate, self.artifacts)
            else:
                candidate = build_candidate(spec, self.data)
                check_duplicate(trial)
                record_candidate(trial, cfg, candidate, self.artifacts)

                def on_epoch_end(epoch: int, val_accuracy: float, history: list[float]) -> None:
                    reporter(epoch, val_accuracy, epoch_values(cfg, val_accuracy, candidate.params, candidate.macs))

                metrics = train_candidate(candidate, cfg, self.data, progress=self.progress, on_epoch_end=on_epoch_end)
        except InfeasibleChoice as err:
            trial.set_user_attr("infeasible", str(err))
            raise optuna.TrialPruned(f"infeasible: {err}") from None
        record_metrics(trial, metrics)
        return objective_values(cfg, candidate, metrics)
