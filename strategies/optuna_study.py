"""Optuna studies over group structure: multi-objective (accuracy vs params/MACs), many workers, resumable.

Each trial is ``space.suggest(trial)`` -> spec (adapted to the data set) -> ``Trainer`` for
``train.epochs`` epochs -> objectives. Accuracy is the *validation* accuracy (the test accuracy is
only recorded, as user attr ``test_accuracy``, so the front is not selected on the test split).
The trial stores its spec JSON in user attr ``spec`` (rebuildable with ``mgnas.spec.loads``).
The per-trial step (:func:`build_candidate` -> :func:`train_candidate` -> :func:`objective_values`) is shared
with the NNI backend (:mod:`mgnas.strategies.nni_hpo`), so both train and record a trial identically.

- Infeasible suggestions (:class:`InfeasibleChoice`) are pruned; the reason is user attr ``infeasible``.
- A suggestion equal to an already completed trial is pruned (user attr ``duplicate_of``), so no
  parameter set is counted twice.
- ``max_params``: ``trial.set_constraint("params", params - max_params)`` (Optuna 5; feasible when <= 0).
- Pruning on intermediate validation accuracy works only for single-objective studies
  (``objectives: [accuracy]``): Optuna's ``trial.report``/``should_prune`` raise for multi-objective
  studies. In a multi-objective study the per-epoch accuracies are kept in user attr
  ``val_accuracy_history`` and the pruner is off (said once on stdout).

Workers: every process running :func:`run_study` on one storage takes trials until the study holds
``trials`` finished (COMPLETE + PRUNED) trials. A trial whose number is beyond the quota of claimed
trials (several workers started at once) is dropped before training (state FAIL, user attr ``surplus``).
RDB storages (SQLite, PostgreSQL, ...) use Optuna's heartbeats with ``RetryFailedTrialCallback``;
``JournalStorage`` has no heartbeat in Optuna 5, so this module keeps one in the trial's system attr
``mgnas:heartbeat`` and fails + retries stale trials the same way. Re-running the command resumes.
A fresh SQLite study is created under a file lock (two processes creating one SQLite schema at once
can crash).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mgnas.train.config import TrainConfig

__all__ = ["StudyConfig", "StudyError", "open_storage", "open_study", "run_study", "OBJECTIVES", "SAMPLERS",
           "PRUNERS"]

OBJECTIVES = {"accuracy": "maximize", "params": "minimize", "macs": "minimize"}
SAMPLERS = ("tpe", "nsga2", "random", "grid")
PRUNERS = ("median", "hyperband", "none")
FINISHED = ("COMPLETE", "PRUNED")
_HEARTBEAT_KEY = "mgnas:heartbeat"
#: A study's training defaults where they differ from TrainConfig's (short trials: AdamW brings MGIC-ResNet-56
#: on digits to ~45% val accuracy in one epoch of batch 32, SGD at lr 0.1 stays near chance).
#: ``load_config`` builds the nested TrainConfig from its own defaults, so :func:`study_overrides` adds these.
TRAIN_DEFAULTS = {"epochs": 2, "optimizer": "adamw", "lr": 3e-3, "weight_decay": 1e-4, "batch_size": 32}


def study_overrides(yaml_path: str | Path | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` plus the study's training defaults for the keys neither the YAML file nor they set."""
    import yaml

    data = yaml.safe_load(Path(yaml_path).read_text()) if yaml_path is not None else None
    train = (data or {}).get("train") or {} if isinstance(data, dict) else {}
    out = dict(overrides)
    for key, value in TRAIN_DEFAULTS.items():
        if key not in train and f"train.{key}" not in out:
            out[f"train.{key}"] = value
    return out


class StudyError(ValueError):
    """Bad input for a study (unknown objective, storage that cannot be opened, incompatible study)."""


