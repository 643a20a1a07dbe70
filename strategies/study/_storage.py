"""Where a study lives: storage URLs, opening storages and studies, the SQLite creation lock, heartbeats.

RDB storages (SQLite, PostgreSQL, ...) use Optuna's heartbeats with ``RetryFailedTrialCallback``;
``JournalStorage`` has no heartbeat in Optuna 5, so this module keeps one in the trial's system attr
``mgnas:heartbeat`` and fails + retries stale trials the same way. A fresh SQLite study is created under a
file lock (two processes creating one SQLite schema at once can crash).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._config import StudyConfig, StudyError, _pruner, _sampler

__all__ = ["default_storage", "open_storage", "open_study", "artifact_dir", "open_artifact_store",
           "study_artifact_store", "HEARTBEAT_KEY", "ARTIFACT_DIR_ATTR"]

HEARTBEAT_KEY = _HEARTBEAT_KEY = "mgnas:heartbeat"


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


def artifact_dir(url: str, out_dir: Path | str | None = None) -> Path | None:
    """The folder of the study's artifact store: ``artifacts/`` beside a SQLite or journal file, else
    ``OUT/artifacts`` (server storages have no folder of their own); None when neither exists."""
    path = _sqlite_path(url) or (Path(url[len("journal:"):]) if url.startswith("journal:") else None)
    if path is not None:
        return path.resolve().parent / "artifacts"
    return Path(out_dir).resolve() / "artifacts" if out_dir is not None else None


#: Study user attr: the folder of the study's artifact store (the trials' specs).
ARTIFACT_DIR_ATTR = "artifact_dir"


def open_artifact_store(path: Path | str) -> Any:
    """Optuna's ``FileSystemArtifactStore`` in ``path`` (created)."""
    from optuna.artifacts import FileSystemArtifactStore

    Path(path).mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(path))


def study_artifact_store(study: Any, url: str | None = None) -> Any:
    """The artifact store of ``study``: ``artifacts/`` beside the storage file when ``url`` names one and it
    exists, else the folder recorded in the study's user attr ``artifact_dir``; None when there is none."""
    folders = [artifact_dir(url)] if url else []
    recorded = study.user_attrs.get(ARTIFACT_DIR_ATTR)
    folders.append(Path(recorded) if recorded else None)
    for folder in folders:
        if folder is not None and folder.is_dir():
            return open_artifact_store(folder)
    return None


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
    """Load the study (checking it has the same objectives and space) or create it; StudyError otherwise.

    A new study gets the objective names (``set_metric_names``, shown by optuna-dashboard and
    ``optuna.visualization``) and user attrs ``objectives``, ``space``, ``data``, ``trial_kind``.
    """
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
        if attrs.get("trial_kind", "train") != config.trial_kind:
            raise StudyError(f"study {config.name!r} already exists with --trial {attrs.get('trial_kind', 'train')}, "
                             f"not {config.trial_kind}; use another --study-name")
    elif not create:
        raise StudyError(f"no study named {config.name!r} in this storage")
    study = optuna.create_study(storage=storage, study_name=config.name, directions=config.directions,
                                sampler=_sampler(config), pruner=_pruner(config), load_if_exists=True)
    if study_id is None:
        with _quiet():
            study.set_metric_names(list(config.objectives))
        study.set_user_attr("objectives", list(config.objectives))
        study.set_user_attr("space", config.space)
        study.set_user_attr("data", config.data)
        study.set_user_attr("trial_kind", config.trial_kind)
    return study


def start_heartbeat(trial: Any, every: float) -> threading.Event:
    """JournalStorage: write ``time.time()`` into the trial's system attr ``mgnas:heartbeat`` every ``every``
    seconds until the returned event is set."""
    stop = threading.Event()
    storage, tid = trial.study._storage, trial._trial_id

    def beat() -> None:
        while True:
            with contextlib.suppress(Exception):
                storage.set_trial_system_attr(tid, _HEARTBEAT_KEY, time.time())
            if stop.wait(every):
                return

    threading.Thread(target=beat, daemon=True).start()
    return stop


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


def fail_stale_trials(study: Any, config: StudyConfig) -> None:
    """Fail (and retry) the study's RUNNING trials whose worker stopped beating: Optuna's heartbeats on RDB
    storages, ours on journals."""
    import optuna

    if isinstance(study._storage, optuna.storages.JournalStorage):
        _fail_stale_journal_trials(study, config)
    else:
        with _quiet():
            optuna.storages.fail_stale_trials(study)
