"""``mgnas count MODEL|SPEC``: parameters and MACs, per layer and total."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ._base import EXIT_OK, Command, UsageError, check_input_file, parse_kwargs
from ._console import console as make_console
from ._console import table as make_table


def _human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))


def _spaces() -> list[str]:
    from ..search_spaces import list_spaces

    return list_spaces()


def _space_spec(name: str, *, supernet: bool, kwargs: dict) -> tuple[Any, str]:
    """The default architecture (or the DGConv supernet) of search space ``name``, and the line that says so
    (printed on stderr once the count succeeded, so that an error stays one line)."""
    from ..search_spaces import get_space

    if kwargs:
        raise UsageError(f"--arg applies to registered models; {name!r} is a search space (its choices are labels)")
    space = get_space(name)
    base = getattr(space, "model", "?")
    if supernet:
        return space.supernet_spec(), f"{name} is a search space: counting its DGConv supernet (built on {base})"
    return space.default(), (f"{name} is a search space: counting its default architecture ({base} with the "
                             "space's default choices); --supernet counts its DGConv supernet")


class CountCommand(Command):
    name = "count"
    help = "parameters and MACs of a model or spec file, per layer"
    description = (
        "Build MODEL (a registered name, see `mgnas models`) or SPEC (a path to a spec.json) and count its "
        "parameters and multiply-accumulates for one input. Grouped convs are counted as grouped. A search-space "
        "name (see `mgnas spaces`) counts the space's default architecture, or with --supernet its DGConv "
        "supernet. Conv rows are named like space labels and search results (stages.0.0.conv1) and show their "
        "kind and groups (dense, group g=32, dgconv g=8 (factors ...), two_level g=4)."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("target", metavar="MODEL|SPACE|SPEC",
                            help="registered model name, search-space name or path to a spec JSON file")
        parser.add_argument("--supernet", action="store_true",
                            help="with a search-space name: count its DGConv supernet instead of its default "
                                 "architecture")
        parser.add_argument("--input", metavar="CxHxW", help="input size, e.g. 3x224x224 (default: the spec's own)")
        parser.add_argument("--arg", "-a", action="append", metavar="KEY=VALUE",
                            help="model argument, repeatable, e.g. -a group_size=16 (see `mgnas models`)")
        parser.add_argument("--json", action="store_true", help="print JSON (totals and per-layer rows)")
        parser.add_argument("--totals", action="store_true", help="print only the totals, not the per-layer table")

    def take_action(self, args: argparse.Namespace) -> int:
        from ..models import build_model, list_models, model_spec
        from ..profile import check_input_size, count, parse_input_size
        from ..spec import load

        kwargs = parse_kwargs(args.arg)
        note = ""
        looks_like_file = args.target.endswith(".json") or "/" in args.target or Path(args.target).is_file()
        if looks_like_file:
            if kwargs:
                raise UsageError("--arg applies to registered models, not to spec files")
            check_input_file(args.target, "spec file")
            spec = load(args.target)
        elif args.target not in list_models() and args.target in _spaces():
            spec, note = _space_spec(args.target, supernet=args.supernet, kwargs=kwargs)
        else:
            if args.supernet:
                raise UsageError(f"--supernet applies to search-space names (see `mgnas spaces`), "
                                 f"not to {args.target!r}")
            if args.target not in list_models():
                model_spec(args.target)  # raises ValueError with close matches
            spec = model_spec(args.target, **kwargs)
        size = args.input or "x".join(map(str, spec.input_size))
        check_input_size(spec, size)  # the user's shape against the spec, before building anything
        model = build_model(spec)
        try:
            result = count(model, size)
        except RuntimeError as err:  # e.g. an input too small for the network's downsampling
            shown = "x".join(map(str, parse_input_size(size)))
            raise UsageError(f"input {shown} does not fit {spec.name or spec.family}: "
                             f"{' '.join(str(err).split())[:200]}") from None
        if note:
            print(note, file=sys.stderr)
        if args.json:
            out = result.to_dict()
            out.update(name=spec.name, family=spec.family, spec_hash=spec.content_hash())
            print(json.dumps(out, indent=1))
            return EXIT_OK

        console = make_console()
        if not args.totals:
            table = make_table(f"{spec.name or spec.family} @ {size}", show_footer=True)
            table.add_column("layer", footer="total", overflow="fold")
            table.add_column("kind", overflow="fold")
            table.add_column("output", no_wrap=True)
            table.add_column("params", justify="right", footer=f"{result.params:,}", no_wrap=True)
            table.add_column("MACs", justify="right", footer=f"{result.macs:,}", no_wrap=True)
            for layer in result.layers:
                if layer.params == 0 and layer.macs == 0:
                    continue
                calls = f" ×{layer.calls}" if layer.calls > 1 else ""
                table.add_row(layer.name, (layer.kind or layer.type) + calls,
                              "x".join(map(str, layer.output_shape[1:])),
                              f"{layer.params:,}", f"{layer.macs:,}")
            console.print(table)
        console.print(f"[bold]{spec.name or spec.family}[/]: {result.params:,} parameters ({_human(result.params)}), "
                      f"{result.macs:,} MACs ({_human(result.macs)}) at {size}; spec hash {spec.content_hash()}")
        return EXIT_OK