@dataclass(frozen=True)
class StudyConfig:
    """A study: what to search, how each trial trains, where results are stored, how workers cooperate."""

    space: str = "mgic_resnet56"
    data: str = "digits"
    trials: int = 20
    storage: str | None = None           # None: sqlite:///OUT/study.db
    study_name: str | None = None        # None: "<space>-<data>"
    sampler: str = "tpe"
    objectives: tuple[str, ...] = ("accuracy", "params")
    max_params: int | None = None
    pruner: str = "median"
    seed: int = 0
    fixed: dict[str, Any] = field(default_factory=dict)      # labels pinned to one value (not searched)
    choices: dict[str, list] = field(default_factory=dict)   # labels searched over a subset of their choices
    heartbeat_interval: int = 10
    grace_period: int = 30
    max_retry: int = 2
    poll_seconds: float = 1.0
    download: bool = False
    train: TrainConfig = field(default_factory=lambda: TrainConfig(**TRAIN_DEFAULTS))

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise StudyError(f"sampler: {self.sampler!r} is not supported; valid values: {', '.join(SAMPLERS)}")
        if self.pruner not in PRUNERS:
            raise StudyError(f"pruner: {self.pruner!r} is not supported; valid values: {', '.join(PRUNERS)}")
        objs = tuple(self.objectives)
        bad = [o for o in objs if o not in OBJECTIVES]
        if bad or not objs or len(set(objs)) != len(objs):
            raise StudyError(f"objectives: {','.join(objs) or '(none)'} is not valid; choose distinct names from "
                             f"{', '.join(OBJECTIVES)}, e.g. accuracy,params")
        object.__setattr__(self, "objectives", objs)
        if self.trials < 0:
            raise StudyError(f"trials: must be >= 0, got {self.trials}")
        if self.max_params is not None and self.max_params <= 0:
            raise StudyError(f"max_params: must be > 0, got {self.max_params}")
        if self.heartbeat_interval < 1 or self.grace_period <= self.heartbeat_interval:
            raise StudyError("heartbeat_interval must be >= 1 and grace_period > heartbeat_interval")

    @property
    def name(self) -> str:
        return self.study_name or f"{self.space}-{self.data.split(':')[0]}"

    @property
    def directions(self) -> list[str]:
        return [OBJECTIVES[o] for o in self.objectives]


# --------------------------------------------------------------------------- storage
@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _sqlite_path(url: str) -> Path | None:
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        return Path(url[len("sqlite:///"):])
    return None


def default_storage(out_dir: Path | str) -> str:
    return f"sqlite:///{Path(out_dir).resolve() / 'study.db'}"


def open_storage(url: str, config: StudyConfig | None = None) -> Any:
    """``journal:PATH`` -> JournalStorage(JournalFileBackend); anything else -> RDBStorage with heartbeats.

    Raises :class:`StudyError` (one line) when the storage cannot be opened.
    """
    import optuna

    cfg = config or StudyConfig()
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        path = Path(url[len("journal:"):])
        if not path.parent.is_dir():
            raise StudyError(f"storage {url!r}: directory {path.parent} does not exist")
        try:
            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        except Exception as err:  # noqa: BLE001 - any backend failure is the user's storage
            raise StudyError(f"storage {url!r} cannot be opened: {_first_line(err)}") from None
    sqlite = _sqlite_path(url)
    if sqlite is not None and not sqlite.parent.is_dir():
        raise StudyError(f"storage {url!r}: directory {sqlite.parent} does not exist")
    kwargs = {"heartbeat_interval": cfg.heartbeat_interval, "grace_period": cfg.grace_period,
              "heartbeat_stale_trial_callback": _retry_callback(cfg)}
    if sqlite is not None:
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    lock = _file_lock(sqlite.with_name(sqlite.name + ".lock")) if sqlite is not None else contextlib.nullcontext()
    try:
        with lock, _quiet():
            return optuna.storages.RDBStorage(url, **kwargs)
    except ModuleNotFoundError as err:
        raise StudyError(f"storage {url!r} needs the database driver {err.name!r} (pip install it)") from None
    except Exception as err:  # noqa: BLE001 - SQLAlchemy raises many types for a bad URL / server
        raise StudyError(f"storage {url!r} cannot be opened: {_first_line(err)}") from None


