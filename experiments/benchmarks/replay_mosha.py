"""Replay recorded learning curves through MO-SHA promotion rules (how issue 10's rule was chosen).

    python experiments/benchmarks/bench_mosha.py --space resnet20_groups --trials 12 --epochs 8 \\
        --seeds 0,1,2,3,4,5 --save-curves curves.json            # records the unpruned arm's curves
    python experiments/benchmarks/replay_mosha.py curves.json [--eta 3] [--min-epochs 1]

Every trial of the unpruned arm trained to the last epoch, so its whole validation-accuracy curve is known; a
rule is replayed on those curves with the trials arriving one after the other (as ``--jobs 1`` runs them). The
rules differ only in how many of the n results at a rung continue once n >= η: ⌊n/η⌋ (the first version),
⌊n/η⌋ + 1 (syne-tune's MO-ASHA, rank position p/n <= 1/η) and ⌈n/η⌉ (mgnas now). The decision is mgnas's
:func:`promotable` with its ``keep`` argument set to the rule; with fewer than η results a trial continues only
if none dominates it.
Epochs and hypervolume are reported as fractions of the unpruned arm's, as ``bench_mosha.py`` does.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_mosha import hypervolume_2d  # noqa: E402
from mgnas.strategies.study._pruning import MOSuccessiveHalving, promotable  # noqa: E402

DIRECTIONS = ("maximize", "minimize")  # accuracy, params
RULES: dict[str, Callable[[int, int], int]] = {
    "top floor(n/eta) (first version)": lambda n, eta: n // eta,
    "top floor(n/eta)+1 (syne-tune MO-ASHA)": lambda n, eta: n // eta + 1,
    "top ceil(n/eta) (mgnas)": lambda n, eta: math.ceil(n / eta),
}


def replay(curves: list[tuple[float, list[float]]], keep: Callable[[int, int], int], eta: int,
           min_epochs: int) -> tuple[int, list[tuple[float, float]]]:
    """(epochs trained, completed (accuracy, params)) when ``curves`` [(params, accuracies per epoch)] arrive in
    order and a trial continues past a rung only while :func:`promotable` with the rule's ``keep`` says so."""
    max_epochs = max(len(h) for _, h in curves)
    rungs = MOSuccessiveHalving(DIRECTIONS, max_epochs, min_epochs, eta).rung_epochs()
    recorded: dict[int, list[tuple[float, float]]] = {e: [] for e in rungs}
    epochs, complete = 0, []
    for params, history in curves:
        for epoch in range(1, len(history) + 1):
            epochs += 1
            if epoch not in recorded:
                continue
            points = recorded[epoch]
            points.append((history[epoch - 1], params))
            if not promotable(points, len(points) - 1, DIRECTIONS, eta, keep):
                break
        else:
            complete.append((history[-1], params))
    return epochs, complete


def volume(points: list[tuple[float, float]], ref_params: float) -> float:
    return hypervolume_2d([(-acc, params / ref_params) for acc, params in points], (0.0, 1.0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("curves", help="JSON written by bench_mosha.py --save-curves")
    parser.add_argument("--eta", type=int, default=3)
    parser.add_argument("--min-epochs", type=int, default=1)
    args = parser.parse_args(argv)
    data = json.loads(Path(args.curves).read_text())
    print(f"| rule (eta={args.eta}, r={args.min_epochs}) | epochs | hypervolume | per seed (epochs / HV) |")
    print("|---|---:|---:|---|")
    for name, keep in RULES.items():
        done = full = got = best = 0.0
        per_seed = []
        for seed, curves in data.items():
            ref = 1.1 * max(p for p, _ in curves)
            epochs, complete = replay(curves, keep, args.eta, args.min_epochs)
            all_epochs = sum(len(h) for _, h in curves)
            hv_all, hv = volume([(h[-1], p) for p, h in curves], ref), volume(complete, ref)
            done, full, got, best = done + epochs, full + all_epochs, got + hv, best + hv_all
            per_seed.append(f"{seed}: {epochs / all_epochs:.2f} / {hv / hv_all:.3f}")
        print(f"| {name} | {done / full:.2f} | {got / best:.3f} | {', '.join(per_seed)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
