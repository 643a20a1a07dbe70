"""``mgnas nni-nas``: search a group-count space with an NNI 3.0 strategy (experimental backend)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._base import EXIT_OK, Command, UsageError
from ._console import console as make_console
from ._console import table as make_table

_STRATEGIES = ("darts", "random-oneshot", "random")


def _positive(name: str, value: Any) -> None:
    if value is not None and value <= 0:
        raise UsageError(f"{name} must be > 0, got {value}")


def print_found(spec: Any, out: Path) -> None:

    console = make_console()
    prov = spec.provenance
    table = make_table(f"found by {prov['strategy']}: {prov['space']} on {prov['data']}")
    table.add_column("label", overflow="fold")
    table.add_column("choice", justify="right")
    for label, value in prov["choices"].items():
        table.add_row(label, str(value))
    console.print(table)
    console.print(f"{spec.metrics['params']:,} params, {spec.metrics['macs']:,} MACs; spec: {out / 'spec.json'} "
                  f"(NNI logs: {out / 'nni'})")


class NNINasCommand(Command):
    name = "nni-nas"
    help = "search a group-count space with NNI's DARTS / RandomOneShot / Random (experimental)"
    description = (
        "Experimental (NNI 3.0 is frozen since 2023; needs the nni extra). Exposes --space (a group-count space "
        "such as resnet20_groups) as an NNI ModelSpace, one LayerChoice over the allowed group counts per "
        "searchable conv, and runs an NNI strategy in this process: darts or random-oneshot (one supernet "
        "trained for --epochs; random-oneshot then scores sampled subnets on the validation split) or random "
        "(--trials networks, each trained --epochs). Writes spec.json (the found architecture, adapted to "
        "--data, provenance strategy=nni:<name>), nni_sample.json and NNI's logs (nni/) into --out."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--space", required=True, help="group-count space, e.g. resnet20_groups, wrn34_2_groups")
        parser.add_argument("--data", default="digits", help="digits (default) | synthetic[:HxW[:classes]] | "
                            "cifar10:PATH | cifar100:PATH | imagenet:PATH")
        parser.add_argument("--strategy", default="random-oneshot", choices=_STRATEGIES,
                            help="NNI strategy (default random-oneshot)")
        parser.add_argument("--epochs", type=int, default=1, help="supernet / per-trial training epochs (default 1)")
        parser.add_argument("--out", required=True, metavar="DIR", help="output directory (spec.json, nni/)")
        parser.add_argument("--trials", type=int, default=4, help="random: networks to train (default 4)")
        parser.add_argument("--oneshot-samples", type=int, default=8,
                            help="random-oneshot: subnets scored on the validation split (default 8)")
        parser.add_argument("--batch-size", type=int, default=64)
        parser.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default 3e-3)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--two-level", action="store_true",
                            help="spaces with a two-level switch: grouped candidates are two-level convs")
        parser.add_argument("--accelerator", default="cpu", help="Lightning accelerator (default cpu)")
        parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=False,
                            help="show Lightning's progress bars")

    def take_action(self, args: argparse.Namespace) -> int:
        import warnings

        from mgnas._rundir import check_dir, claimed
        from mgnas.strategies import ExperimentalWarning, NNIUnavailable, import_nni

        for name in ("epochs", "trials", "oneshot_samples", "batch_size", "lr"):
            _positive(f"--{name.replace('_', '-')}", getattr(args, name))
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise UsageError(f"--out {out} is a file, not a directory")
        if (out / "spec.json").exists():
            raise UsageError(f"{out} already holds a result (spec.json); choose another --out")
        check_dir(out, "nni-nas")  # another command's run is refused before any work
        try:
            import_nni(nas=True)
        except NNIUnavailable as err:
            raise UsageError(str(err)) from None
        from mgnas.strategies.nni_space import run_nni_nas

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)  # said in the note below, in one line
            with claimed(out, "nni-nas"):
                spec = run_nni_nas(args.space, args.data, args.strategy, epochs=args.epochs,
                                   batch_size=args.batch_size, lr=args.lr, trials=args.trials,
                                   oneshot_samples=args.oneshot_samples, two_level=args.two_level, out_dir=out,
                                   seed=args.seed, accelerator=args.accelerator, progress=args.progress)
        # after the run, so that an error stays the one line on stderr
        print("note: mgnas nni-nas is experimental (NNI 3.0 is frozen since 2023)")
        print_found(spec, out)
        return EXIT_OK
