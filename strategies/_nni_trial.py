"""One NNI trial of ``mgnas study --backend nni``: run by NNI as ``python -m mgnas.strategies._nni_trial``.

``--config`` is the study config the backend wrote (``OUT/nni/study.yaml``), ``--out`` the backend's NNI folder.
The trial takes its parameters from ``nni.get_next_parameter()``, replays them through the space
(``space.suggest(FixedTrial(fixed + parameters))``), trains with the Optuna backend's own per-trial step
(:func:`~mgnas.strategies.optuna_study.build_candidate`, ``train_candidate``), reports the validation accuracy
after every epoch (``nni.report_intermediate_result``) and at the end (``nni.report_final_result`` with
``default`` = val accuracy, plus ``params`` and ``macs``), and writes ``OUT/trials/<nni trial id>.json``:
``choices`` (searched labels), ``spec`` (JSON), ``params``, ``macs``, metrics; or ``infeasible`` (reason;
final result 0.0, so the tuner moves away) or ``duplicate_of`` (the NNI trial that already trained these
choices; its accuracy is reported again as ``reported_accuracy``, nothing is trained twice).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any


def _write(path: Path, record: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, path)


def _trained_before(trials_dir: Path, choices: dict[str, Any], me: str) -> dict[str, Any] | None:
    """The record of an earlier trial that trained exactly ``choices`` (None if there is none)."""
    key = json.dumps(choices, sort_keys=True)
    for path in sorted(trials_dir.glob("*.json")):
        if path.stem == me:
            continue
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if "val_accuracy" in record and json.dumps(record.get("choices"), sort_keys=True) == key:
            return record
    return None


def run_trial(config_path: Path, out: Path) -> dict[str, Any]:
    """Run the trial NNI handed to this process; return the record written."""
    from mgnas.search_spaces import FixedTrial, InfeasibleChoice, get_space

    from mgnas.config import load_config

    from ._nni_common import import_nni
    from .nni_hpo import decode_parameters, nni_search_space
    from .optuna_study import METRIC_ATTRS, StudyConfig, build_candidate, load_study_data, train_candidate
    from .study._trial import seed_trial

    nni = import_nni()
    config = load_config(StudyConfig, config_path)
    trials_dir = out / "trials"
    trials_dir.mkdir(parents=True, exist_ok=True)
    trial_id = nni.get_trial_id()
    path = trials_dir / f"{trial_id}.json"
    choices = decode_parameters(nni_search_space(config), nni.get_next_parameter() or {})
    record: dict[str, Any] = {"trial_id": trial_id, "sequence": nni.get_sequence_id(), "choices": choices}
    earlier = _trained_before(trials_dir, choices, trial_id)
    if earlier is not None:
        record.update(duplicate_of=earlier["trial_id"], reported_accuracy=earlier["val_accuracy"])
        nni.report_final_result({"default": float(earlier["val_accuracy"]), "duplicate_of": earlier["trial_id"]})
        _write(path, record)
        return record
    data = load_study_data(config)
    seed_trial(config.train.seed, int(record["sequence"]))  # like an Optuna trial: (seed, trial number)
    try:
        candidate = build_candidate(get_space(config.space).suggest(FixedTrial({**config.fixed, **choices})), data)
    except InfeasibleChoice as err:
        record["infeasible"] = str(err)
        _write(path, record)
        nni.report_final_result({"default": 0.0, "infeasible": str(err)})
        return record
    record.update(candidate.attrs())
    _write(path, record)  # the spec is on disk before training starts (inspect a trial that crashes)

    def on_epoch_end(epoch: int, val_accuracy: float, history: list[float]) -> None:
        nni.report_intermediate_result(val_accuracy)

    metrics = train_candidate(candidate, config, data, on_epoch_end=on_epoch_end)
    record.update({k: metrics[k] for k in METRIC_ATTRS}, val_accuracy_history=metrics["val_accuracy_history"])
    _write(path, record)
    nni.report_final_result({"default": float(metrics["val_accuracy"]), "params": candidate.params,
                             "macs": candidate.macs})
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mgnas.strategies._nni_trial",
                                     description="one NNI trial of mgnas study --backend nni (run by NNI)")
    parser.add_argument("--config", required=True, type=Path, help="the study config (OUT/nni/study.yaml)")
    parser.add_argument("--out", required=True, type=Path, help="the backend's NNI folder (OUT/nni)")
    args = parser.parse_args(argv)
    run_trial(args.config, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
