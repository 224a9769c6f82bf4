"""The `effnet` command line: a thin layer that parses flags, builds config objects and calls the library.

Parsing imports no torch: each command module imports only argparse-level things at its top and its engine
inside its `run`, and `main` adds the flags of the one command it runs (`--help` and `--version` add none)."""

from __future__ import annotations

import argparse
import errno
import importlib
import re
import sys
from typing import NoReturn

# One module per command, in `effnet --help`'s order: effnet.commands.<name> defines NAME, HELP,
# `register(subparsers)` (its parser; sets `func`) and `run(args) -> int`.
COMMANDS = (
    "models",
    "profile",
    "scale",
    "predict",
    "cam",
    "export",
    "bench",
    "train",
    "eval",
    "search",
    "study",
    "serve",
    "completion",  # a script generated from the parsers above
)
COMMAND_MODULES = tuple(f"effnet.commands.{name}" for name in COMMANDS)


# argparse (3.11) reads "-1e0", "-1." or "-inf" as an unknown option; any spelling of a negative number is a value.
_NEGATIVE_NUMBER = re.compile(r"^-(?:\d[\d_]*\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$|^-(?:inf|infinity|nan)$", re.IGNORECASE)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (the command, the flag, the fix) and every negative number read as a value."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = _NEGATIVE_NUMBER

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def,override]
        """argparse's, after each action that asks to has seen argv (`--pretrained [TAG]` leaves photos written
        after it to the inputs)."""
        for action in self._actions:
            prepare = getattr(action, "prepare_argv", None)
            if prepare is not None and args is not None:
                args = prepare(self, args)
        return super().parse_known_args(args, namespace)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser: every subcommand's flags, or with `command` only that one's (the others are listed by
    name and help, which costs no import of their engines)."""
    parser = Parser(prog="effnet", description="EfficientNet and compound model scaling.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in map(importlib.import_module, COMMAND_MODULES):
        if command is None or module.NAME == command:
            module.register(subparsers)
        else:
            subparsers.add_parser(module.NAME, help=module.HELP)
    return parser


def _command(argv: list[str]) -> str:
    """The subcommand argv names: its first word that is not a flag (the top level has no flag taking a value)."""
    word = next((word for word in argv if not word.startswith("-")), "")
    return word if word in COMMANDS else ""


def one_line(err: BaseException) -> str:
    """An error message folded onto one line (parts of multi-line messages joined by "; ")."""
    return "; ".join(part.strip() for part in str(err).splitlines() if part.strip())


def describe_os_error(err: OSError) -> str:
    """One line for an OSError: what happened, to which file, and what to do about a full disk."""
    # A rename's error names its source (a hidden temp file) first: the destination is the path the user gave.
    target = err.filename2 or err.filename
    where = f" ({target})" if target else ""
    if err.errno == errno.ENOSPC:
        return f"disk full{where}: free some space (files being written were left as they were) and run again"
    return f"{err.strerror or err}{where}"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `effnet` script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command(argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help (0) or a flag error, already printed (2): a code, also for in-process calls
        return done.code if isinstance(done.code, int) else 2
    if args.version:
        from effnet import __version__

        print(__version__)
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ValueError as err:  # user mistakes: one clear line, no traceback
        print(f"effnet {args.command}: error: {one_line(err)}", file=sys.stderr)
        return 2
    except OSError as err:  # missing / unwritable paths, a full disk: the file and the reason, no traceback
        print(f"effnet {args.command}: error: {describe_os_error(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"effnet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
