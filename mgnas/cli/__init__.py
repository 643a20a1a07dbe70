"""The ``mgnas`` command line (L5): parses, calls the library, prints. Exit codes: 0 ok, 2 bad input, 1 internal."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._base import EXIT_INTERNAL, EXIT_USAGE, Command, UsageError
from ._count import CountCommand
from ._demo import DemoCommand
from ._export import ExportCommand
from ._models import ModelsCommand
from ._nni import NNINasCommand
from ._search import SearchCommand
from ._spaces import SpacesCommand
from ._study import ParetoCommand, StudyCommand
from ._train import TrainCommand

COMMANDS: list[Command] = [
    DemoCommand(), SearchCommand(), StudyCommand(), ParetoCommand(), NNINasCommand(), TrainCommand(),
    ExportCommand(), ModelsCommand(), SpacesCommand(), CountCommand(),
]


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="mgnas",
        description="Search, count and export the channel-group structure of CNNs "
        "(DGConv, MGIC, MGiaD, two-level group conv, multigrid conv).",
    )
    parser.add_argument("--version", action="version", version=f"mgnas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for cmd in COMMANDS:
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.description)
        cmd.add_arguments(p)
        p.set_defaults(_command=cmd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cmd: Command | None = getattr(args, "_command", None)
    if cmd is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return cmd.take_action(args)
    except (UsageError, ValueError, FileNotFoundError) as err:  # SpecError is a ValueError
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"mgnas {cmd.name}: error: {msg}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"mgnas {cmd.name}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # an internal failure: keep the trace for a bug report, exit 1
        import traceback

        traceback.print_exc()
        print(f"mgnas {cmd.name}: internal error: {type(err).__name__}: {err}", file=sys.stderr)
        return EXIT_INTERNAL
