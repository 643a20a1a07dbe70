"""MO-SHA vs no pruning on a multi-objective study (issue 10 §3): epochs trained and hypervolume reached.

    python experiments/benchmarks/bench_mosha.py [--trials 16] [--epochs 8] [--seeds 0,1,2] [--write-results]
    python experiments/benchmarks/bench_mosha.py --trials 4 --epochs 3 --seeds 0      # a smoke run, minutes

For every seed the same study runs twice on the same data: ``--pruner none`` and ``--pruner sha``
(multi-objective successive halving, r = ``--min-epochs`` (1), η = ``--eta`` (3): rungs at r·η^k < ``--epochs``),
objectives accuracy (validation, maximised) and params (minimised), ``--sampler random`` with that seed. The
random sampler draws its configurations independently of the results, so both arms propose the same
architectures and differ only by pruning; every trial seeds itself from (seed, trial number) before it builds its
model, so a trial's learning curve is the same in both arms, whatever the trials before it did. Training is the
study's default (``TRAIN_DEFAULTS``: AdamW, batch 32) unless ``--batch-size`` says otherwise. Reported per seed
and in total:

- epochs trained: the sum over all trials of the epochs they ran (``val_accuracy_history`` of every trial);
- hypervolume of the completed trials' (accuracy, params) front. Reference point (documented, the same for both
  arms of a seed): accuracy 0 and params = 1.1 × the largest params count among the trials of both arms; params
  are divided by that reference, so the volume lies in [0, 1]. Computed here in 2-D (a sweep), no private
  Optuna API.

Goal (issue 10): at most 50% of the epochs for at least 95% of the hypervolume. Run it alone on the machine
(it trains with torch's default threads). ``--write-results`` replaces its section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "## MO-SHA vs no pruning (multi-objective study)"


def hypervolume_2d(points: list[tuple[float, float]], ref: tuple[float, float]) -> float:
    """Area dominated by ``points`` (both coordinates minimised) and bounded by ``ref``."""
    inside = sorted((x, y) for x, y in points if x < ref[0] and y < ref[1])
    area, best_y, stairs = 0.0, ref[1], []
    for x, y in inside:  # by x ascending: a point counts only if it lowers the staircase
        if y < best_y:
            stairs.append((x, y))
            best_y = y
    for k, (x, y) in enumerate(stairs):
        x_next = stairs[k + 1][0] if k + 1 < len(stairs) else ref[0]
        area += (x_next - x) * (ref[1] - y)
    return area


def run_arm(pruner: str, seed: int, args: argparse.Namespace, root: Path) -> dict:
    from mgnas.strategies.study import TRAIN_DEFAULTS, StudyConfig, load_study_data, run_study

    from mgnas.train.config import TrainConfig

    train = TrainConfig(**{**TRAIN_DEFAULTS, "epochs": args.epochs, "batch_size": args.batch_size, "seed": seed})
    out = root / f"{pruner}-{seed}"
    out.mkdir(parents=True, exist_ok=True)
    config = StudyConfig(space=args.space, data=args.data, trials=args.trials, storage=f"journal:{out / 'study.log'}",
                         study_name=f"mosha-{pruner}-{seed}", sampler="random", objectives=("accuracy", "params"),
                         pruner=pruner, seed=seed, train=train, reduction_factor=args.eta,
                         pruner_min_epochs=args.min_epochs)
    data = load_study_data(config)  # loaded per arm: both arms see the same shuffles
    t0 = time.perf_counter()
    study = run_study(config, out, data=data, log=(print if args.verbose else (lambda *_: None)))
    seconds = time.perf_counter() - t0
    epochs, complete = 0, []
    for t in study.get_trials(deepcopy=False):
        if t.state.name in ("COMPLETE", "PRUNED"):
            epochs += len(t.user_attrs.get("val_accuracy_history") or [])
        if t.state.name == "COMPLETE":
            complete.append((float(t.values[0]), float(t.values[1])))
    params = [float(t.user_attrs["params"]) for t in study.get_trials(deepcopy=False) if "params" in t.user_attrs]
    pruned = sum(1 for t in study.get_trials(deepcopy=False) if "pruned_rung" in t.user_attrs)
    curves = [[float(t.user_attrs["params"]), list(t.user_attrs.get("val_accuracy_history") or [])]
              for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    return {"epochs": epochs, "complete": complete, "params": params, "pruned": pruned, "seconds": seconds,
            "curves": curves}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default="mgic_resnet56")
    parser.add_argument("--data", default="digits")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=8, help="epochs of a trial that is never pruned (R)")
    parser.add_argument("--batch-size", type=int, help="training batch (default: the study's, 32)")
    parser.add_argument("--min-epochs", type=int, default=1, help="MO-SHA first rung r (epochs)")
    parser.add_argument("--eta", type=int, default=3, help="MO-SHA reduction factor η (rungs at r, rη, rη², … epochs)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", help="keep the studies here (default: a temporary directory)")
    parser.add_argument("--verbose", action="store_true", help="print one line per trial")
    parser.add_argument("--write-results", action="store_true", help=f"replace its section of {RESULTS}")
    parser.add_argument("--save-curves", metavar="JSON", help="write the unpruned arm's learning curves "
                        "({seed: [[params, [accuracy per epoch]], ...]}) for replay_mosha.py")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    from mgnas.strategies.study import TRAIN_DEFAULTS
    args.batch_size = args.batch_size or TRAIN_DEFAULTS["batch_size"]

    import optuna
    import torch
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tmp = None if args.out else tempfile.TemporaryDirectory(prefix="bench_mosha_")
    root = Path(args.out or tmp.name)
    rows, totals, curves = [], {"none": [0, 0.0], "sha": [0, 0.0]}, {}
    load0 = os.getloadavg()[0]
    for seed in seeds:
        arms = {p: run_arm(p, seed, args, root) for p in ("none", "sha")}
        curves[seed] = arms["none"]["curves"]
        ref_params = 1.1 * max(max(a["params"], default=1.0) for a in arms.values())
        ref = (0.0, 1.0)
        hv = {}
        for p, a in arms.items():
            points = [(-acc, params / ref_params) for acc, params in a["complete"]]
            hv[p] = hypervolume_2d(points, (ref[0], ref[1]))
            totals[p][0] += a["epochs"]
            totals[p][1] += hv[p]
        ratio_e = arms["sha"]["epochs"] / max(1, arms["none"]["epochs"])
        ratio_hv = hv["sha"] / hv["none"] if hv["none"] > 0 else float("nan")
        rows.append(f"| {seed} | {arms['none']['epochs']} | {arms['sha']['epochs']} | {ratio_e:.2f} | "
                    f"{hv['none']:.4f} | {hv['sha']:.4f} | {ratio_hv:.3f} | {arms['sha']['pruned']} | "
                    f"{arms['none']['seconds']:.0f} / {arms['sha']['seconds']:.0f} |")
        print(rows[-1], flush=True)
    e_ratio = totals["sha"][0] / max(1, totals["none"][0])
    hv_ratio = totals["sha"][1] / totals["none"][1] if totals["none"][1] > 0 else float("nan")
    met = e_ratio <= 0.5 and hv_ratio >= 0.95
    command = "python experiments/benchmarks/bench_mosha.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        SECTION, "",
        f"Command: `{command.strip()}`. Space `{args.space}` on `{args.data}`, {args.trials} trials per study, "
        f"up to {args.epochs} epochs, batch {args.batch_size}, random sampler (same architectures "
        "in both arms), "
        f"objectives accuracy (validation) and params; MO-SHA r={args.min_epochs}, η={args.eta}. "
        f"torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, 1-min load "
        f"{load0:.2f} at start / {os.getloadavg()[0]:.2f} at end.",
        "",
        "Hypervolume of the completed trials' front, reference point accuracy 0 and params = 1.1 × the largest "
        "params count of the seed's trials (params divided by it, so the volume is in [0, 1]).",
        "",
        "| seed | epochs, no pruning | epochs, MO-SHA | ratio | HV, no pruning | HV, MO-SHA | HV ratio | "
        "pruned trials | seconds (none / sha) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        f"| all | {totals['none'][0]} | {totals['sha'][0]} | **{e_ratio:.2f}** | {totals['none'][1]:.4f} | "
        f"{totals['sha'][1]:.4f} | **{hv_ratio:.3f}** | | |",
        "",
        f"Goal: ≤ 0.50 of the epochs for ≥ 0.95 of the hypervolume: **{'met' if met else 'not met'}**.",
    ]
    print("\n".join(lines))
    if args.save_curves:
        Path(args.save_curves).write_text(json.dumps(curves))
    if args.write_results:
        update_results("\n".join(lines))
        print(f"wrote the section to {RESULTS}")
    if tmp is not None:
        tmp.cleanup()
    return 0


def update_results(section: str, path: Path = RESULTS) -> None:
    """Replace (or append) this benchmark's section of RESULTS.md, leaving the other sections alone."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    lines = text.splitlines()
    if SECTION in lines:
        start = lines.index(SECTION)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        lines[start:end] = section.rstrip("\n").splitlines() + [""]
    else:
        lines += ["", *section.rstrip("\n").splitlines()]
    path.write_text("\n".join(lines).rstrip("\n") + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
