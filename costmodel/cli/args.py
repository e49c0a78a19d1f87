"""What every ``ioaware`` subcommand shares on its way in: the error type, the one-line
message for a bad value, and the argument types (positive numbers, GPU and model names)."""

from __future__ import annotations

import argparse
import math
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


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; a positive integer is accepted") from None
    if not 1 <= value < MAX_COUNT:
        raise argparse.ArgumentTypeError(f"{value} is out of range; a positive integer (>= 1, below 2^53) is accepted")
    return value


def nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; an integer >= 0 is accepted") from None
    if not 0 <= value < MAX_COUNT:
        raise argparse.ArgumentTypeError(f"{value} is out of range; an integer >= 0 (below 2^53) is accepted")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; a positive number is accepted") from None
    if not (0 < value < MAX_COUNT):
        raise argparse.ArgumentTypeError(f"{value} is out of range; a positive finite number below 2^53 is accepted")
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
        named = message.startswith(("unknown model", f"{text}:"))
        raise argparse.ArgumentTypeError(message if named else f"{text}: {message}") from None
