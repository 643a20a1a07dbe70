"""``mgnas count MODEL|SPEC``: parameters and MACs, per layer and total."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ._base import EXIT_OK, Command, UsageError, parse_kwargs


def _human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))


class CountCommand(Command):
    name = "count"
    help = "parameters and MACs of a model or spec file, per layer"
    description = (
        "Build MODEL (a registered name, see `mgnas models`) or SPEC (a path to a spec.json) and count its "
        "parameters and multiply-accumulates for one input. Grouped convs are counted as grouped."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("target", metavar="MODEL|SPEC", help="registered model name or path to a spec JSON file")
        parser.add_argument("--input", metavar="CxHxW", help="input size, e.g. 3x224x224 (default: the spec's own)")
        parser.add_argument("--arg", "-a", action="append", metavar="KEY=VALUE",
                            help="model argument, repeatable, e.g. -a group_size=16 (see `mgnas models`)")
        parser.add_argument("--json", action="store_true", help="print JSON (totals and per-layer rows)")
        parser.add_argument("--totals", action="store_true", help="print only the totals, not the per-layer table")

    def take_action(self, args: argparse.Namespace) -> int:
        from ..models import build_model, list_models, model_spec
        from ..profile import count
        from ..spec import load

        kwargs = parse_kwargs(args.arg)
        looks_like_file = args.target.endswith(".json") or "/" in args.target or Path(args.target).is_file()
        if looks_like_file:
            if kwargs:
                raise UsageError("--arg applies to registered models, not to spec files")
            if not Path(args.target).is_file():
                raise UsageError(f"spec file {args.target!r} does not exist")
            spec = load(args.target)
        else:
            if args.target not in list_models():
                model_spec(args.target)  # raises ValueError with close matches
            spec = model_spec(args.target, **kwargs)
        size = args.input or "x".join(map(str, spec.input_size))
        result = count(build_model(spec), size)
        if args.json:
            out = result.to_dict()
            out.update(name=spec.name, family=spec.family, spec_hash=spec.content_hash())
            print(json.dumps(out, indent=1))
            return EXIT_OK
        from rich.console import Console
        from rich.table import Table

        console = Console()
        if not args.totals:
            table = Table(title=f"{spec.name or spec.family} @ {size}", show_footer=True)
            table.add_column("layer", footer="total", overflow="fold")
            table.add_column("type", overflow="fold")
            table.add_column("output", no_wrap=True)
            table.add_column("params", justify="right", footer=f"{result.params:,}", no_wrap=True)
            table.add_column("MACs", justify="right", footer=f"{result.macs:,}", no_wrap=True)
            for layer in result.layers:
                if layer.params == 0 and layer.macs == 0:
                    continue
                calls = f" ×{layer.calls}" if layer.calls > 1 else ""
                table.add_row(layer.name, layer.type + calls, "x".join(map(str, layer.output_shape[1:])),
                              f"{layer.params:,}", f"{layer.macs:,}")
            console.print(table)
        console.print(f"[bold]{spec.name or spec.family}[/]: {result.params:,} parameters ({_human(result.params)}), "
                      f"{result.macs:,} MACs ({_human(result.macs)}) at {size}; spec hash {spec.content_hash()}")
        return EXIT_OK
