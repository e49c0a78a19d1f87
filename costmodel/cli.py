"""The ``ioaware`` command: what-if sizing and attention cost from the shell.

Every subcommand computes values through the library and formats them here, at the
edge: a table for people, or with ``--json`` one JSON object on stdout and nothing else.
Bad input exits with status 2 and a one-line message naming the argument, the value
and what is accepted.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


class CommandError(ValueError):
    """Bad input to a subcommand; the message is printed as is."""


def error_line(exc: Exception) -> str:
    """One line for a person: each pydantic error as ``field: what is allowed (got value)``,
    any other error's first line.

    pydantic's own ``str()`` puts only a count on its first line ("3 validation errors for
    ModelConfig") and the fields below it, so cutting it to one line would lose them.
    """
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            given = err.get("input")
            shown = "" if isinstance(given, dict) else f" (got {_short_repr(given)})"
            parts.append(f"{loc + ': ' if loc else ''}{err['msg']}{shown}")
        return f"invalid {exc.title}: " + "; ".join(parts)
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------- argument types


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; a positive integer is accepted") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is out of range; a positive integer (>= 1) is accepted")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; a positive number is accepted") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{value} is out of range; a positive finite number is accepted")
    return value


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; a number in [0, 1) is accepted") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{value} is out of range; a number in [0, 1) is accepted")
    return value


def gpu_name(text: str):
    """A bundled GPU name, a calibrated overlay name, or a spec file path -> GPUSpec."""
    from hardware_specs import SpecError, load_gpu

    try:
        return load_gpu(text)
    except SpecError as exc:
        raise argparse.ArgumentTypeError(error_line(exc)) from None


def model_name(text: str):
    """A preset model name or a model YAML path -> ModelConfig."""
    from costmodel.models import load_model

    try:
        return load_model(text)
    except (ValueError, FileNotFoundError) as exc:
        message = error_line(exc)
        raise argparse.ArgumentTypeError(message if message.startswith("unknown model") else f"{text}: {message}") from None


# ---------------------------------------------------------------- output


def to_jsonable(obj: Any) -> Any:
    """Numbers, numpy values and pydantic models -> plain JSON values."""
    if hasattr(obj, "model_dump"):
        return to_jsonable(obj.model_dump(mode="python"))
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def table(rows: list[tuple[str, ...]], header: tuple[str, ...] | None = None) -> str:
    """A plain aligned text table."""
    rows = [tuple(str(c) for c in r) for r in rows]
    allrows = ([tuple(header)] if header else []) + rows
    widths = [max(len(r[i]) for r in allrows) for i in range(len(allrows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in allrows]
    if header:
        lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def si(value: float, unit: str, digits: int = 3) -> str:
    """Format a number with an SI prefix: si(1.5e12, 'B/s') -> '1.5 TB/s'."""
    if value is None:
        return "n/a"
    value = float(value)
    if value == 0:
        return f"0 {unit}"
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n")):
        if abs(value) >= factor:
            return f"{value / factor:.{digits}g} {prefix}{unit}"
    return f"{value:.{digits}g} {unit}"


# ---------------------------------------------------------------- parser


Handler = Callable[[argparse.Namespace], tuple[dict, str]]


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports bad input on one line (no usage dump) and exits with 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from costmodel import commands

    parser = OneLineParser(
        prog="ioaware",
        description="Predict what attention and LLM workloads cost on a GPU, and check the predictions against real kernels.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.register(sub)
    try:
        from simulators.command import register as register_attention
    except ImportError:  # the simulator is optional for the sizing commands
        register_attention = None
    if register_attention is not None:
        register_attention(sub)
    try:
        from kernels.command import register as register_gpu_commands
    except ImportError:
        register_gpu_commands = None
    if register_gpu_commands is not None:
        register_gpu_commands(sub)
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