def _retry_callback(config: StudyConfig) -> Any:
    import optuna

    with _quiet():
        return optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=config.max_retry)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence Optuna's Experimental/Future warnings about heartbeats (we rely on them knowingly)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", message=".*experimental.*")
        warnings.filterwarnings("ignore", message=".*is experimental.*")
        yield


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def open_study(config: StudyConfig, storage: Any, *, create: bool = True) -> Any:
    """Load the study (checking it has the same objectives and space) or create it; StudyError otherwise."""
    import optuna

    try:
        study_id = storage.get_study_id_from_name(config.name)
    except KeyError:
        study_id = None
    if study_id is not None:
        directions = [d.name.lower() for d in storage.get_study_directions(study_id)]
        attrs = storage.get_study_user_attrs(study_id)
        objectives = attrs.get("objectives")
        if directions != config.directions or (objectives is not None and list(objectives) != list(config.objectives)):
            raise StudyError(f"study {config.name!r} already exists with objectives "
                             f"{','.join(objectives or directions)}, not {','.join(config.objectives)}; "
                             "use another --study-name or the same --objectives")
        if attrs.get("space") not in (None, config.space):
            raise StudyError(f"study {config.name!r} already exists for space {attrs['space']!r}, not "
                             f"{config.space!r}; use another --study-name")
    elif not create:
        raise StudyError(f"no study named {config.name!r} in this storage")
    study = optuna.create_study(storage=storage, study_name=config.name, directions=config.directions,
                                sampler=_sampler(config), pruner=_pruner(config), load_if_exists=True)
    if study_id is None:
        study.set_user_attr("objectives", list(config.objectives))
        study.set_user_attr("space", config.space)
        study.set_user_attr("data", config.data)
    return study


def _search_space(config: StudyConfig) -> dict[str, list]:
    from mgnas.search_spaces import get_space

    space = get_space(config.space)
    dims = {d.label: list(d.choices) for d in space.dimensions()}
    for label in list(config.fixed) + list(config.choices):
        if label not in dims:
            raise StudyError(f"{config.space}: unknown label {label!r} in fixed/choices; labels: {', '.join(dims)}")
    for label, values in config.choices.items():
        bad = [v for v in values if v not in dims[label]]
        if bad or not values:
            raise StudyError(f"choices.{label}: {bad or values} not in {dims[label]}")
        dims[label] = list(values)
    for label, value in config.fixed.items():
        if value not in dims[label]:
            raise StudyError(f"fixed.{label}: {value!r} is not one of {dims[label]}")
        del dims[label]
    return dims


def _sampler(config: StudyConfig, salt: int = 0) -> Any:
    import optuna

    seed = config.seed + salt
    if config.sampler == "grid":
        return optuna.samplers.GridSampler(_search_space(config), seed=seed)
    if config.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if config.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)


def _pruner(config: StudyConfig) -> Any:
    import optuna

    if config.pruner == "none" or len(config.objectives) > 1:
        return optuna.pruners.NopPruner()
    if config.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=config.train.epochs)
    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)


# --------------------------------------------------------------------------- one trial's work (shared by backends)
def load_study_data(config: StudyConfig) -> Any:
    """The study's data set, loaded with its training config's batch sizes, workers and seed."""
    from mgnas.data import load_data

    tc = config.train
    return load_data(config.data, batch_size=tc.batch_size, eval_batch_size=tc.eval_batch_size,
                     workers=tc.workers, seed=tc.seed, download=config.download)


#: The trial metrics every backend records as user attrs (besides ``params``, ``macs``, ``spec``).
METRIC_ATTRS = ("val_accuracy", "test_accuracy", "seconds")


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


