"""``mgnas search``: a differentiable DGConv group search under a complexity budget (Zhang et al. §3.3)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from ._base import EXIT_OK, Command, UsageError, add_training_flags, parse_kwargs

#: Files that mark a directory as holding a run (never overwritten without --resume).
RUN_FILES = ("checkpoint.pt", "result.json", "history.jsonl", "spec.json", "config.yaml")

# CLI flag -> dotted SearchConfig key (flags left at None do not override the YAML file)
_FLAGS = {
    "space": "space", "data": "data", "budget": "budget", "penalty": "penalty", "gate_lr": "gate_lr",
    "gate_warmup_epochs": "gate_warmup_epochs", "lambda_lr": "lambda_lr", "image_size": "image_size",
    "epochs": "train.epochs", "lr": "train.lr", "batch_size": "train.batch_size", "seed": "train.seed",
    "weight_decay": "train.weight_decay", "optimizer": "train.optimizer", "workers": "train.workers",
    "amp": "train.amp",
}


def add_search_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--space", help="search space with a DGConv supernet, e.g. resnet20_groups, resnext50_groups")
    parser.add_argument("--data", help="digits | digits:16 | synthetic[:HxW[:classes]] | cifar10:PATH | "
                        "cifar100:PATH | imagenet:PATH")
    parser.add_argument("--budget", help="b=B (o = Σ C_in·C_out / B, the paper's), params=N or macs=N (default b=32)")
    parser.add_argument("--penalty", choices=("hinge", "paper"),
                        help="hinge (default: ends within budget) or paper (CE·(o/ζ)^α, faithful)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory (spec.json, result.json, ...)")
    parser.add_argument("--resume", action="store_true", help="continue the run in DIR from its last checkpoint")
    parser.add_argument("--config", metavar="YAML", help="search config file; command-line flags override it")
    parser.add_argument("--gate-lr", type=float, help="learning rate of the DGConv gates (default: --lr)")
    parser.add_argument("--gate-warmup-epochs", type=int, help="keep the gates frozen for this many epochs")
    parser.add_argument("--lambda-lr", type=float, help="hinge penalty: dual-ascent step of λ per training step")
    add_training_flags(parser, image_size_help="imagenet: training crop size (default 224)",
                       set_help="any config key, dotted for training keys, e.g. --set train.label_smoothing=0.1")


def resolve_config(args: argparse.Namespace) -> Any:
    """YAML file (``--config``), then ``--set`` pairs, then the explicit flags (the command line wins)."""
    from mgnas.config import load_config
    from mgnas.strategies.differentiable import SearchConfig

    overrides: dict[str, Any] = dict(parse_kwargs(args.sets))
    for flag, key in _FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            overrides[key] = value
    if getattr(args, "download", False):
        overrides["download"] = True
    if args.config is not None and not Path(args.config).is_file():
        raise UsageError(f"config file {args.config!r} does not exist")
    return load_config(SearchConfig, args.config, overrides)


def check_out_dir(out: Path, resume: bool) -> None:
    """Refuse to touch a directory holding a run unless resuming; refuse to resume nothing."""
    held = [name for name in RUN_FILES if (out / name).exists()] if out.is_dir() else []
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a directory")
    if held and not resume:
        raise UsageError(f"{out} already holds a run ({held[0]}); pass --resume to continue it or choose another --out")
    if resume and not (out / "checkpoint.pt").is_file():
        raise UsageError(f"cannot resume: {out / 'checkpoint.pt'} does not exist")


def run_and_summarise(config: Any, out: Path, *, resume: bool, progress: bool) -> Any:
    from mgnas.config import dump_config
    from mgnas.strategies.differentiable import DifferentiableSearch

    search = DifferentiableSearch(config, out, progress=progress)  # all checks (space, data, budget) happen here
    main = int(os.environ.get("RANK", "0")) == 0
    if main and not resume:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(dump_config(config))
    result = search.run(resume=resume)
    if main:
        print_summary(result, config)
    return result


def print_summary(result: Any, config: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    r = result.result
    console = Console()
    table = Table(title=f"discovered groups: {config.space} on {config.data}, {config.budget}, {config.penalty}")
    table.add_column("layer", overflow="fold")
    table.add_column("C_in→C_out", justify="right")
    table.add_column("groups", justify="right")
    for layer, g in zip(r["layers"], r["groups"]):
        table.add_row(layer["path"], f"{layer['in_channels']}→{layer['out_channels']}", str(g))
    console.print(table)
    acc = r["accuracy"]
    status = "[green]within budget[/]" if r["within_budget"] else "[red]over budget[/]"
    proj = f" (projected: {r['projection_flips']} gate(s) set to 0)" if r["projected"] else ""
    console.print(
        f"accuracy {100 * acc:.2f}% ({'test' if r['test_accuracy'] is not None else 'val'}), "
        f"ζ/o = {r['zeta_over_o']:.3f} {status}{proj}; ζ = {r['complexity']:,.0f}, o = {r['budget']:,.0f}; "
        f"{r['params']:,} params, {r['macs']:,} MACs; {r['seconds']:.1f} s")
    if result.out_dir is not None:
        names = ("spec.json", "result.json", "report.html", "history.jsonl", "checkpoint.pt", "config.yaml")
        console.print("outputs: " + ", ".join(str(result.out_dir / n) for n in names if (result.out_dir / n).exists()))


class SearchCommand(Command):
    name = "search"
    help = "differentiable DGConv group search under a complexity budget"
    description = (
        "Train a DGConv supernet of --space on --data with gates and weights jointly, under a complexity "
        "budget (--budget b=32 | params=N | macs=N), then freeze it into a plain grouped network. Writes "
        "spec.json, result.json, history.jsonl, checkpoint.pt, config.yaml and report.html into --out."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_search_arguments(parser)

    def take_action(self, args: argparse.Namespace) -> int:
        config = resolve_config(args)
        out = Path(args.out)
        check_out_dir(out, args.resume)
        run_and_summarise(config, out, resume=args.resume, progress=not args.no_progress)
        return EXIT_OK
