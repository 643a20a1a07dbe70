"""``mgnas models [PATTERN]``: the registered model names."""

from __future__ import annotations

import argparse
import json

from ._base import EXIT_OK, Command, UsageError
from ._console import console as make_console
from ._console import table as make_table


class ModelsCommand(Command):
    name = "models"
    help = "list registered model names"
    description = (
        "List the registered paper models (optionally filtered by a wildcard PATTERN such as 'mgic*' or a "
        "substring such as 'resnext'), with their tunable keyword arguments."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("pattern", nargs="?", help="wildcard or substring filter, e.g. 'mgic*'")
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")

    def take_action(self, args: argparse.Namespace) -> int:
        from ..models import list_models, model_doc, model_kwargs

        names = list_models(args.pattern)
        if not names:
            raise UsageError(f"no model matches {args.pattern!r}; see `mgnas models`")
        rows = []
        for n in names:
            doc = model_doc(n)
            rows.append({"name": n, "kwargs": model_kwargs(n), "description": doc.splitlines()[0] if doc else ""})
        if args.json:
            print(json.dumps(rows, indent=1))
            return EXIT_OK

        table = make_table(f"{len(rows)} models" + (f" matching {args.pattern!r}" if args.pattern else ""))
        table.add_column("model", style="bold cyan", no_wrap=True)
        table.add_column("arguments", overflow="fold")
        table.add_column("description")
        for r in rows:
            kw = ", ".join(f"{k}={v!r}" for k, v in r["kwargs"].items())
            table.add_row(r["name"], kw, r["description"])
        make_console().print(table)
        return EXIT_OK
