"""The worker loop: :func:`run_study` takes trials from a study until it holds ``config.trials`` finished trials.

Every process running :func:`run_study` on one storage (local workers of ``--jobs N``, or separate commands on
other machines) takes trials until the study holds ``trials`` finished (COMPLETE + PRUNED) trials. A trial
whose number is beyond the quota of claimed trials (several workers started at once) is dropped before
training (state FAIL, user attr ``surplus``). Stale RUNNING trials (their worker died) are failed and retried
(:func:`._storage.fail_stale_trials`). Re-running the command resumes.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ._config import FINISHED, StudyConfig, StudyError, _sampler, _search_space
from ._storage import (
    ARTIFACT_DIR_ATTR,
    _quiet,
    artifact_dir,
    default_storage,
    fail_stale_trials,
    open_artifact_store,
    open_storage,
    open_study,
    study_artifact_store,
)
from ._trial import INTERRUPT, _Objective, _Surplus, load_study_data, trial_line

__all__ = ["run_study", "prepare_study", "study_counts", "worker_attrs"]


def _counts(study: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


study_counts = _counts


def _finished(study: Any, counts: dict[str, int] | None = None) -> int:
    counts = _counts(study) if counts is None else counts
    return sum(counts.get(s, 0) for s in FINISHED)


def prepare_study(config: StudyConfig, out_dir: Path | str) -> tuple[str, Any]:
    """Check the config, create the output folder, open (or create) the study; return ``(storage URL, study)``.

    Run it once in a parent before starting local workers: two processes creating one fresh SQLite study at
    once can crash.
    """
    from mgnas.search_spaces import get_space

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
    study = open_study(config, open_storage(url, config))
    if ARTIFACT_DIR_ATTR not in study.user_attrs:  # where the trials' specs go (optuna-dashboard --artifact-dir)
        folder = artifact_dir(url, out)
        open_artifact_store(folder)
        study.set_user_attr(ARTIFACT_DIR_ATTR, str(folder))
    return url, study


def pruner_note(config: StudyConfig) -> str | None:
    """Why the configured pruner is off for this study (None when it is on)."""
    if not config.multi_objective or config.pruner == "none":
        return None
    if config.pruner in ("sha", "hyperband"):
        return None
    return (f"note: pruner {config.pruner!r} is off: Optuna does not prune multi-objective studies "
            "(per-epoch accuracies are kept in user attr val_accuracy_history; use --pruner sha or hyperband)")


def worker_attrs(config: StudyConfig, worker: int = 0) -> dict[str, Any]:
    """What every trial records about where it ran: ``worker`` (index among the local workers), ``threads``,
    ``device``, ``pid``, ``host``."""
    import socket

    import torch

    from mgnas.runtime import resolve_device

    return {"worker": int(worker), "threads": torch.get_num_threads(), "device": str(resolve_device(config.device)),
            "pid": os.getpid(), "host": socket.gethostname()}


def run_study(config: StudyConfig, out_dir: Path | str, *, data: Any = None, progress: bool = False,
              log: Any = print, worker: int = 0, prefix: str = "") -> Any:
    """Take trials from the study until it holds ``config.trials`` finished trials; return the study.

    ``worker``: this process's index among local workers (``--jobs``), recorded with its threads, device, pid
    and host as user attrs of every trial it runs (:func:`worker_attrs`); ``prefix`` starts every line logged
    (e.g. ``"[w0] "``). Ctrl-C / SIGTERM (as KeyboardInterrupt) fails the running trial and queues it again
    (``RetryFailedTrialCallback``), so re-running the command retries it.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url, study = prepare_study(config, out_dir)
    out = Path(out_dir)
    attrs = worker_attrs(config, worker)  # an unknown or unavailable device fails here, before any trial
    if data is None:
        data = load_study_data(config)
    joined = len(study.get_trials(deepcopy=False)) > 0
    study.sampler = _sampler(config, salt=os.getpid() if joined else worker)
    note = pruner_note(config)
    if note:
        log(prefix + note)
    objective = _Objective(config, data, progress)
    objective.journal = isinstance(study._storage, optuna.storages.JournalStorage)
    objective.trial_attrs = attrs
    objective.artifacts = study_artifact_store(study, url)
    try:
        while True:
            INTERRUPT.check()  # between trials: a safe point for a worker's stop request
            fail_stale_trials(study, config)
            counts = _counts(study)
            finished = _finished(study, counts)
            if finished >= config.trials:
                break
            claimed = finished + counts.get("RUNNING", 0) + counts.get("WAITING", 0)
            if claimed >= config.trials and counts.get("WAITING", 0) == 0:
                time.sleep(config.poll_seconds)  # others hold the rest; wait for them (or their heartbeats to go stale)
                continue
            objective.current = None
            try:
                with _quiet():
                    study.optimize(objective, n_trials=1, catch=(_Surplus,), gc_after_trial=True, callbacks=[
                        lambda st, t: log(f"{prefix}{trial_line(t, config.objectives)} "
                                          f"[{_finished(st)}/{config.trials} finished]")])
            except (ValueError, optuna.exceptions.UpdateFinishedTrialError) as err:
                stale = isinstance(err, optuna.exceptions.UpdateFinishedTrialError) or "Cannot tell a" in str(err)
                if not stale or not _failed_as_stale(study, objective.current):
                    raise
                log(f"{prefix}trial {study._storage.get_trial(objective.current).number}: its heartbeat was late, so "
                    f"another worker failed it and queued it again ({str(err).strip()[:80]})")
    except KeyboardInterrupt:
        _retry_interrupted(study, objective.current, config)
        raise
    (out / "study.json").write_text(json.dumps({"storage": url, "study_name": config.name}) + "\n")
    return study


def _failed_as_stale(study: Any, trial_id: int | None) -> bool:
    """The trial this worker ran was failed by another worker (its heartbeat looked stale): Optuna then refuses
    this worker's result ("Cannot tell a FAIL trial"); the other worker has queued the trial again."""
    import optuna

    if trial_id is None:
        return False
    try:
        return study._storage.get_trial(trial_id).state == optuna.trial.TrialState.FAIL
    except Exception:  # noqa: BLE001 - the storage is what failed: not this case
        return False


def _retry_interrupted(study: Any, trial_id: int | None, config: StudyConfig) -> None:
    """The trial an interrupt stopped is FAIL (Optuna's doing): queue the same parameters again."""
    import contextlib

    import optuna

    if trial_id is None:
        return
    with contextlib.suppress(Exception):  # best effort: the storage may be what was interrupted
        trial = study._storage.get_trial(trial_id)
        if trial.state == optuna.trial.TrialState.RUNNING:
            study._storage.set_trial_state_values(trial_id, state=optuna.trial.TrialState.FAIL)
            trial = study._storage.get_trial(trial_id)
        if trial.state == optuna.trial.TrialState.FAIL and not trial.user_attrs.get("surplus"):
            with _quiet():
                optuna.storages.RetryFailedTrialCallback(max_retry=config.max_retry)(study, trial)
