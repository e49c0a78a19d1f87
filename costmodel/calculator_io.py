"""Arrays in, values out: what every calculator shares at its edges.

In: argument checks (``check``, ``element_bytes``) and the model numbers a calculator reads
from a config or from keyword overrides (``resolve``). Out: the ``Result`` base of every
calculator's result and ``to_value`` (0-d arrays back to Python numbers).

The calculators are plain arithmetic, so numpy broadcasting does the sweeping: any numeric
argument may be a scalar or an array, and a sweep of 10^6 configurations is one call.
Python ints stay Python ints (exact, arbitrary precision); lists become numpy arrays;
0-d results come back as Python scalars.

Argument checks raise pydantic's ``ValidationError`` (a ``ValueError``) so a bad argument
reads like a bad config field: its name, the offending value, and what is allowed.
"""

from __future__ import annotations

from typing import Any, Union

import numpy as np
from pydantic import BaseModel, ConfigDict
from pydantic_core import ValidationError

from hardware_specs.dtypes import dtype_bytes
from simulators.tabular import Tabular

#: A result field: a Python number, or an array when any input was an array.
Number = Union[int, float, np.ndarray]


class Result(Tabular, BaseModel):
    """Base of the calculators' result values: numbers or numpy arrays, read-only.

    ``to_dict()``, ``to_frame()`` (pandas) and a short HTML table for notebooks come from
    ``simulators.tabular.Tabular``."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)


_INT64_MAX = np.iinfo(np.int64).max


def as_numeric(x: Any) -> Any:
    """Python scalars unchanged; numpy scalars -> Python scalars; lists/tuples -> arrays.

    Integer arrays are widened to int64 (float64 for unsigned values past int64's range), and
    float arrays to float64, so that products of shapes never wrap around in a narrow dtype:
    an int32 seq_len of 5000 times a KV row of 1 MB must be 5 GB, not a negative number.
    """
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, (list, tuple)):
        x = np.asarray(x)
    if isinstance(x, np.ndarray):
        if x.dtype.kind == "u" and x.size and x.max() > _INT64_MAX:
            return x.astype(np.float64)
        if x.dtype.kind in "iu" and x.dtype != np.int64:
            return x.astype(np.int64)
        if x.dtype.kind == "f" and x.dtype != np.float64:
            return x.astype(np.float64)
    return x


def to_value(x: Any) -> Any:
    """0-d arrays and numpy scalars -> Python scalars; arrays and Python numbers unchanged."""
    if isinstance(x, np.ndarray) and x.ndim == 0:
        return x.item()
    if isinstance(x, np.generic):
        return x.item()
    return x


def _fail(func: str, name: str, value: Any, error_type: str, ctx: dict | None = None, index=None):
    loc = (name,) if index is None else (name, *index)
    detail = {"type": error_type, "loc": loc, "input": value}
    if ctx:
        detail["ctx"] = ctx
    raise ValidationError.from_exception_data(func, [detail])


def check(func: str, name: str, value: Any, *, gt=None, ge=None, lt=None, le=None, integer: bool = False) -> Any:
    """Validate a numeric argument (scalar or array) and return it as ``as_numeric`` would.

    On failure raises ``pydantic_core.ValidationError`` titled ``func`` whose location is
    ``name`` (plus the element index for arrays) and whose input is the offending element.
    """
    value = as_numeric(value)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.ndarray)):
        _fail(func, name, value, "float_type" if not integer else "int_type")
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf":
        _fail(func, name, value, "int_type" if integer else "float_type")

    def first_bad(mask):
        idx = np.argwhere(np.atleast_1d(mask))[0]
        element = np.atleast_1d(arr)[tuple(idx)]
        return element.item(), (tuple(int(i) for i in idx) if arr.ndim else None)

    bad = ~np.isfinite(arr)
    if np.any(bad):
        element, index = first_bad(bad)
        _fail(func, name, element, "finite_number", index=index)
    if integer and arr.dtype.kind == "f":
        bad = arr != np.floor(arr)
        if np.any(bad):
            element, index = first_bad(bad)
            _fail(func, name, element, "int_from_float", index=index)
    for bound, op, error_type, key in (
        (gt, np.less_equal, "greater_than", "gt"),
        (ge, np.less, "greater_than_equal", "ge"),
        (lt, np.greater_equal, "less_than", "lt"),
        (le, np.greater, "less_than_equal", "le"),
    ):
        if bound is None:
            continue
        bad = op(arr, bound)
        if np.any(bad):
            element, index = first_bad(bad)
            _fail(func, name, element, error_type, {key: bound}, index=index)
    return value


def require(func: str, name: str, value, ok, message: str) -> None:
    """Raise a ValueError naming ``name`` and its first offending element where ``ok`` is False."""
    ok = np.asarray(ok)
    if not ok.all():
        bad = np.broadcast_to(np.asarray(value), ok.shape)[~ok].flat[0] if ok.ndim else value
        raise ValueError(f"{func}: {name}: " + message.format(bad.item() if hasattr(bad, "item") else bad))


def element_bytes(func: str, name: str, dtype: Any) -> Any:
    """A dtype name ('bf16', see ``hardware_specs.dtypes``) or a positive number (array) of bytes."""
    if isinstance(dtype, str):
        return dtype_bytes(dtype)
    return check(func, name, dtype, gt=0)


def require_config(func: str, cfg: Any, optional: bool = True) -> None:
    """A ModelConfig (or None where the numbers come as keywords), else a ValueError saying so."""
    if (cfg is None and optional) or hasattr(cfg, "n_layers") and hasattr(cfg, "model_dump"):
        return
    raise ValueError(f"{func}: cfg: {cfg!r} is not a ModelConfig; one is accepted "
                     "(costmodel.models.load_model(name) reads a preset)")


def default_seq_len(func: str, cfg: Any, name: str, value: Any) -> Any:
    """``value``, or ``cfg.max_seq_len`` when ``value`` is None; a TypeError naming ``name``
    when neither is given."""
    if value is not None:
        return value
    if cfg is None:
        raise TypeError(f"{func}: give {name} or a ModelConfig")
    return cfg.max_seq_len


def resolve(func: str, cfg: Any, fields: tuple[str, ...], overrides: dict[str, Any]) -> dict[str, Any]:
    """The model numbers a calculator needs: each override when given, else ``cfg``'s field.

    Overrides replace exactly the named numbers; nothing else is re-derived from them
    (give ``head_dim`` too if you change ``d_model`` and want the head size to follow).
    """
    require_config(func, cfg)
    unknown = set(overrides) - set(fields)
    if unknown:
        raise TypeError(f"{func}: unexpected override(s) {sorted(unknown)}; accepted: {', '.join(fields)}")
    out = {}
    for field in fields:
        value = overrides.get(field)
        if value is None:
            if cfg is None:
                raise TypeError(f"{func}: give a ModelConfig or the number {field}=...")
            value = getattr(cfg, field)
        elif field in _SHAPE_INTS:
            value = check(func, field, value, gt=0, integer=True)
        out[field] = value
    return out


# The ModelConfig fields that are positive whole numbers (checked when given as overrides).
_SHAPE_INTS = frozenset(
    ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "ffn_dim", "max_seq_len")
)
