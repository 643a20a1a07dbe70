"""Optuna studies over group structure: multi-objective (accuracy vs params/MACs), many workers, resumable.

The package, by concern:

- :mod:`._config`   :class:`StudyConfig`, its defaults and what it derives (grid, sampler, Optuna pruner)
- :mod:`._storage`  storage URLs, :func:`open_storage`, :func:`open_study`, the SQLite creation lock, heartbeats
- :mod:`._trial`    one trial by kind (``train``; ``search`` in :mod:`._trial_search`), recording, epoch hook
- :mod:`._pruning`  multi-objective successive halving / Hyperband on epochs (state in the storage)
- :mod:`._run`      :func:`run_study`, the loop every worker process runs
- :mod:`._workers`  ``--jobs N``: local worker processes, their threads and devices, one progress view
- :mod:`._pareto`   the front, hypervolume, importances, ``trials.csv`` and plots

``mgnas.strategies.optuna_study`` and ``mgnas.strategies._pareto`` re-export these names (older imports).
"""

from ._config import (
    BUDGET_LABEL,
    FINISHED,
    OBJECTIVES,
    PRUNERS,
    SAMPLERS,
    TRAIN_DEFAULTS,
    TRIAL_KINDS,
    StudyConfig,
    StudyError,
    study_overrides,
)
from ._pareto import (
    HypervolumeInfo,
    ImportanceInfo,
    ParetoFrontInfo,
    dominates,
    export_pareto,
    hypervolume_info,
    importance_info,
    non_dominated,
    pareto_front_info,
    trial_spec_json,
)
from ._run import prepare_study, run_study
from ._storage import artifact_dir, default_storage, open_artifact_store, open_storage, open_study, study_artifact_store
from ._trial import (
    METRIC_ATTRS,
    Candidate,
    EpochReporter,
    build_candidate,
    check_duplicate,
    epoch_values,
    load_study_data,
    objective_values,
    record_candidate,
    train_candidate,
    trial_line,
)
from ._workers import parse_devices, parse_jobs, plan_workers, run_workers

__all__ = [
    "parse_devices", "parse_jobs", "plan_workers", "run_workers",
    "StudyConfig", "StudyError", "OBJECTIVES", "SAMPLERS", "PRUNERS", "TRIAL_KINDS", "TRAIN_DEFAULTS", "FINISHED",
    "BUDGET_LABEL", "study_overrides",
    "default_storage", "open_storage", "open_study",
    "METRIC_ATTRS", "Candidate", "EpochReporter", "build_candidate", "check_duplicate", "epoch_values",
    "load_study_data", "objective_values", "record_candidate", "train_candidate", "trial_line",
    "prepare_study", "run_study",
    "ParetoFrontInfo", "HypervolumeInfo", "ImportanceInfo", "dominates", "non_dominated", "pareto_front_info",
    "hypervolume_info", "importance_info", "export_pareto", "trial_spec_json",
    "open_artifact_store", "study_artifact_store", "artifact_dir",
]
