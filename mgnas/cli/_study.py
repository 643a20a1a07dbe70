"""``mgnas study`` (Optuna multi-objective study over a space, many workers) and ``mgnas pareto`` (its front)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._base import EXIT_OK, Command, UsageError, parse_kwargs

# CLI flag -> dotted StudyConfig key (flags left at None do not override the YAML file)
_FLAGS = {
    "space": "space", "data": "data", "trials": "trials", "storage": "storage", "study_name": "study_name",
    "sampler": "sampler", "max_params": "max_params", "pruner": "pruner", "epochs_per_trial": "train.epochs",
    "seed": "seed", "lr": "train.lr", "batch_size": "train.batch_size",
}


def resolve_study_config(args: argparse.Namespace) -> Any:
    from mgnas.config import load_config
    from mgnas.strategies.optuna_study import StudyConfig, study_overrides

    overrides: dict[str, Any] = dict(parse_kwargs(args.sets))
    for flag, key in _FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            overrides[key] = value
    if args.objectives is not None:
        overrides["objectives"] = [o.strip() for o in args.objectives.split(",") if o.strip()]
    if args.config is not None and not Path(args.config).is_file():
        raise UsageError(f"config file {args.config!r} does not exist")
    return load_config(StudyConfig, args.config, study_overrides(args.config, overrides))


def print_export(result: dict[str, Any], out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    front = result["front"]
    table = Table(title=f"Pareto front ({len(front.front)} of {len(front.numbers)} completed trials)")
    table.add_column("trial", justify="right")
    for name in front.objectives:
        table.add_column(name, justify="right")
    for n in front.front:
        vals = front.values[front.numbers.index(n)]
        table.add_row(str(n), *(f"{v:.4f}" if o == "accuracy" else f"{v:,.0f}" for o, v in zip(front.objectives, vals)))
    console.print(table)
    png = result["png_note"] or (f"; {len(result['png'])} PNG(s)" if result["png"] else "")
    png = f"; {png}" if result["png_note"] else png
    console.print(f"outputs: {out / 'front'}/ ({len(result['specs'])} specs), {out / 'trials.csv'}, "
                  f"{result['html'] or 'no HTML'}{png}")


def run_nni_backend(config: Any, out: Path, args: argparse.Namespace) -> Any:
    """``--backend nni``: check the flags NNI cannot honour, run the NNI experiment, return the Optuna study."""
    import warnings

    from mgnas.strategies._experimental import ExperimentalWarning
    from mgnas.strategies._nni_common import NNIUnavailable, import_nni
    from mgnas.strategies.nni_hpo import run_nni_study

    for flag, value in (("--sampler", args.sampler), ("--pruner", args.pruner)):
        if value is not None:
            raise UsageError(f"{flag} is for the optuna backend; with --backend nni use --nni-tuner")
    try:
        import_nni()
    except NNIUnavailable as err:
        raise UsageError(str(err)) from None
    print("note: --backend nni is experimental (NNI 3.0 is frozen since 2023) and single-objective: its tuner "
          "maximises validation accuracy; params/MACs are recorded for the Pareto front")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # said in the note above, in one line
        port = 8080 if args.nni_port is None else args.nni_port
        return run_nni_study(config, out, tuner=args.nni_tuner or "tpe", port=port)


class StudyCommand(Command):
    name = "study"
    help = "Optuna multi-objective study (accuracy vs params/MACs) over a search space, many workers"
    description = (
        "Each trial suggests an architecture from --space, trains it for --epochs-per-trial epochs on --data and "
        "records validation accuracy, params and MACs. Run the same command in several processes or machines "
        "on one --storage to split the work until the study holds --trials finished trials; re-run to resume. "
        "Writes the Pareto front (specs, trials.csv, pareto.html) into --out at the end. "
        "--backend nni (experimental, needs the nni extra) runs the trials as a local NNI experiment instead: "
        "one process, an NNI tuner (--nni-tuner) that maximises validation accuracy only (params/MACs are "
        "recorded and the front is computed as usual), NNI's web UI on http://127.0.0.1:PORT while it runs "
        "(NNI listens on all network interfaces: use a trusted network or firewall the port); the trials are "
        "imported into --storage, so mgnas pareto works on them unchanged."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--space", help="search space, e.g. mgic_resnet56, mgiad_cifar (list: mgnas spaces)")
        parser.add_argument("--data", help="digits | synthetic[:HxW[:classes]] | cifar10:PATH | cifar100:PATH")
        parser.add_argument("--trials", type=int, help="finished trials the study should hold (all workers together)")
        parser.add_argument("--out", required=True, metavar="DIR", help="output directory (study.db by default)")
        parser.add_argument("--storage", help="sqlite:///FILE | journal:PATH | postgresql://... "
                            "(default sqlite:///DIR/study.db)")
        parser.add_argument("--study-name", help="default: <space>-<data>")
        parser.add_argument("--sampler", help="tpe (default) | nsga2 | random | grid")
        parser.add_argument("--objectives", help="accuracy,params (default) | accuracy,params,macs | accuracy | ...")
        parser.add_argument("--max-params", type=int, help="constraint: trials above it are infeasible")
        parser.add_argument("--epochs-per-trial", type=int)
        parser.add_argument("--pruner", help="median (default) | hyperband | none (single-objective studies only)")
        parser.add_argument("--config", metavar="YAML", help="study config file; command-line flags override it")
        parser.add_argument("--seed", type=int)
        parser.add_argument("--lr", type=float)
        parser.add_argument("--batch-size", type=int)
        parser.add_argument("--set", action="append", metavar="KEY=VALUE", dest="sets",
                            help="any config key, e.g. --set fixed.level_rule=paper --set train.lr=0.05")
        parser.add_argument("--no-plots", action="store_true", help="do not write the Pareto outputs at the end")
        parser.add_argument("--progress", action="store_true", help="per-epoch progress bars")
        nni = parser.add_argument_group("NNI backend (experimental)")
        nni.add_argument("--backend", choices=("optuna", "nni"), default="optuna",
                         help="optuna (default): multi-objective, many workers | nni: a local NNI experiment, "
                         "single-objective (validation accuracy), params/MACs recorded for the front")
        nni.add_argument("--nni-tuner", choices=("tpe", "evolution", "random"),
                         help="NNI tuner for --backend nni (default tpe; evolution is not seedable)")
        nni.add_argument("--nni-port", type=int, metavar="PORT",
                         help="NNI web UI / manager port (default 8080); NNI listens on ALL interfaces")

    def take_action(self, args: argparse.Namespace) -> int:
        from mgnas.config import dump_config
        from mgnas.strategies._pareto import export_pareto
        from mgnas.strategies.optuna_study import run_study

        config = resolve_study_config(args)
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise UsageError(f"--out {out} is a file, not a directory")
        if args.backend == "nni":
            study = run_nni_backend(config, out, args)
        else:
            for flag, value in (("--nni-tuner", args.nni_tuner), ("--nni-port", args.nni_port)):
                if value is not None:
                    raise UsageError(f"{flag} needs --backend nni")
            study = run_study(config, out, progress=args.progress)
        (out / "config.yaml").write_text(dump_config(config))
        counts: dict[str, int] = {}
        for t in study.get_trials(deepcopy=False):
            counts[t.state.name] = counts.get(t.state.name, 0) + 1
        print(f"study {config.name!r}: " + ", ".join(f"{v} {k.lower()}" for k, v in sorted(counts.items())))
        if not args.no_plots:
            print_export(export_pareto(study, out), out)
        return EXIT_OK


class ParetoCommand(Command):
    name = "pareto"
    help = "export a study's Pareto front: specs, trials.csv, plots"
    description = ("Write the non-dominated trials of a study as rebuildable spec files (metrics filled in), "
                   "trials.csv and pareto.html (PNG too when kaleido and a Chromium are available).")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--storage", required=True, help="sqlite:///FILE | journal:PATH | postgresql://...")
        parser.add_argument("--study-name", required=True)
        parser.add_argument("--out", required=True, metavar="DIR")
        parser.add_argument("--no-png", action="store_true", help="do not try to write PNGs")

    def take_action(self, args: argparse.Namespace) -> int:
        import optuna

        from mgnas.strategies._pareto import export_pareto
        from mgnas.strategies.optuna_study import open_storage

        if args.storage.startswith("sqlite:///") and not Path(args.storage[len("sqlite:///"):]).is_file():
            raise UsageError(f"storage {args.storage!r}: the file does not exist")
        if args.storage.startswith("journal:") and not Path(args.storage[len("journal:"):]).is_file():
            raise UsageError(f"storage {args.storage!r}: the file does not exist")
        storage = open_storage(args.storage)
        try:
            study = optuna.load_study(study_name=args.study_name, storage=storage)
        except KeyError:
            names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
            raise UsageError(f"no study named {args.study_name!r} in {args.storage}; studies: "
                             f"{', '.join(names) or '(none)'}") from None
        out = Path(args.out)
        print_export(export_pareto(study, out, png=not args.no_png), out)
        return EXIT_OK
