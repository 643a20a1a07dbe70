"""``mgnas study`` (Optuna multi-objective study over a space, many workers) and ``mgnas pareto`` (its front)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._base import EXIT_OK, Command, UsageError, check_input_file, parse_kwargs
from ._console import console as make_console
from ._console import table as make_table

# CLI flag -> dotted StudyConfig key (flags left at None do not override the YAML file)

_FLAGS = {
    "space": "space", "data": "data", "trials": "trials", "storage": "storage", "study_name": "study_name",
    "sampler": "sampler", "max_params": "max_params", "pruner": "pruner", "epochs_per_trial": "train.epochs",
    "seed": "seed", "lr": "train.lr", "batch_size": "train.batch_size", "trial": "trial_kind", "device": "device",
}


def resolve_study_config(args: argparse.Namespace) -> Any:
    from mgnas.config import load_config
    from mgnas.strategies.optuna_study import StudyConfig, study_overrides

    overrides: dict[str, Any] = dict(parse_kwargs(args.sets, "--set"))
    for flag, key in _FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            overrides[key] = value
    if args.budgets is not None:
        overrides["budgets"] = [b.strip() for b in args.budgets.split(",") if b.strip()]
    if args.objectives is not None:
        overrides["objectives"] = [o.strip() for o in args.objectives.split(",") if o.strip()]
    if args.config is not None:
        check_input_file(args.config, "config file")
    return load_config(StudyConfig, args.config, study_overrides(args.config, overrides))


def study_identity(name: str, storage: str | None, out: Path) -> dict[str, Any]:
    """What a study's run marker records: its name and storage (the default storage lives in ``out``)."""
    return {"study_name": name, "storage": storage or f"sqlite:///{out.resolve() / 'study.db'}"}


def print_export(result: dict[str, Any], out: Path) -> None:

    console = make_console()
    front = result["front"]
    table = make_table(f"Pareto front ({len(front.front)} of {len(front.numbers)} completed trials)")
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

    from mgnas.strategies import ExperimentalWarning, NNIUnavailable, import_nni
    from mgnas.strategies.nni_hpo import run_nni_study

    for flag, value in (("--sampler", args.sampler), ("--pruner", args.pruner), ("--jobs", args.jobs),
                        ("--devices", args.devices)):
        if value is not None:
            raise UsageError(f"{flag} is for the optuna backend; with --backend nni use --nni-tuner")
    try:
        import_nni()
    except NNIUnavailable as err:
        raise UsageError(str(err)) from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # said in the note below, in one line
        port = 8080 if args.nni_port is None else args.nni_port
        study = run_nni_study(config, out, tuner=args.nni_tuner or "tpe", port=port)
    # after the run, so that an error stays the one line on stderr
    print("note: --backend nni is experimental (NNI 3.0 is frozen since 2023) and single-objective: its tuner "
          "maximises validation accuracy; params/MACs are recorded for the Pareto front")
    return study


def run_local(config: Any, out: Path, args: argparse.Namespace) -> Any:
    """The optuna backend: this process (``--jobs 1``) or ``--jobs N`` local worker processes."""
    import dataclasses

    from mgnas.strategies.study import parse_devices, parse_jobs, plan_workers, run_study, run_workers

    try:
        jobs, devices = parse_jobs(args.jobs), parse_devices(args.devices)
        plans = plan_workers(jobs, devices=devices, per_device=args.per_device, device=config.device,
                             loader_workers=config.train.workers)
        if devices is None and config.device not in (None, "auto"):
            from mgnas.runtime import resolve_device

            resolve_device(config.device)  # an unknown device is refused before the storage is created
    except ValueError as err:
        raise UsageError(str(err)) from None
    if len(plans) == 1:  # one worker: this process, on the planned device (its threads are set by mgnas.cli)
        device = plans[0].device if (devices or config.device not in (None, "auto")) else config.device
        return run_study(dataclasses.replace(config, device=device), out, progress=args.progress)
    return run_workers(config, out, plans, progress=args.progress)


