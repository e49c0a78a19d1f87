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

from costmodel.cli import attention, hardware, measure, search, sizing, train_run
from costmodel.cli.args import CommandError, error_line
from costmodel.cli.text import to_jsonable

# ---------------------------------------------------------------- parser


# Each module adds its subcommands to the parser; order is the order of ``ioaware --help``.
COMMAND_MODULES = (hardware, sizing, attention, measure, search, train_run)

Handler = Callable[[argparse.Namespace], tuple[dict, str]]


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports bad input on one line (no usage dump) and exits with 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="ioaware",
        description="Predict what attention and LLM workloads cost on a GPU, and check the predictions against real kernels.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.register(sub)
    for action in sub.choices.values():
        if not any("--json" in a.option_strings for a in action._actions):
            action.add_argument("--json", action="store_true", help="print one JSON object and nothing else")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        data, text = args.func(args)
    except (CommandError, ValueError) as exc:
        print(f"ioaware {args.command}: error: {error_line(exc)}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(to_jsonable(data), allow_nan=False))
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
