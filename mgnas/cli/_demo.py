"""``mgnas demo``: the main job on the embedded data set, in minutes on a laptop.

1. A DGConv group search of ResNet-20 (``resnet20_groups``, supernet ``g_resnet20_cifar``) on scikit-learn's
   bundled 8x8 digits under the budget b=4 with the hinge penalty; writes the discovered spec and the report.
   The same run as a config file: ``experiments/configs/demo_digits.yaml``.
2. A short Optuna study over MGIC-ResNet-56's multigrid structure (s_g, s_c, levels, level rule) on the same
   data, accuracy vs params, into ``study/``: the Pareto front as specs, trials.csv, pareto.html.
3. ``index.html``: the headline numbers and a link to everything produced.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mgnas._rundir import read_marker

from ._base import EXIT_OK, Command, UsageError
from ._search import RUN_FILES, run_and_summarise

#: The demo's settings (mirrored by experiments/configs/demo_digits.yaml; a test keeps them equal).
DEMO_OVERRIDES = {
    "space": "resnet20_groups", "data": "digits", "budget": "b=4", "penalty": "hinge",
    "train.epochs": 8, "train.lr": 0.1, "train.batch_size": 64, "train.weight_decay": 5e-4, "train.seed": 0,
}
#: The demo study (random sampling: too few trials for TPE's model to start; 3 epochs reach 65-90% accuracy).
DEMO_STUDY = {"space": "mgic_resnet56", "data": "digits", "sampler": "random", "study_name": "demo",
              "objectives": ["accuracy", "params"], "pruner": "none", "train.epochs": 3}
DEMO_STUDY_TRIALS = 6


def _free_dir(base: Path) -> Path:
    """``base`` if it holds no run (no run files, no ``.mgnas-run.json``), else ``base-2``, ``base-3``, ...
    (a demo never overwrites a run, nor a file)."""
    candidate, n = base, 1
    while candidate.exists() and (not candidate.is_dir() or read_marker(candidate) is not None
                                  or any((candidate / f).exists() for f in RUN_FILES)):
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


class DemoCommand(Command):
    name = "demo"
    help = "the main job on the embedded digits data: DGConv search, MGIC study, index.html (minutes on a CPU)"
    description = (
        "Search the groups of every 3x3 conv of ResNet-20 on scikit-learn's 8x8 digits under the budget b=4 "
        "(hinge penalty), freeze the result into a grouped network and write spec.json, result.json and "
        "report.html (equivalent to `mgnas search --config experiments/configs/demo_digits.yaml --out DIR`). "
        "Then run a short Optuna study over MGIC-ResNet-56's multigrid structure on the same data into DIR/study "
        "(Pareto front of accuracy vs params) and write DIR/index.html linking everything."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--out", default="mgnas-demo", metavar="DIR",
                            help="output directory (default mgnas-demo; taken: mgnas-demo-2, ...)")
        parser.add_argument("--epochs", type=int, help=f"default {DEMO_OVERRIDES['train.epochs']}")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--study-trials", type=int, default=DEMO_STUDY_TRIALS, metavar="N",
                            help=f"trials of the MGIC study (default {DEMO_STUDY_TRIALS}; 0 skips the study)")
        parser.add_argument("--study-epochs", type=int, metavar="N", dest="epochs_per_trial",
                            help=f"training epochs of each study trial (default {DEMO_STUDY['train.epochs']})")
        parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                            help="progress bars on a terminal, one line per epoch elsewhere (on stderr)")

    def take_action(self, args: argparse.Namespace) -> int:
        from mgnas.config import load_config
        from mgnas.strategies.differentiable import SearchConfig
        from mgnas.viz import write_index

        if args.study_trials < 0:
            raise UsageError(f"--study-trials must be >= 0, got {args.study_trials}")
        overrides = dict(DEMO_OVERRIDES, **{"train.seed": args.seed})
        if args.epochs is not None:
            overrides["train.epochs"] = args.epochs
        config = load_config(SearchConfig, None, overrides)
        out = _free_dir(Path(args.out))
        print(f"mgnas demo: DGConv search of {config.space} on {config.data}, budget {config.budget}, "
              f"{config.train.epochs} epochs -> {out}")
        run_and_summarise(config, out, resume=False, progress=args.progress, kind="demo")
        if args.study_trials:
            _study(out / "study", args.study_trials, args.seed, args.epochs_per_trial)
        print(f"index of everything produced: {write_index(out, title='mgnas demo')}")
        print("next: the real jobs (a DGConv search on ImageNet, studies on many GPUs, retrain and export) are in "
              "docs/guide.md")
        return EXIT_OK


def _study(out: Path, trials: int, seed: int, epochs: int | None = None) -> None:
    from mgnas.config import load_config
    from mgnas.strategies import export_pareto
    from mgnas.strategies.optuna_study import StudyConfig, run_study, study_overrides

    from ._study import print_export

    settings = dict(DEMO_STUDY, trials=trials, seed=seed)
    if epochs is not None:
        settings["train.epochs"] = epochs
    config = load_config(StudyConfig, None, study_overrides(None, settings))
    print(f"mgnas demo: {trials}-trial Optuna study of {config.space} on {config.data} "
          f"({', '.join(config.objectives)}; {config.train.epochs} epochs a trial) -> {out}")
    study = run_study(config, out)
    print_export(export_pareto(study, out, png=False), out)
