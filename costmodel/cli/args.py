"""What every ``ioaware`` subcommand shares on its way in: the error type, the one-line
message for a bad value, and the argument types (positive numbers, GPU and model names)."""

from __future__ import annotations

import argparse
import re
from typing import Any

DEFAULT_GPU = "a100-sxm4-80gb"
KV_DTYPES = ("fp32", "fp16", "bf16", "fp8", "int8", "int4")
# Whole numbers from the command line stay below 2^53: exact in float64 and inside int64.
MAX_COUNT = 2**53


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


_ARGUMENT = re.compile(r"^(?:argument |invalid |the following arguments are required: )?(--?[a-z][a-z0-9-]*|[A-Z]+\b)")
_FIELD = re.compile(r"^(?:invalid [A-Za-z_ ]+: )?([a-z_][a-z0-9_.]*)(?: \(--[a-z0-9-]+\))?:")


def error_object(message: str) -> dict:
    """The JSON form of a one-line error: ``{"error": message, "argument": name or None}``,
    the argument being the option (``--batch``) or field (``seq_len``) the message names first."""
    match = _ARGUMENT.match(message) or _FIELD.match(message)
    return {"error": message, "argument": match.group(1) if match else None}


def _short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------- argument types


def _number(text: str, parse, in_range, accepted: str, accepted_range: str | None = None):
    """``text`` read by ``parse`` (int or float) and held to ``in_range``, or an
    ``ArgumentTypeError`` that says what is accepted (``accepted_range`` when the number
    read but fell outside)."""
    try:
        value = parse(text)
    except ValueError:
        noun = "a whole number" if parse is int else "a number"
        raise argparse.ArgumentTypeError(f"{text!r} is not {noun}; {accepted} is accepted") from None
    if not in_range(value):
        raise argparse.ArgumentTypeError(f"{value} is out of range; {accepted_range or accepted} is accepted")
    return value


def positive_int(text: str) -> int:
    return _number(text, int, lambda v: 1 <= v < MAX_COUNT, "a positive integer",
                   "a positive integer (>= 1, below 2^53)")


def nonnegative_int(text: str) -> int:
    return _number(text, int, lambda v: 0 <= v < MAX_COUNT, "an integer >= 0", "an integer >= 0 (below 2^53)")


def writable_file(*suffixes: str):
    """An argparse type: a path that can become a file ending in one of ``suffixes``, checked before
    any work (``costmodel.outputs.check_writable``)."""

    def parse(text: str):
        from costmodel.outputs import OutputError, check_writable

        try:
            return check_writable(text, "path", suffixes)
        except OutputError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix("path: ")) from None

    return parse


def writable_folder(text: str):
    """An argparse type: a folder files can be written into (``costmodel.outputs.check_writable_folder``)."""
    from costmodel.outputs import OutputError, check_writable_folder

    try:
        return check_writable_folder(text, "folder")
    except OutputError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("folder: ")) from None


def positive_float(text: str) -> float:
    return _number(text, float, lambda v: 0 < v < MAX_COUNT, "a positive number",
                   "a positive finite number below 2^53")


def fraction(text: str) -> float:
    return _number(text, float, lambda v: 0 <= v < 1, "a number in [0, 1)")


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
        named = message.startswith(("unknown model", f"{text}:"))
        raise argparse.ArgumentTypeError(message if named else f"{text}: {message}") from None
