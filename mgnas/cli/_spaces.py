"""``mgnas spaces [PATTERN]``: the registered search spaces, what they vary, and which strategies can search them."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._base import EXIT_OK, Command, UsageError
from ._console import console as make_console
from ._console import table as make_table


def _strategies(space: Any) -> list[str]:
    from mgnas.search_spaces import ConvGroupsSpace

    out = ["study"]
    try:
        space.supernet_spec()
        out.insert(0, "search")
    except NotImplementedError:
        pass
    if isinstance(space, ConvGroupsSpace):
        out.append("nni-nas")
    return out


def space_row(name: str) -> dict[str, Any]:
    """What ``mgnas spaces`` shows of one space (also its JSON output)."""
    from mgnas.search_spaces import get_space

    space = get_space(name)
    dims = space.dimensions()
    return {
        "name": name, "model": getattr(space, "model", None), "kind": type(space).__name__,
        "dimensions": [{"label": d.label, "choices": list(d.choices), "default": d.default} for d in dims],
        "size": space.size(), "strategies": _strategies(space), "description": space.description,
    }


def _dims_text(dims: list[dict[str, Any]], limit: int) -> str:
    lines = [f"{d['label']} ∈ {d['choices']}" for d in dims[:limit]]
    if len(dims) > limit:
        lines.append(f"... {len(dims)} labels in all (--details)")
    return "\n".join(lines)


class SpacesCommand(Command):
    name = "spaces"
    help = "list registered search spaces: their labelled choices and which commands search them"
    description = (
        "List the registered search spaces (optionally filtered by a wildcard PATTERN such as 'mgic*' or a "
        "substring): the model each varies, its labelled choices (the labels `--set fixed.LABEL=...` and "
        "`--set choices.LABEL=[...]` take in `mgnas study`), the number of architectures, and the commands that "
        "can search it: search (differentiable DGConv supernet), study (Optuna / NNI HPO), nni-nas."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("pattern", nargs="?", help="wildcard or substring filter, e.g. 'mgic*'")
        parser.add_argument("--details", action="store_true", help="every label with its choices and default")
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")

    def take_action(self, args: argparse.Namespace) -> int:
        from mgnas.search_spaces import list_spaces

        names = list_spaces(args.pattern)
        if not names:
            raise UsageError(f"no search space matches {args.pattern!r}; see `mgnas spaces`")
        rows = [space_row(n) for n in names]
        if args.json:
            print(json.dumps(rows, indent=1, default=str))
            return EXIT_OK

        table = make_table(f"{len(rows)} search spaces" + (f" matching {args.pattern!r}" if args.pattern else ""))
        table.add_column("space", style="bold cyan", no_wrap=True)
        table.add_column("model / size", no_wrap=True)
        table.add_column("choices", overflow="fold")
        table.add_column("searched by", no_wrap=True)
        limit = 10**6 if args.details or len(rows) == 1 else 2
        for r in rows:
            size = f"{r['size']:,}" if r["size"] < 10**9 else f"{r['size']:.1e}"
            table.add_row(r["name"], f"{r['model']}\n{size} architectures",
                          _dims_text(r["dimensions"], limit), "\n".join(r["strategies"]))
        make_console().print(table)
        return EXIT_OK
