"""NNI HPO backend for ``mgnas study --backend nni`` (experimental): the same space, tuned by an NNI tuner.

What it does. :func:`run_nni_study` turns the study's space (with ``fixed`` / ``choices`` applied, as the Optuna
backend does) into NNI's search-space JSON (``{label: {"_type": "choice", "_value": [...]}}``), starts a local
NNI experiment (``nni.experiment.Experiment('local')``, one trial at a time, ``config.trials`` trials) whose
trial command is ``python -m mgnas.strategies._nni_trial``. Every NNI trial replays its parameters through the
space (``space.suggest(FixedTrial(...))``), trains exactly as an Optuna trial does (the shared
:func:`~mgnas.strategies.optuna_study.build_candidate` / ``train_candidate``), reports the validation accuracy per
epoch and at the end, and writes its spec and metrics to ``OUT/nni/trials/<nni trial id>.json``. The experiment
is always stopped at the end (also on error or Ctrl-C), so no NNI manager is left running.

Results land in Optuna storage. After the experiment every NNI trial is added to an Optuna study (default
``sqlite:///OUT/study.db``, any storage ``open_storage`` accepts, study name as for the Optuna backend) with the
same objectives and user attrs an Optuna trial has (``spec``, ``params``, ``macs``, ``val_accuracy``,
``test_accuracy``, ``seconds``, ``val_accuracy_history``) plus ``nni_trial_id``; infeasible choices and repeats
of an already trained choice are PRUNED trials (``infeasible`` / ``duplicate_of``), crashed trials FAIL (with
``nni_stderr``). So ``mgnas pareto`` and :func:`~mgnas.strategies._pareto.export_pareto` work unchanged, and
re-running the command resumes: only the trials still missing are run (by a fresh tuner, which does not see the
earlier ones).

Single objective. NNI tuners optimise one number: here the validation accuracy (maximised). ``params`` and
``macs`` are recorded and the study keeps ``config.objectives``, so the Pareto front is computed as usual, but
the tuner is not steered towards small models (nor by ``max_params``, which is recorded as a constraint only).
Use the Optuna backend for a real multi-objective search.

Web UI. While the experiment runs, NNI's web UI is at ``http://127.0.0.1:PORT`` (``port``, default 8080).
NNI 3.0's server listens on *all* network interfaces (``app.listen(port)``), not only on 127.0.0.1: anyone who
can reach the machine can see and control the experiment, so use it on a trusted network or firewall the port.
The UI is gone once the command ends; NNI also records the experiment in ``~/nni-experiments/.experiment``.

Tuners: ``tpe`` (seeded with ``config.seed``), ``random`` (seeded), ``evolution`` (population
``max(2, min(32, trials // 2))``; NNI's evolution tuner cannot be seeded, so its runs are not reproducible).
"""

from __future__ import annotations

import contextlib
import json
import shlex
import socket
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ._experimental import experimental
from ._nni_common import NNI_REASON, import_nni
from .optuna_study import (
    METRIC_ATTRS,
    StudyConfig,
    StudyError,
    _search_space,
    default_storage,
    objective_values,
    open_storage,
    open_study,
    trial_line,
)

__all__ = ["NNI_TUNERS", "NNIExperimentError", "run_nni_study", "nni_search_space", "decode_parameters",
           "import_trials", "evolution_population"]

NNI_TUNERS = ("tpe", "evolution", "random")
_TUNER_NAMES = {"tpe": "TPE", "evolution": "Evolution", "random": "Random"}
_DONE = ("DONE", "STOPPED", "NO_MORE_TRIAL", "TUNER_NO_MORE_TRIAL")
_LIVE_JOBS = ("WAITING", "RUNNING", "UNKNOWN")


class NNIExperimentError(RuntimeError):
    """The NNI experiment itself failed (manager or tuner error); the message names its log directory."""


