"""The ``ioaware`` command: what-if sizing and attention cost from the shell.

Every subcommand computes values through the library and formats them here, at the
edge: a table for people, or with ``--json`` one JSON object on stdout and nothing else.
Bad input exits with status 2 and a one-line message naming the argument, the value
and what is accepted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from costmodel.cli import (app, attention, calculators, hardware, measure, predict, search, serving, sizing, train_run,
                           validate_steps)
from costmodel.cli.args import CommandError, error_line, error_object
from costmodel.cli.text import to_jsonable

# ---------------------------------------------------------------- parser


# Each module adds its subcommands to the parser; order is the order of ``ioaware --help``.
COMMAND_MODULES = (hardware, calculators, sizing, predict, attention, measure, validate_steps, search, train_run, serving,
                   app)

Handler = Callable[[argparse.Namespace], tuple[dict, str]]


class UsageError(Exception):
    """argparse's complaint about the command line, raised instead of exiting so that
    ``main`` reports it the same way as every other bad input."""


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports bad input on one line (no usage dump)."""

    def error(self, message: str):
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="ioaware",
        description="Predict what attention and LLM workloads cost on a GPU, and check the predictions against real kernels.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=OneLineParser)
    for module in COMMAND_MODULES:
        module.register(sub)
    for action in sub.choices.values():
        if not any("--json" in a.option_strings for a in action._actions):
            action.add_argument("--json", action="store_true", help="print one JSON object and nothing else")
    return parser


def _fail(command: str | None, message: str, as_json: bool) -> int:
    """Bad input: one line on stderr, and with ``--json`` one JSON error object on stdout; exit 2."""
    prog = f"ioaware {command}" if command else "ioaware"
    print(f"{prog}: error: {message}", file=sys.stderr)
    if as_json:
        print(json.dumps(error_object(message)))
    return 2


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    as_json = "--json" in argv
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:  # argparse's own verdict ends the program, as argparse would
        raise SystemExit(_fail(command if command in _commands(parser) else None, str(exc), as_json)) from None
    try:
        data, text = args.func(args)
        out = json.dumps(to_jsonable(data), allow_nan=False) if args.json else text
    except (CommandError, ValueError, OSError, OverflowError) as exc:
        return _fail(args.command, error_line(exc), args.json)
    except MemoryError:
        return _fail(args.command, "the request needs more memory than this machine has; ask for a smaller problem",
                     args.json)
    print(out)
    return 0


def _commands(parser: argparse.ArgumentParser) -> set[str]:
    return {name for a in parser._subparsers._group_actions for name in a.choices}


if __name__ == "__main__":
    sys.exit(main())
