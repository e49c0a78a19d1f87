"""Results as a notebook shows them: ``to_dict()``, ``to_frame()`` (pandas) and a short HTML table.

One mixin for every result type, pydantic models (``costmodel.calculator_io.Result``,
``simulators.results.AttentionResult`` ...) and dataclasses alike, so a Jupyter user sees the
answer without printing it by hand. It lives at the simulators layer, the lowest that holds
results, so costmodel's results inherit the same code. pandas is optional (``ioaware[frames]``)
and imported only inside ``to_frame``.

Rules, the same for every type:
- ``to_dict()``: the fields as plain Python values (nested results as dicts; numpy arrays kept).
- ``to_frame()``: one row for a scalar result, one row per element for a broadcast one (numpy
  arrays broadcast against each other); nested results become ``outer.inner`` columns;
  ``to_frame("kernels")`` gives one row per item of a list field instead.
- ``_repr_html_()``: field, value; amounts with their unit (names ending in ``_bytes``, ``_s``,
  ``flops``, ``_per_s``), arrays as their shape and range, lists as their length.
"""

from __future__ import annotations

import html
from dataclasses import fields as dataclass_fields, is_dataclass
from typing import Any

import numpy as np

_MAX_ROWS = 40  # of the HTML table; the rest is counted, not shown


def _plain(obj: Any) -> Any:
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="python")
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclass_fields(obj)}
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> ``a.b`` keys; lists of dicts (kernels, ops) are left out (to_frame(field) shows them)."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}."))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            continue
        else:
            out[name] = value
    return out


def _unit(name: str) -> str:
    last = name.rsplit(".", 1)[-1]
    if last.endswith("_bytes") or last.endswith("bytes"):
        return "B"
    if last.endswith("_per_s"):
        return "/s"
    if last.endswith("_s"):
        return "s"
    if "flops" in last:
        return "FLOP"
    return ""


def _number(value: float, unit: str) -> str:
    if unit in ("B", "FLOP", "s", "/s") and value != 0 and np.isfinite(value):
        for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1, ""),
                               (1e-3, "m"), (1e-6, "µ"), (1e-9, "n")):
            if abs(value) >= factor:
                return f"{value / factor:.4g} {prefix}{unit}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}" + (f" {unit}" if unit else "")
    return f"{value:.4g}" + (f" {unit}" if unit else "") if isinstance(value, float) else str(value)


def _cell(name: str, value: Any) -> str:
    unit = _unit(name)
    if isinstance(value, np.ndarray):
        if value.size == 0 or value.dtype.kind not in "iuf":
            return f"array{value.shape}"
        return f"array{value.shape}: {_number(value.min().item(), unit)} … {_number(value.max().item(), unit)}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _number(value, unit)
    if isinstance(value, list):
        names = [v.get("name") for v in value if isinstance(v, dict) and "name" in v]
        return f"{len(value)} items" + (f": {', '.join(map(str, names[:8]))}" + ("…" if len(names) > 8 else "")
                                         if names else "")
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


class Tabular:
    """to_dict / to_frame / _repr_html_ for a result (module docstring)."""

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)

    def to_frame(self, field: str | None = None):
        """A pandas DataFrame: the result's numbers, or one row per item of list ``field``."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("to_frame needs pandas: pip install 'ioaware[frames]'") from None
        data = self.to_dict()
        if field is not None:
            items = data.get(field)
            if not isinstance(items, list):
                lists = [k for k, v in data.items() if isinstance(v, list)]
                raise ValueError(f"field: {field!r} is not a list of this result; allowed: {', '.join(lists) or 'none'}")
            return pd.DataFrame([_flatten(i) if isinstance(i, dict) else {field: i} for i in items])
        flat = {k: v for k, v in _flatten(data).items() if not isinstance(v, (list, tuple))}
        arrays = {k: np.asarray(v) for k, v in flat.items() if isinstance(v, np.ndarray)}
        if not arrays:
            return pd.DataFrame([flat])
        shape = np.broadcast_shapes(*(a.shape for a in arrays.values()))
        columns = {k: (np.broadcast_to(np.asarray(v), shape).ravel() if k in arrays
                       else np.full(int(np.prod(shape)), v, dtype=object if isinstance(v, str) else None))
                   for k, v in flat.items()}
        return pd.DataFrame(columns)

    def _repr_html_(self) -> str:
        rows: list[tuple[str, Any]] = []
        for key, value in self.to_dict().items():
            if isinstance(getattr(self, key, None), Tabular):  # a nested result: its numbers, dotted
                rows += list(_flatten(value, f"{key}.").items())
            elif isinstance(value, dict):  # config, schedule, assumptions: named, not spelled out
                rows.append((key, f"{len(value)} entries: {', '.join(map(str, list(value)[:6]))}"
                                  + ("…" if len(value) > 6 else "")))
            else:
                rows.append((key, value))
        shown = rows[:_MAX_ROWS]
        body = "".join(f"<tr><td style='text-align:left'>{html.escape(k)}</td>"
                       f"<td style='text-align:right'>{html.escape(_cell(k, v))}</td></tr>" for k, v in shown)
        more = f"<tr><td colspan=2>… {len(rows) - len(shown)} more fields</td></tr>" if len(rows) > len(shown) else ""
        return (f"<table><caption style='text-align:left'><b>{html.escape(type(self).__name__)}</b></caption>"
                f"<thead><tr><th>field</th><th>value</th></tr></thead><tbody>{body}{more}</tbody></table>")
