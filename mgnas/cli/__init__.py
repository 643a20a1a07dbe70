"""The ``mgnas`` command line (L5): parses, calls the library, prints. Exit codes: 0 ok, 2 bad input, 1 internal."""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from ._base import EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, Command, Parser, UsageError
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
    from ._help import HelpFormatter, epilog, fill_missing_help, mark_config_defaults

    parser = Parser(
        prog="mgnas",
        description="Search, count and export the channel-group structure of CNNs "
        "(DGConv, MGIC, MGiaD, two-level group conv, multigrid conv).",
        epilog="Example:\n  mgnas demo                      # the main job on embedded data, in minutes\n"
        "  mgnas search --help             # every command has --help, with its defaults and an example\n\n"
        "Guide to the real jobs (ImageNet search, studies, retrain and export): docs/guide.md",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mgnas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for cmd in COMMANDS:
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.description, epilog=epilog(cmd.name),
                           formatter_class=HelpFormatter)
        cmd.add_arguments(p)
        mark_config_defaults(cmd.name, p)
        fill_missing_help(p)
        p.set_defaults(_command=cmd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Every user error is one line ``mgnas CMD: error: ...`` on stderr with exit code 2; an
    internal failure is one line with exit code 1 (its traceback too when ``MGNAS_DEBUG=1``)."""
    try:
        return _main(argv)
    except BrokenPipeError:  # `mgnas models --json | head -1`: the reader left; stop quietly
        _silence_stdout()
        return EXIT_OK


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (e.g. captured in tests)
        pass


def _disk_full(name: str, err: BaseException) -> bool:
    """Print the one-line answer to a full disk (ENOSPC / EDQUOT, however wrapped) and return True."""
    from .._atomic import is_disk_full

    if not is_disk_full(err):
        return False
    print(f"mgnas {name}: error: no space left on device: nothing was half-written (outputs are written "
          "atomically and the previous checkpoint is intact); free some space, then rerun (search/train: "
          "--resume continues from the last checkpoint)", file=sys.stderr)
    return True


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).strip().splitlines()[:1]).strip() if str(err).strip() else ""
    return text or type(err).__name__


def _is_data_error(err: OSError) -> bool:
    """A corrupt or truncated image in the user's data set (PIL's errors), not a fault of the machine."""
    return type(err).__module__.startswith("PIL") or "image file is truncated" in str(err)


#: Libraries whose log records with a traceback, and Optuna's "Trial N failed ..." records, are dropped while a
#: command runs: the exception itself reaches :func:`main`, which reports it in one line, or the strategy
#: reports the failed trial in its own one-line summary.
_QUIET_LOGGERS = ("optuna", "nni", "lightning", "pytorch_lightning")
_FAILED_TRIAL = re.compile(r"Trial \d+ failed")
#: Commands that compute with torch: they set their CPU threads by :func:`mgnas.runtime.configure_threads`.
_COMPUTING = ("demo", "search", "study", "nni-nas", "train", "export", "count")


@contextlib.contextmanager
def _no_logged_tracebacks() -> Iterator[None]:
    factory = logging.getLogRecordFactory()

    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        if record.name.split(".")[0] in _QUIET_LOGGERS and (
                record.exc_info or _FAILED_TRIAL.match(str(record.msg))):
            record.levelno = -1  # below every handler's level (NOTSET is 0): no handler emits it
        return record

    logging.setLogRecordFactory(make)
    try:
        yield
    finally:
        logging.setLogRecordFactory(factory)


#: OSError numbers that answer a path the user gave (exit 2), not a fault of the machine.
_PATH_ERRNOS = {errno.ENAMETOOLONG, errno.ELOOP, errno.EEXIST, errno.ENOTEMPTY, errno.EROFS, errno.EINVAL,
                errno.ENXIO, errno.EXDEV}


def _internal(name: str, err: BaseException) -> int:
    """An internal failure: one line (exit 1) that names a file holding the traceback, for a bug report without
    rerunning a long job; the traceback is printed too when ``MGNAS_DEBUG=1``."""
    import traceback

    if os.environ.get("MGNAS_DEBUG") == "1":
        traceback.print_exception(err)
    where = "set MGNAS_DEBUG=1 for the traceback"
    saved = _save_traceback(name, "".join(traceback.format_exception(err)))
    if saved is not None:
        where = f"traceback in {saved}"
    print(f"mgnas {name}: internal error: {type(err).__name__}: {_one_line(err)} ({where})", file=sys.stderr)
    return EXIT_INTERNAL


def _save_traceback(name: str, text: str) -> str | None:
    """Write ``text`` to a new file in the temporary directory; its path, or None when that fails."""
    import tempfile
    import time

    try:
        fd, path = tempfile.mkstemp(prefix=f"mgnas-{name}-{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(f"mgnas {' '.join(sys.argv[1:])}\n{text}")
    except OSError:
        return None
    return path


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args, extras = parser.parse_known_args(argv)
    except SystemExit as exit_:  # --help / --version (0) or an argparse error already printed in one line (2)
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    cmd: Command | None = getattr(args, "_command", None)
    if extras:
        where = f"mgnas {cmd.name}" if cmd is not None else "mgnas"
        print(f"{where}: error: unrecognized arguments: {' '.join(extras)}", file=sys.stderr)
        return EXIT_USAGE
    if cmd is None:
        print(f"mgnas: error: a command is required ({', '.join(c.name for c in COMMANDS)}); "
              "see `mgnas --help`", file=sys.stderr)
        return EXIT_USAGE
    # Warnings are held back until the command ends: shown after a success, dropped before a one-line error.
    with warnings.catch_warnings(record=True) as caught, _no_logged_tracebacks():
        try:
            if cmd.name in _COMPUTING:  # size this process's threads first (mgnas.runtime: the thread policy)
                from ..runtime import configure_threads

                configure_threads()
            code = cmd.take_action(args)
        except (UsageError, ValueError, FileNotFoundError, IsADirectoryError, NotADirectoryError,
                PermissionError) as err:  # SpecError and ConfigError are ValueErrors
            print(f"mgnas {cmd.name}: error: {_one_line(err)}", file=sys.stderr)
            return EXIT_USAGE
        except BrokenPipeError:
            raise
        except OSError as err:
            if _disk_full(cmd.name, err):  # an environment fault, exit 1: the files in place are intact
                return EXIT_INTERNAL
            if _is_data_error(err):
                print(f"mgnas {cmd.name}: error: unreadable data: {_one_line(err)}", file=sys.stderr)
                return EXIT_USAGE
            if err.errno in _PATH_ERRNOS:  # a path the user gave: too long, a symlink loop, read-only ...
                print(f"mgnas {cmd.name}: error: {_one_line(err)}", file=sys.stderr)
                return EXIT_USAGE
            return _internal(cmd.name, err)
        except RecursionError:
            print(f"mgnas {cmd.name}: error: the input is nested too deeply to process", file=sys.stderr)
            return EXIT_USAGE
        except MemoryError:
            print(f"mgnas {cmd.name}: error: out of memory: the input or model is too large for this machine",
                  file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            print(f"mgnas {cmd.name}: interrupted", file=sys.stderr)
            return 130
        except Exception as err:  # an internal failure: one line; the trace for a bug report on request
            if _disk_full(cmd.name, err):  # an environment fault, exit 1: the files in place are intact
                return EXIT_INTERNAL
            return _internal(cmd.name, err)
    for w in caught:
        warnings.showwarning(w.message, w.category, w.filename, w.lineno, w.file, w.line)
    return code