# --------------------------------------------------------------------------- search space <-> NNI JSON
def _encode(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def nni_search_space(config: StudyConfig) -> dict[str, dict[str, Any]]:
    """NNI's search-space JSON for the study: one ``choice`` per searched label, values as the space has them.

    ``config.fixed`` labels are left out (the trial pins them), ``config.choices`` narrows a label. Raises
    :class:`StudyError` for unknown labels / values, a space with nothing left to search, or a value that does
    not survive NNI's JSON round trip exactly (every value of the built-in spaces does: None, bool, int, float, str).
    """
    dims = _search_space(config)
    if not dims:
        raise StudyError(f"{config.space}: every label is fixed; there is nothing for NNI to search")
    out = {}
    for label, values in dims.items():
        encoded = []
        for value in values:
            try:
                text = _encode(value)
            except (TypeError, ValueError):
                raise StudyError(f"{label}: choice {value!r} cannot be sent to NNI (not JSON)") from None
            back = json.loads(text)
            if back != value or type(back) is not type(value):
                raise StudyError(f"{label}: choice {value!r} does not survive NNI's JSON round trip")
            encoded.append(text)
        if len(set(encoded)) != len(encoded):
            raise StudyError(f"{label}: choices {values} are not distinct")
        out[label] = {"_type": "choice", "_value": list(values)}
    return out


def decode_parameters(search_space: dict[str, dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    """The space's own values for the parameters NNI sent (matched by JSON encoding, so ``True`` never
    becomes ``1``); ValueError when a label is missing, unknown or has a value outside its choices."""
    missing = sorted(set(search_space) - set(params))
    extra = sorted(set(params) - set(search_space))
    if missing or extra:
        raise ValueError(f"NNI parameters do not match the search space (missing {missing}, unknown {extra})")
    out = {}
    for label, dim in search_space.items():
        by_text = {_encode(v): v for v in dim["_value"]}
        text = _encode(params[label])
        if text not in by_text:
            raise ValueError(f"{label}: NNI sent {params[label]!r}, not one of {dim['_value']}")
        out[label] = by_text[text]
    return out


def space_size(search_space: dict[str, dict[str, Any]]) -> int:
    n = 1
    for dim in search_space.values():
        n *= len(dim["_value"])
    return n


def evolution_population(trials: int) -> int:
    """Population of NNI's evolution tuner: half the trials (2..32), so few trials still see mutations."""
    return max(2, min(32, trials // 2))


def _tuner(config: StudyConfig, tuner: str, trials: int) -> tuple[str, dict[str, Any]]:
    if tuner not in NNI_TUNERS:
        raise StudyError(f"NNI tuner {tuner!r} is not supported; valid values: {', '.join(NNI_TUNERS)}")
    if tuner == "tpe":
        args: dict[str, Any] = {"optimize_mode": "maximize", "seed": config.seed}
    elif tuner == "random":
        args = {"seed": config.seed}
    else:
        args = {"optimize_mode": "maximize", "population_size": evolution_population(trials)}
    return _TUNER_NAMES[tuner], args


# --------------------------------------------------------------------------- the experiment
def _check_port(port: int) -> None:
    if not 1 <= port <= 65535:
        raise StudyError(f"NNI port: {port} is not a TCP port (1..65535)")
    with socket.socket() as sock:  # NNI binds every interface, so check the wildcard address
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("", port))
        except OSError:
            raise StudyError(f"NNI port {port} is already in use; pick another with --nni-port") from None


def _check_config(config: StudyConfig) -> None:
    if "accuracy" not in config.objectives:
        raise StudyError("the NNI backend maximises validation accuracy; --objectives must include accuracy")


def _experiment_config(exp: Any, config: StudyConfig, search_space: dict, nni_dir: Path, tuner: str,
                       trials: int) -> None:
    c = exp.config
    c.experiment_name = config.name
    c.trial_command = " ".join(shlex.quote(a) for a in (
        sys.executable, "-m", "mgnas.strategies._nni_trial", "--config", str(nni_dir / "study.yaml"),
        "--out", str(nni_dir)))
    c.trial_code_directory = str(nni_dir)
    c.search_space = search_space
    c.tuner.name, c.tuner.class_args = _tuner(config, tuner, trials)
    c.max_trial_number = trials
    c.trial_concurrency = 1
    c.experiment_working_directory = str(nni_dir / "experiments")
    # trial_gpu_number is left unset: NNI then leaves CUDA_VISIBLE_DEVICES alone and the trial sees every GPU


def _wait(exp: Any, poll: float) -> list[Any]:
    """Poll until the experiment is done; return its trial jobs (ordered as NNI started them)."""
    while True:
        status = exp.get_status()
        if status == "ERROR":
            raise NNIExperimentError(f"the NNI experiment {exp.id} failed; see its logs in "
                                     f"{Path(exp.config.experiment_working_directory) / exp.id / 'log'}")
        jobs = exp.list_trial_jobs()
        if status in _DONE and not any(j.status in _LIVE_JOBS for j in jobs):
            return sorted(jobs, key=lambda j: j.sequenceId)
        time.sleep(poll)


@experimental(NNI_REASON)
def run_nni_study(config: StudyConfig, out_dir: Path | str, *, tuner: str = "tpe", port: int = 8080,
                  log: Any = print) -> Any:
    """Run ``config.trials`` trials (minus those the study already holds) as a local NNI experiment, import
    them into the Optuna study and return it. See the module docstring for the caveats."""
    import optuna
    from mgnas.search_spaces import get_space

    from mgnas.config import dump_config

    import_nni()  # NNIUnavailable (an ImportError with the install hint) before anything is created
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    get_space(config.space)  # unknown space: ValueError before anything is started
    _check_config(config)
    search_space = nni_search_space(config)
    if config.trials > space_size(search_space):
        raise StudyError(f"trials: {config.trials} exceeds the space's {space_size(search_space)} points; "
                         f"use --trials {space_size(search_space)}")
    _tuner(config, tuner, config.trials)
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    url = config.storage or default_storage(out)
    study = open_study(config, open_storage(url, config))
    finished = sum(t.state.name in ("COMPLETE", "PRUNED") for t in study.get_trials(deepcopy=False))
    todo = config.trials - finished
    if todo > 0:
        _check_port(port)
        nni_dir = out / "nni"
        (nni_dir / "trials").mkdir(parents=True, exist_ok=True)
        (nni_dir / "study.yaml").write_text(dump_config(config))
        try:
            exp_id, jobs = _run_experiment(config, search_space, nni_dir, tuner, todo, port, log)
        except _Interrupted as stop:  # Ctrl-C: the experiment is stopped; keep what finished, then stop too
            imported = import_trials(study, config, search_space, nni_dir / "trials",
                                     _jobs_from_records(nni_dir / "trials"), experiment_id=stop.experiment_id)
            log(f"interrupted: imported {imported} NNI trial(s) into study {config.name!r} ({url})")
            raise KeyboardInterrupt from None
        imported = import_trials(study, config, search_space, nni_dir / "trials", jobs, experiment_id=exp_id)
        for t in study.get_trials(deepcopy=False)[len(study.get_trials(deepcopy=False)) - imported:]:
            log(f"{trial_line(t, config.objectives)} (NNI trial {t.user_attrs.get('nni_trial_id')})")
        log(f"imported {imported} NNI trial(s) into study {config.name!r} ({url})")
    from mgnas._atomic import write_json_atomic

    write_json_atomic({"storage": url, "study_name": config.name, "backend": "nni"}, out / "study.json", indent=None)
    return study


def _run_experiment(config: StudyConfig, search_space: dict, nni_dir: Path, tuner: str, trials: int, port: int,
                    log: Any) -> tuple[str, list[Any]]:
    from nni.experiment import Experiment

    exp = Experiment("local")
    _experiment_config(exp, config, search_space, nni_dir, tuner, trials)
    try:
        try:
            exp.start(port)
        except RuntimeError as err:  # NNI's own port check (a race with ours) or a manager that did not start
            raise NNIExperimentError(f"NNI could not start on port {port}: {err}") from None
        log(f"NNI web UI: http://127.0.0.1:{port}  (experiment {exp.id}, tuner {_TUNER_NAMES[tuner]}, "
            f"{trials} trial(s))")
        log(f"warning: NNI's web server listens on all network interfaces, not only 127.0.0.1; use it on a "
            f"trusted network or firewall port {port}")
        return exp.id, _wait(exp, poll=0.5)
    except KeyboardInterrupt:
        raise _Interrupted(exp.id) from None
    finally:
        exp.stop()


class _Interrupted(Exception):
    def __init__(self, experiment_id: str) -> None:
        super().__init__(experiment_id)
        self.experiment_id = experiment_id


def _jobs_from_records(trials_dir: Path) -> list[Any]:
    """Stand-ins for NNI's trial jobs when the experiment was interrupted: a trial that wrote its outcome
    counts as SUCCEEDED, one still training as USER_CANCELED (imported as FAIL)."""
    jobs = []
    for path in trials_dir.glob("*.json"):
        record = json.loads(path.read_text())
        done = any(k in record for k in ("val_accuracy", "infeasible", "duplicate_of"))
        jobs.append(SimpleNamespace(trialJobId=path.stem, status="SUCCEEDED" if done else "USER_CANCELED",
                                    hyperParameters=[], stderrPath="", sequenceId=record.get("sequence", 0)))
    return sorted(jobs, key=lambda j: j.sequenceId)


# --------------------------------------------------------------------------- NNI trials -> Optuna trials
def _read_record(trials_dir: Path, trial_id: str) -> dict[str, Any]:
    path = trials_dir / f"{trial_id}.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def import_trials(study: Any, config: StudyConfig, search_space: dict, trials_dir: Path, jobs: list[Any], *,
                  experiment_id: str = "") -> int:
    """Add every NNI trial job not yet in ``study`` (user attr ``nni_trial_id``) as an Optuna trial."""
    import optuna
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import TrialState

    seen = {t.user_attrs.get("nni_trial_id"): t.number for t in study.get_trials(deepcopy=False)}
    dists = {label: CategoricalDistribution(dim["_value"]) for label, dim in search_space.items()}
    added = 0
    for job in jobs:
        if job.trialJobId in seen:
            continue
        record = _read_record(trials_dir, job.trialJobId)
        attrs: dict[str, Any] = {"nni_trial_id": job.trialJobId, "nni_experiment_id": experiment_id,
                                 "nni_status": job.status}
        for key in ("spec", "params", "macs", *METRIC_ATTRS, "val_accuracy_history", "infeasible"):
            if key in record:
                attrs[key] = record[key]
        history = record.get("val_accuracy_history") or []
        kwargs: dict[str, Any] = {"intermediate_values": dict(enumerate(history))}
        if job.status == "SUCCEEDED" and "duplicate_of" in record:
            attrs["duplicate_of"] = seen.get(record["duplicate_of"], record["duplicate_of"])
            kwargs["state"] = TrialState.PRUNED
        elif job.status == "SUCCEEDED" and "infeasible" in record:
            kwargs["state"] = TrialState.PRUNED
        elif job.status == "SUCCEEDED" and "val_accuracy" in record:
            kwargs["state"] = TrialState.COMPLETE
            vals = objective_values(config, SimpleNamespace(params=record["params"], macs=record["macs"]), record)
            kwargs["values"] = vals if isinstance(vals, list) else [vals]
            if config.max_params is not None:
                kwargs["constraints"] = {"params": float(record["params"] - config.max_params)}
        else:
            kwargs["state"] = TrialState.FAIL
            attrs["nni_stderr"] = str(getattr(job, "stderrPath", "") or "")
        params = record.get("choices")
        if params is None:  # the trial died before writing: take the parameters from NNI
            with contextlib.suppress(ValueError, IndexError, AttributeError, TypeError):
                params = decode_parameters(search_space, job.hyperParameters[0].parameters)
        trial = optuna.trial.create_trial(params=params or {}, distributions={k: dists[k] for k in params or {}},
                                          user_attrs=attrs, **kwargs)
        study.add_trial(trial)
        seen[job.trialJobId] = study.get_trials(deepcopy=False)[-1].number
        added += 1
    return added

