"""Study throughput on digits: trials/hour with and without pruning, and the study machinery's overhead.

    python experiments/benchmarks/bench_study.py [--trials 12] [--epochs 3] [--storage sqlite|journal] [--nni]
    python experiments/benchmarks/bench_study.py --jobs-compare [--jobs 2] [--trials 8] [--epochs 2]

``--jobs-compare`` (issue 10): trials/hour of ``mgnas study --jobs N`` (N workers, cores/N threads each) vs
``--jobs 1`` (one process, all cores), each a fresh command under the default thread policy (no
OMP_NUM_THREADS/MGNAS_THREADS), on the same grid of trials (grid sampler: the same points in both). Run it alone.

Three studies of MGIC-ResNet-56 on 8x8 digits, one worker each, fresh storage in a temp dir:
(1) single objective (accuracy), median pruner; (2) the same without pruning; (3) accuracy + params
(multi-objective: Optuna cannot prune, so this is the cost of the default study); with ``--nni``, (4) the same
multi-objective study run by the experimental NNI backend (TPE tuner, a local NNI experiment, each trial a fresh
``python -m mgnas.strategies._nni_trial`` process). Per study: wall time,
trials/hour, and the overhead per trial = (wall - sum of the trials' training seconds - model build and
count time) / trials, i.e. storage round trips + sampler + pruner; printed as a Markdown table for RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path


def _run(label: str, objectives: tuple[str, ...], pruner: str, args: argparse.Namespace, root: Path) -> dict:
    from mgnas.strategies.optuna_study import TRAIN_DEFAULTS, StudyConfig, run_study

    from mgnas.data import load_data
    from mgnas.train import TrainConfig

    out = root / label
    storage = f"journal:{out / 'study.log'}" if args.storage == "journal" else None
    out.mkdir(parents=True)
    train = TrainConfig(**{**TRAIN_DEFAULTS, "epochs": args.epochs})
    config = StudyConfig(space="mgic_resnet56", data="digits", trials=args.trials, storage=storage,
                         study_name=label, sampler="tpe", objectives=objectives, pruner=pruner, train=train)
    data = load_data("digits", batch_size=train.batch_size, seed=0)
    t0 = time.perf_counter()
    study = run_study(config, out, data=data, log=lambda *_: None)
    wall = time.perf_counter() - t0
    trials = study.get_trials(deepcopy=False)
    trained = sum(t.user_attrs.get("seconds", 0.0) for t in trials if t.state.name == "COMPLETE")
    # pruned trials have no "seconds": count their time from the timestamps
    pruned_s = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in trials
                   if t.state.name == "PRUNED" and t.datetime_complete and t.datetime_start)
    per_trial = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials
                 if t.state.name == "COMPLETE" and t.datetime_complete and t.datetime_start]
    in_trial_extra = sum(per_trial) - trained  # build + count + storage writes inside the trial
    n = len(trials)
    return {"label": label, "trials": n, "complete": sum(t.state.name == "COMPLETE" for t in trials),
            "pruned": sum(t.state.name == "PRUNED" for t in trials), "wall_s": wall,
            "trials_per_hour": 3600 * n / wall, "train_s": trained + pruned_s,
            "overhead_per_trial_s": (wall - sum(per_trial) - pruned_s) / max(n, 1),
            "in_trial_extra_per_trial_s": in_trial_extra / max(len(per_trial), 1)}


def _run_nni(args: argparse.Namespace, root: Path) -> dict:
    """The multi-objective study through ``--backend nni``: trials are subprocesses, so their build/count/imports
    happen outside the recorded training seconds; the overhead column holds all of it (wall - training) / trials."""
    import socket

    from mgnas.strategies.nni_hpo import run_nni_study
    from mgnas.strategies.optuna_study import TRAIN_DEFAULTS, StudyConfig

    from mgnas.train import TrainConfig

    out = root / "nni"
    out.mkdir(parents=True)
    with socket.socket() as sock:
        sock.bind(("", 0))
        port = sock.getsockname()[1]
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the trial processes inherit it
    train = TrainConfig(**{**TRAIN_DEFAULTS, "epochs": args.epochs})
    config = StudyConfig(space="mgic_resnet56", data="digits", trials=args.trials, study_name="nni",
                         objectives=("accuracy", "params"), pruner="none", train=train)
    t0 = time.perf_counter()
    study = run_nni_study(config, out, tuner="tpe", port=port, log=lambda *_: None)
    wall = time.perf_counter() - t0
    trials = study.get_trials(deepcopy=False)
    trained = sum(t.user_attrs.get("seconds", 0.0) for t in trials)
    n = len(trials)
    return {"label": "multi, NNI backend (TPE)", "trials": n,
            "complete": sum(t.state.name == "COMPLETE" for t in trials),
            "pruned": sum(t.state.name == "PRUNED" for t in trials), "wall_s": wall,
            "trials_per_hour": 3600 * n / wall, "train_s": trained,
            "overhead_per_trial_s": (wall - trained) / max(n, 1), "in_trial_extra_per_trial_s": float("nan")}


def _jobs_run(jobs: int, args: argparse.Namespace, root: Path) -> dict:
    """One ``mgnas study --jobs N`` command (a fresh process, the default thread policy) on the fixed grid."""
    import subprocess

    out = root / f"jobs{jobs}"
    config = root / "grid.yaml"
    config.write_text(
        "space: mgic_resnet56\ndata: digits\nsampler: grid\nobjectives: [accuracy, params]\npruner: none\n"
        "fixed: {levels: null, level_rule: paper}\n"
        "choices: {group_size: [4, 8, 16], coarse_size: [16, 32, 64]}\n")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MGNAS_THREADS")}
    cmd = [sys.executable, "-m", "mgnas", "study", "--config", str(config), "--trials", str(args.trials),
           "--epochs-per-trial", str(args.epochs), "--batch-size", str(args.batch_size), "--study-name", "grid",
           "--out", str(out), "--no-plots", "--jobs", str(jobs)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"--jobs {jobs} failed ({proc.returncode}): {(proc.stdout + proc.stderr)[-2000:]}")
    import optuna

    study = optuna.load_study(study_name="grid", storage=f"sqlite:///{out / 'study.db'}")
    trials = [t for t in study.get_trials(deepcopy=False) if t.state.name in ("COMPLETE", "PRUNED")]
    return {"jobs": jobs, "trials": len(trials), "wall_s": wall, "trials_per_hour": 3600 * len(trials) / wall,
            "threads": sorted({t.user_attrs.get("threads") for t in trials}),
            "workers": sorted({t.user_attrs.get("worker") for t in trials}),
            "grid": sorted(tuple(sorted(t.params.items())) + (t.state.name,) for t in trials)}


def jobs_compare(args: argparse.Namespace) -> int:
    """``--jobs-compare``: trials/hour of ``mgnas study --jobs N`` vs ``--jobs 1`` on the same grid of trials."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for jobs in (1, args.jobs):
            rows.append(_jobs_run(jobs, args, Path(tmp)))
            print({k: v for k, v in rows[-1].items() if k != "grid"}, file=sys.stderr)
    same = rows[0]["grid"] == rows[1]["grid"]
    if not same:
        print(f"different trials: --jobs 1 {rows[0]['grid']} vs --jobs {args.jobs} {rows[1]['grid']}", file=sys.stderr)
    load = os.getloadavg()[0]
    print(f"\nCommand: `python experiments/benchmarks/bench_study.py --jobs-compare --jobs {args.jobs} "
          f"--trials {args.trials} --epochs {args.epochs} --batch-size {args.batch_size}`; MGIC-ResNet-56 on digits, "
          f"grid sampler over group_size x coarse_size (same {args.trials} trials in both: {same}), "
          f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, 1-min load {load:.2f}.\n")
    print("| command | workers x threads | trials | wall (s) | trials/hour | speed-up |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| `mgnas study --jobs {r['jobs']}` | {len(r['workers'])} x {','.join(map(str, r['threads']))} | "
              f"{r['trials']} | {r['wall_s']:.1f} | {r['trials_per_hour']:.0f} | "
              f"{r['trials_per_hour'] / rows[0]['trials_per_hour']:.2f}x |")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--storage", choices=("sqlite", "journal"), default="sqlite")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: robust on shared small machines)")
    parser.add_argument("--nni", action="store_true", help="also run the study through the NNI backend")
    parser.add_argument("--jobs-compare", action="store_true",
                        help="instead: trials/hour of `mgnas study --jobs N` vs `--jobs 1` on the same grid")
    parser.add_argument("--jobs", type=int, default=2, help="--jobs-compare: the N to compare with 1 (default 2)")
    parser.add_argument("--batch-size", type=int, default=32, help="--jobs-compare: training batch size")
    args = parser.parse_args()
    if args.jobs_compare:
        if args.trials > 9:
            parser.error("--jobs-compare: the grid has 9 points; use --trials 9 or fewer")
        return jobs_compare(args)
    import torch

    torch.set_num_threads(args.threads)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, objectives, pruner in (("pruned", ("accuracy",), "median"), ("unpruned", ("accuracy",), "none"),
                                          ("multi", ("accuracy", "params"), "none")):
            rows.append(_run(label, objectives, pruner, args, Path(tmp)))
            print(rows[-1], file=sys.stderr)
        if args.nni:
            rows.append(_run_nni(args, Path(tmp)))
            print(rows[-1], file=sys.stderr)
    load = os.getloadavg()[0]
    nni_flag = " --nni" if args.nni else ""
    print(f"\nCommand: `python experiments/benchmarks/bench_study.py --trials {args.trials} --epochs {args.epochs} "
          f"--storage {args.storage}{nni_flag}`; MGIC-ResNet-56 on digits (8x8), TPE, one worker; "
          f"torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, 1-min load {load:.2f}.\n")
    print("| study | trials (complete / pruned) | wall (s) | trials/hour | training (s) | "
          "overhead between trials (s/trial) | build+count+writes in trial (s/trial) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['label']} | {r['trials']} ({r['complete']} / {r['pruned']}) | {r['wall_s']:.1f} | "
              f"{r['trials_per_hour']:.0f} | {r['train_s']:.1f} | {r['overhead_per_trial_s']:.3f} | "
              f"{r['in_trial_extra_per_trial_s']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