def train_candidate(candidate: Candidate, config: StudyConfig, data: Any, *, progress: bool = False,
                    on_epoch_end: Any = None) -> dict[str, Any]:
    """Train with :class:`~mgnas.train.Trainer` for ``config.train``; return its metrics plus
    ``val_accuracy_history``. ``on_epoch_end(epoch, val_accuracy, history)`` runs after every epoch
    (it may raise to stop the trial, e.g. ``optuna.TrialPruned``)."""
    from mgnas.train import Trainer

    history: list[float] = []

    def hook(epoch: int, logs: dict[str, Any]) -> dict[str, Any]:
        history.append(float(logs["val_accuracy"]))
        if on_epoch_end is not None:
            on_epoch_end(epoch, history[-1], history)
        return {}

    metrics = Trainer(candidate.model, config.train, data, None, progress=progress, on_epoch_end=hook).fit()
    return {**metrics, "val_accuracy_history": history}


def objective_values(config: StudyConfig, candidate: Candidate, metrics: dict[str, Any]) -> Any:
    """The study's objective values in ``config.objectives`` order (a float for a single objective)."""
    values = {"accuracy": float(metrics["val_accuracy"]), "params": float(candidate.params),
              "macs": float(candidate.macs)}
    out = [values[o] for o in config.objectives]
    return out[0] if len(out) == 1 else out


# --------------------------------------------------------------------------- trials
class _Surplus(Exception):
    """This trial was claimed after the study's quota was already claimed: drop it before training."""


class _RestrictedTrial:
    """The Optuna trial as the space sees it: pinned labels answered locally, restricted labels narrowed."""

    def __init__(self, trial: Any, fixed: dict[str, Any], choices: dict[str, list]) -> None:
        self.trial, self.fixed, self.choices = trial, fixed, choices

    def suggest_categorical(self, name: str, choices: list) -> Any:
        if name in self.fixed:
            return self.fixed[name]
        return self.trial.suggest_categorical(name, list(self.choices.get(name, choices)))


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
    elif "pruned_at_epoch" in attrs:
        what = f"pruned after epoch {attrs['pruned_at_epoch']}"
    elif attrs.get("surplus"):
        what = "dropped: the study's trials were already claimed by other workers"
    else:
        what = "see the storage for details"
    return f"trial {trial.number}: {state.lower()}: {what}"