class StudyCommand(Command):
    name = "study"
    help = "Optuna multi-objective study (accuracy vs params/MACs) over a search space, many workers"
    description = (
        "Each trial suggests an architecture from --space, trains it for --epochs-per-trial epochs on --data and "
        "records validation accuracy, params and MACs. Run the same command in several processes or machines "
        "on one --storage to split the work until the study holds --trials finished trials; re-run to resume. "
        "--jobs N starts N local worker processes (cores/N threads each; on GPUs worker i uses "
        "--devices[i // --per-device]) with one progress line; Ctrl-C stops them all. "
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
        parser.add_argument("--pruner", help="median (default) | sha | hyperband | none; multi-objective studies: "
                            "sha | hyperband (non-dominated rank on epoch rungs)")
        parser.add_argument("--trial", choices=("train", "search"),
                            help="train (default): train each suggested architecture | search: a DGConv search "
                            "over the suggested structure's supernet under a suggested --budgets budget")
        parser.add_argument("--budgets", metavar="B,...", help="--trial search: budgets Optuna chooses from, "
                            "e.g. b=16,b=32,b=64")
        parser.add_argument("--config", metavar="YAML", help="study config file; command-line flags override it")
        parser.add_argument("--seed", type=int)
        parser.add_argument("--lr", type=float)
        parser.add_argument("--batch-size", type=int)
        parser.add_argument("--set", action="append", metavar="KEY=VALUE", dest="sets",
                            help="any config key, e.g. --set fixed.level_rule=paper --set train.lr=0.05")
        parser.add_argument("--jobs", metavar="N|auto", help="local worker processes on the storage (default 1); "
                            "auto: one per core on CPU, --per-device per GPU on GPUs; each gets cores/N threads")
        parser.add_argument("--devices", metavar="0,1,...", help="GPUs for the workers: worker i trains on "
                            "cuda:DEVICES[i // per-device] (default: every visible GPU when --device is auto/cuda)")
        parser.add_argument("--per-device", type=int, default=1, metavar="K",
                            help="workers sharing one GPU (default 1)")
        parser.add_argument("--device", help="auto (default: cuda if available) | cpu | cuda | cuda:N")
        parser.add_argument("--no-plots", action="store_true", help="do not write the Pareto outputs at the end")
        parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=False,
                            help="per-epoch progress bars of the trials (on stderr)")
        nni = parser.add_argument_group("NNI backend (experimental)")
        nni.add_argument("--backend", choices=("optuna", "nni"), default="optuna",
                         help="optuna (default): multi-objective, many workers | nni: a local NNI experiment, "
                         "single-objective (validation accuracy), params/MACs recorded for the front")
        nni.add_argument("--nni-tuner", choices=("tpe", "evolution", "random"),
                         help="NNI tuner for --backend nni (default tpe; evolution is not seedable)")
        nni.add_argument("--nni-port", type=int, metavar="PORT",
                         help="NNI web UI / manager port (default 8080); NNI listens on ALL interfaces")

    def take_action(self, args: argparse.Namespace) -> int:
        from mgnas._atomic import write_text_atomic
        from mgnas._rundir import check_dir, claimed
        from mgnas.config import dump_config
        from mgnas.strategies import export_pareto

        config = resolve_study_config(args)
        out = Path(args.out)
        identity = study_identity(config.name, config.storage, out)
        check_dir(out, "study", identity=identity)  # before any work: another run's directory is refused
        with claimed(out, "study", identity=identity):
            if args.backend == "nni":
                study = run_nni_backend(config, out, args)
            else:
                for flag, value in (("--nni-tuner", args.nni_tuner), ("--nni-port", args.nni_port)):
                    if value is not None:
                        raise UsageError(f"{flag} needs --backend nni")
                study = run_local(config, out, args)
            write_text_atomic(dump_config(config), out / "config.yaml")
        counts: dict[str, int] = {}
        for t in study.get_trials(deepcopy=False):
            counts[t.state.name] = counts.get(t.state.name, 0) + 1
        print(f"study {config.name!r}: " + ", ".join(f"{v} {k.lower()}" for k, v in sorted(counts.items())))
        if not counts.get("COMPLETE"):  # not a success: there is no front to show or export
            raise UsageError(f"study {config.name!r} has no completed trial, so no Pareto front; see the trials' "
                             f"states above and {out}")
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
        parser.add_argument("--study-name", help="default: the storage's only study (`mgnas study` names it "
                            "<space>-<data> unless given --study-name)")
        parser.add_argument("--out", required=True, metavar="DIR", help="output directory (front/, trials.csv, "
                            "pareto.html)")
        parser.add_argument("--no-png", action="store_true", help="do not try to write PNGs")

    def take_action(self, args: argparse.Namespace) -> int:
        import optuna

        from mgnas.strategies import export_pareto
        from mgnas.strategies.optuna_study import open_storage

        for scheme in ("sqlite:///", "journal:"):
            if args.storage.startswith(scheme):
                check_input_file(args.storage[len(scheme):], f"storage {args.storage!r}: the file")
        storage = open_storage(args.storage)
        if args.study_name is None:  # as `mgnas study`: one study per storage needs no name
            names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
            if len(names) != 1:
                raise UsageError(f"{args.storage} holds {len(names)} studies ({', '.join(names) or 'none'}); "
                                 "pass --study-name NAME")
            args.study_name = names[0]
        try:
            study = optuna.load_study(study_name=args.study_name, storage=storage)
        except KeyError:
            names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
            raise UsageError(f"no study named {args.study_name!r} in {args.storage}; studies: "
                             f"{', '.join(names) or '(none)'}") from None
        if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            raise UsageError(f"study {args.study_name!r} in {args.storage} has no completed trials: there is no "
                             "Pareto front to export (run `mgnas study` first)")
        from mgnas._rundir import claimed

        out = Path(args.out)
        with claimed(out, "pareto", identity=study_identity(args.study_name, args.storage, out)):
            from mgnas.strategies.study import study_artifact_store  # the specs: artifacts beside the storage

            result = export_pareto(study, out, png=not args.no_png, artifacts=study_artifact_store(study, args.storage))
        print_export(result, out)
        return EXIT_OK
