"""``mgnas search``: a differentiable DGConv group search under a complexity budget (Zhang et al. §3.3)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from mgnas._rundir import RUN_FILES  # noqa: F401  (files that mark a run directory; re-exported for the CLI)

from ._base import EXIT_OK, Command, UsageError, add_training_flags, check_input_file, parse_kwargs
from ._console import console as make_console
from ._console import table as make_table

DEVICE_HELP = ("auto (default: cuda if available, else cpu) | cpu | cuda | cuda:N; under torchrun each process "
               "uses cuda:LOCAL_RANK")


def add_device_flag(parser: argparse.ArgumentParser) -> None:
    """``--device DEV`` (shared by ``mgnas search`` and ``mgnas train``)."""
    parser.add_argument("--device", metavar="DEV", help=DEVICE_HELP)


def check_device(device: str | None) -> Any:
    """The torch.device ``--device`` names (None: auto); an unknown or unavailable one is a UsageError."""
    from mgnas.train.distributed import resolve_device

    try:
        return resolve_device(device)
    except ValueError as err:
        raise UsageError(f"--device: {err}") from None


# CLI flag -> dotted SearchConfig key (flags left at None do not override the YAML file)
_FLAGS = {
    "space": "space", "data": "data", "budget": "budget", "penalty": "penalty", "gate_lr": "gate_lr",
    "gate_warmup_epochs": "gate_warmup_epochs", "lambda_lr": "lambda_lr", "image_size": "image_size",
    "epochs": "train.epochs", "lr": "train.lr", "batch_size": "train.batch_size", "seed": "train.seed",
    "weight_decay": "train.weight_decay", "optimizer": "train.optimizer", "workers": "train.workers",
    "amp": "train.amp", "dgconv_impl": "dgconv_impl", "device": "device",
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
    parser.add_argument("--dgconv-impl", choices=("sparse", "masked"),
                        help="how the DGConvs compute: sparse (default: grouped convs only, exact) or masked "
                        "(the paper's dense W ⊙ U, the reference)")
    add_device_flag(parser)
    add_training_flags(parser, image_size_help="imagenet: training crop size (default 224)",
                       set_help="any config key, dotted for training keys, e.g. --set train.label_smoothing=0.1")


def resolve_config(args: argparse.Namespace) -> Any:
    """YAML file (``--config``), then ``--set`` pairs, then the explicit flags (the command line wins)."""
    from mgnas.config import load_config
    from mgnas.strategies.differentiable import SearchConfig

    overrides: dict[str, Any] = dict(parse_kwargs(args.sets, "--set"))
    for flag, key in _FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            overrides[key] = value
    if getattr(args, "download", False):
        overrides["download"] = True
    if args.config is not None:
        check_input_file(args.config, "config file")
    return load_config(SearchConfig, args.config, overrides)


def check_out_dir(out: Path, resume: bool, kind: str = "search") -> None:
    """Refuse a directory that holds another run (``mgnas._rundir``: one rule for every command), or a run of
    this kind without ``--resume``. ``--resume`` on a run killed before its first checkpoint starts it anew."""
    from mgnas._rundir import check_dir

    check_dir(out, kind, resume=resume)


def run_and_summarise(config: Any, out: Path, *, resume: bool, progress: bool, kind: str = "search") -> Any:
    import contextlib

    from mgnas._atomic import write_text_atomic
    from mgnas._rundir import claimed, sweep_all_temps
    from mgnas.config import dump_config
    from mgnas.strategies.differentiable import DifferentiableSearch

    search = DifferentiableSearch(config, out, progress=progress)  # all checks (space, data, budget) happen here
    main = int(os.environ.get("RANK", "0")) == 0
    with claimed(out, kind, resume=resume) if main else contextlib.nullcontext(out):
        fresh = not (out / "checkpoint.pt").is_file()  # a run killed before its first checkpoint restarts
        if main:
            sweep_all_temps(out)  # leftovers of a killed run (this directory is ours alone)
            if resume and fresh:
                print(f"no checkpoint in {out} yet: starting the run from the beginning")
            if fresh:
                write_text_atomic(dump_config(config), out / "config.yaml")
        result = search.run(resume=resume and not fresh)
    if main:
        print_summary(result, config)
    return result


def dense_baseline(result: Any, config: Any) -> Any:
    """Params and MACs of the searched network with every searchable conv dense (the supernet's base model)."""
    from mgnas.models import adapt_spec, build_model
    from mgnas.profile import count
    from mgnas.search_spaces import get_space

    spec = result.spec
    supernet = get_space(config.space).supernet_spec()
    values = {p: {**c.to_dict(), "kind": "dense", "groups": 1} for p, c in supernet.convs() if c.kind == "dgconv"}
    dense = adapt_spec(supernet.with_values(values), in_channels=spec.input_size[0], num_classes=spec.num_classes,
                       input_size=tuple(spec.input_size))
    return count(build_model(dense), dense.input_size, per_layer=False)


def print_next_steps(console: Any, out: Path, config: Any) -> None:
    """The commands that take a discovered spec further: retrain it, then export it."""
    retrained = out.with_name(f"{out.name}-retrain")
    console.print("next: retrain the discovered network (from scratch, or add --init-from "
                  f"{out / 'weights.pt'} to start from the searched weights), then export it:", highlight=False)
    console.print(f"  mgnas train --spec {out / 'spec.json'} --data {config.data} --epochs {config.train.epochs} "
                  f"--out {retrained}", highlight=False, markup=False)
    console.print(f"  mgnas export {retrained / 'spec.json'} --checkpoint {retrained / 'checkpoint.pt'} "
                  f"--format onnx --out {retrained / 'model.onnx'} --check", highlight=False, markup=False)


def print_summary(result: Any, config: Any) -> None:
    r = result.result
    console = make_console()
    table = make_table(f"discovered groups: {config.space} on {config.data}, {config.budget}, {config.penalty}")
    table.add_column("layer", overflow="fold")
    table.add_column("C_in→C_out", justify="right")
    table.add_column("groups", justify="right")
    for layer, g in zip(r["layers"], r["groups"]):
        table.add_row(layer.get("name") or layer.get("path", "?"), f"{layer['in_channels']}→{layer['out_channels']}",
                      str(g))
    console.print(table)
    acc = r["accuracy"]
    status = "[green]within budget[/]" if r["within_budget"] else "[red]over budget[/]"
    proj = f" (projected: {r['projection_flips']} gate(s) set to 0)" if r["projected"] else ""
    console.print(
        f"accuracy {100 * acc:.2f}% ({'test' if r['test_accuracy'] is not None else 'val'}), "
        f"ζ/o = {r['zeta_over_o']:.3f} {status}{proj}; ζ = {r['complexity']:,.0f}, o = {r['budget']:,.0f}; "
        f"{r['params']:,} params, {r['macs']:,} MACs; {r['seconds']:.1f} s on {r.get('device', 'cpu')} "
        f"({r.get('dgconv_impl', 'masked')} DGConv)")
    try:
        base = dense_baseline(result, config)
        console.print(f"dense baseline (every searched conv dense): {base.params:,} params, {base.macs:,} MACs; "
                      f"discovered: {r['params'] / base.params:.1%} of its params, {r['macs'] / base.macs:.1%} of "
                      "its MACs", highlight=False)
    except Exception as err:  # noqa: BLE001 - a summary line must not fail a finished search
        console.print(f"dense baseline: not computed ({type(err).__name__})", highlight=False)
    if result.out_dir is not None:
        names = ("spec.json", "result.json", "report.html", "history.jsonl", "checkpoint.pt", "config.yaml")
        console.print("outputs: " + ", ".join(str(result.out_dir / n) for n in names if (result.out_dir / n).exists()),
                      highlight=False)
        print_next_steps(console, Path(result.out_dir), config)


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
        check_device(args.device)
        config = resolve_config(args)
        out = Path(args.out)
        check_out_dir(out, args.resume)
        run_and_summarise(config, out, resume=args.resume, progress=args.progress)
        return EXIT_OK