def _counts(study: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def _finished(study: Any, counts: dict[str, int] | None = None) -> int:
    counts = _counts(study) if counts is None else counts
    return sum(counts.get(s, 0) for s in FINISHED)


class _Objective:
    def __init__(self, config: StudyConfig, data: Any, progress: bool) -> None:
        from mgnas.search_spaces import get_space

        self.config, self.data, self.progress = config, data, progress
        self.space = get_space(config.space)
        self.journal = False

    def __call__(self, trial: Any) -> Any:
        self._check_quota(trial)
        stop = self._start_heartbeat(trial) if self.journal else None
        try:
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

    def _start_heartbeat(self, trial: Any) -> threading.Event:
        stop = threading.Event()
        storage, tid, every = trial.study._storage, trial._trial_id, self.config.heartbeat_interval

        def beat() -> None:
            while True:
                with contextlib.suppress(Exception):
                    storage.set_trial_system_attr(tid, _HEARTBEAT_KEY, time.time())
                if stop.wait(every):
                    return

        threading.Thread(target=beat, daemon=True).start()
        return stop

    def _run(self, trial: Any) -> Any:
        import optuna
        from mgnas.search_spaces import InfeasibleChoice

        cfg = self.config
        try:
            candidate = build_candidate(self.space.suggest(_RestrictedTrial(trial, cfg.fixed, cfg.choices)), self.data)
        except InfeasibleChoice as err:
            trial.set_user_attr("infeasible", str(err))
            raise optuna.TrialPruned(f"infeasible: {err}") from None
        for t in trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            if t.params == trial.params:
                trial.set_user_attr("duplicate_of", t.number)
                raise optuna.TrialPruned(f"duplicate of trial {t.number}")
        for key, value in candidate.attrs().items():
            trial.set_user_attr(key, value)
        if cfg.max_params is not None:
            trial.set_constraint("params", float(candidate.params - cfg.max_params))
        prune = len(cfg.objectives) == 1 and cfg.pruner != "none"

        def on_epoch_end(epoch: int, val_accuracy: float, history: list[float]) -> None:
            trial.set_user_attr("val_accuracy_history", history)
            if prune:
                trial.report(val_accuracy, epoch)
                if trial.should_prune():
                    trial.set_user_attr("pruned_at_epoch", epoch)
                    raise optuna.TrialPruned(f"pruned at epoch {epoch}: val accuracy {val_accuracy:.4f}")

        metrics = train_candidate(candidate, cfg, self.data, progress=self.progress, on_epoch_end=on_epoch_end)
        for key in METRIC_ATTRS:
            trial.set_user_attr(key, metrics[key])
        return objective_values(cfg, candidate, metrics)


def _fail_stale_journal_trials(study: Any, config: StudyConfig) -> None:
    """JournalStorage: fail RUNNING trials whose heartbeat is older than the grace period, then retry them."""
    import optuna

    now, storage = time.time(), study._storage
    retry = _retry_callback(config)
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        beat = t.system_attrs.get(_HEARTBEAT_KEY)
        started = t.datetime_start.timestamp() if t.datetime_start else now
        if now - (beat if beat is not None else started) <= config.grace_period:
            continue
        try:
            if storage.set_trial_state_values(t._trial_id, state=optuna.trial.TrialState.FAIL):
                retry(study, storage.get_trial(t._trial_id))
        except optuna.exceptions.UpdateFinishedTrialError:
            pass


# --------------------------------------------------------------------------- the worker loop
def run_study(config: StudyConfig, out_dir: Path | str, *, data: Any = None, progress: bool = False,
              log: Any = print) -> Any:
    """Take trials from the study until it holds ``config.trials`` finished trials; return the study."""
    import optuna
    from mgnas.search_spaces import get_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    get_space(config.space)  # unknown space: ValueError before anything is created
    grid = _search_space(config)
    if config.sampler == "grid":
        size = 1
        for values in grid.values():
            size *= len(values)
        if config.trials > size:
            raise StudyError(f"trials: {config.trials} exceeds the grid's {size} points; use --trials {size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    url = config.storage or default_storage(out)
    storage = open_storage(url, config)
    study = open_study(config, storage)
    if data is None:
        data = load_study_data(config)
    joined = len(study.get_trials(deepcopy=False)) > 0
    study.sampler = _sampler(config, salt=os.getpid() if joined else 0)
    if len(config.objectives) > 1 and config.pruner != "none":
        log(f"note: pruner {config.pruner!r} is off: Optuna does not prune multi-objective studies "
            "(per-epoch accuracies are kept in user attr val_accuracy_history)")
    objective = _Objective(config, data, progress)
    objective.journal = isinstance(storage, optuna.storages.JournalStorage)
    while True:
        if objective.journal:
            _fail_stale_journal_trials(study, config)
        else:
            with _quiet():
                optuna.storages.fail_stale_trials(study)
        counts = _counts(study)
        finished = _finished(study, counts)
        if finished >= config.trials:
            break
        claimed = finished + counts.get("RUNNING", 0) + counts.get("WAITING", 0)
        if claimed >= config.trials and counts.get("WAITING", 0) == 0:
            time.sleep(config.poll_seconds)  # others hold the rest; wait for them (or their heartbeats to go stale)
            continue
        with _quiet():
            study.optimize(objective, n_trials=1, catch=(_Surplus,), gc_after_trial=True, callbacks=[
                lambda st, t: log(f"{trial_line(t, config.objectives)} [{_finished(st)}/{config.trials} finished]")])
    (out / "study.json").write_text(json.dumps({"storage": url, "study_name": config.name}) + "\n")
    return study
