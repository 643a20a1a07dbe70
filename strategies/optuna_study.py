"""Optuna studies over group structure (compatibility module): the code lives in :mod:`mgnas.strategies.study`.

Every name this module had keeps working, private ones used by the NNI backend and tests included.
"""

from __future__ import annotations

from .study import (  # noqa: F401
    FINISHED,
    METRIC_ATTRS,
    OBJECTIVES,
    PRUNERS,
    SAMPLERS,
    TRAIN_DEFAULTS,
    Candidate,
    StudyConfig,
    StudyError,
    build_candidate,
    default_storage,
    load_study_data,
    objective_values,
    open_storage,
    open_study,
    run_study,
    study_overrides,
    train_candidate,
    trial_line,
)
from .study._config import _pruner, _sampler, _search_space  # noqa: F401
from .study._run import _counts, _finished  # noqa: F401
from .study._storage import (  # noqa: F401
    _HEARTBEAT_KEY,
    _fail_stale_journal_trials,
    _file_lock,
    _first_line,
    _quiet,
    _retry_callback,
    _sqlite_path,
)
from .study._trial import _Objective, _RestrictedTrial, _Surplus  # noqa: F401

__all__ = ["StudyConfig", "StudyError", "open_storage", "open_study", "run_study", "OBJECTIVES", "SAMPLERS",
           "PRUNERS"]
