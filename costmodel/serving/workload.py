"""The requests a server sees: arrival times and prompt / output lengths.

A length distribution is written as a DIST string:

    256                 every request 256 tokens
    uniform:A:B         integers uniform on [A, B] (both included)
    lognormal:MEAN:SIGMA  lognormal with mean MEAN tokens and log-space sigma SIGMA, rounded,
                        at least 1 (mu = ln MEAN - SIGMA^2 / 2, so the mean is MEAN)
    PATH                a file of lengths: one number a line, or a CSV / JSON-lines trace whose
                        column (``prompt_len`` or ``output_len``) is resampled with replacement

Arrivals are a Poisson process at ``rate_per_s`` (exponential gaps, seeded), or a trace file with
``arrival_s``, ``prompt_len`` and ``output_len`` per request (CSV with that header, or JSON lines).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TRACE_COLUMNS = ("arrival_s", "prompt_len", "output_len")


@dataclass(frozen=True)
class Workload:
    """Requests sorted by arrival: seconds and token counts, one entry each."""

    arrival_s: np.ndarray  # (n,) float64, non-decreasing
    prompt_len: np.ndarray  # (n,) int64 >= 1
    output_len: np.ndarray  # (n,) int64 >= 1
    source: str = ""  # how it was made, for the report

    def __len__(self) -> int:
        return len(self.arrival_s)


# ---------------------------------------------------------------- DIST strings


def _number(field: str, text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{field}: {text!r} in the DIST is not a number; {what}") from None
    if not math.isfinite(value):
        raise ValueError(f"{field}: {text!r} in the DIST is not finite; {what}")
    return value


_DIST_HELP = "a DIST is a number, uniform:A:B, lognormal:MEAN:SIGMA or a file of lengths"


def parse_dist(text: str, field: str = "length"):
    """A DIST string -> a sampler ``f(rng, n) -> int64 array``; ValueError naming ``field`` if bad."""
    text = str(text).strip()
    if not text:
        raise ValueError(f"{field}: empty; {_DIST_HELP}")
    head, _, rest = text.partition(":")
    if head == "uniform":
        parts = rest.split(":")
        if len(parts) != 2:
            raise ValueError(f"{field}: {text!r} needs two bounds, uniform:A:B")
        lo, hi = (_number(field, p, "uniform:A:B takes whole numbers 1 <= A <= B") for p in parts)
        if lo != int(lo) or hi != int(hi) or not 1 <= lo <= hi:
            raise ValueError(f"{field}: {text!r}: uniform:A:B takes whole numbers 1 <= A <= B")
        return lambda rng, n: rng.integers(int(lo), int(hi) + 1, size=n, dtype=np.int64)
    if head == "lognormal":
        parts = rest.split(":")
        if len(parts) != 2:
            raise ValueError(f"{field}: {text!r} needs a mean and a sigma, lognormal:MEAN:SIGMA")
        mean, sigma = (_number(field, p, "lognormal:MEAN:SIGMA takes MEAN >= 1 tokens, SIGMA >= 0") for p in parts)
        if mean < 1 or sigma < 0:
            raise ValueError(f"{field}: {text!r}: lognormal:MEAN:SIGMA takes MEAN >= 1 tokens and SIGMA >= 0")
        mu = math.log(mean) - sigma * sigma / 2  # E[exp(N(mu, s^2))] = exp(mu + s^2/2) = MEAN
        return lambda rng, n: np.maximum(np.rint(rng.lognormal(mu, sigma, size=n)), 1).astype(np.int64)
    path = Path(text)
    if path.is_file():
        values = _lengths_from_file(path, field)
        return lambda rng, n: rng.choice(values, size=n, replace=True)
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{field}: {text!r} is not a number, a known form or an existing file; {_DIST_HELP}") from None
    if not math.isfinite(value) or value != int(value) or value < 1:
        raise ValueError(f"{field}: {text!r}: a fixed length is a whole number >= 1")
    return lambda rng, n: np.full(n, int(value), dtype=np.int64)


def _lengths_from_file(path: Path, field: str) -> np.ndarray:
    """A column of lengths: the ``field`` column of a trace (``prompt_len`` / ``output_len``), or
    the only column of a file of numbers."""
    column = field if field in TRACE_COLUMNS else None
    rows = _read_rows(path)
    if rows and isinstance(rows[0], dict):
        if column is None or column not in rows[0]:
            raise ValueError(f"{field}: {path} has columns {sorted(rows[0])}; a length file needs {field!r}")
        raw = [r[column] for r in rows]
    else:
        raw = [r[0] for r in rows]
    values = np.array([_length(field, path, i, v) for i, v in enumerate(raw)], dtype=np.int64)
    if values.size == 0:
        raise ValueError(f"{field}: {path} holds no lengths")
    return values


def _length(field: str, path: Path, row: int, value) -> int:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{field}: {path} row {row + 1}: {value!r} is not a number") from None
    if not math.isfinite(x) or x != int(x) or x < 1:
        raise ValueError(f"{field}: {path} row {row + 1}: {value!r}; lengths are whole numbers >= 1")
    return int(x)


def _read_rows(path: Path) -> list:
    """CSV with a header (-> dicts), JSON lines (-> dicts), or bare numbers one a line (-> 1-lists)."""
    text = path.read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        return []
    if lines[0].lstrip().startswith("{"):
        try:
            return [json.loads(ln) for ln in lines]
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not JSON lines ({exc})") from None
    first = lines[0].split(",")[0].strip()
    try:
        float(first)
    except ValueError:
        return list(csv.DictReader(lines))
    return [[ln.split(",")[0].strip()] for ln in lines]


# ---------------------------------------------------------------- workloads


def poisson_workload(rate_per_s: float, n_requests: int, prompt_len="512", output_len="128", seed: int = 0,
                     max_seq_len: int | None = None) -> Workload:
    """``n_requests`` Poisson arrivals at ``rate_per_s`` (exponential gaps of mean 1/rate), the first
    after one gap; lengths drawn from the DISTs with ``np.random.default_rng(seed)``. With
    ``max_seq_len`` a prompt is cut to max_seq_len - 1 and the output to what the context leaves
    (a server rejects or truncates such requests; the cut is counted in ``source``)."""
    if not (isinstance(rate_per_s, (int, float)) and math.isfinite(rate_per_s) and rate_per_s > 0):
        raise ValueError(f"rate_per_s: {rate_per_s!r}; a positive finite number of requests per second")
    if not (isinstance(n_requests, (int, np.integer)) and n_requests >= 1):
        raise ValueError(f"n_requests: {n_requests!r}; a whole number >= 1")
    rng = np.random.default_rng(seed)
    draw_p, draw_o = parse_dist(prompt_len, "prompt_len"), parse_dist(output_len, "output_len")
    arrival = np.cumsum(rng.exponential(1.0 / rate_per_s, size=n_requests))
    prompts, outputs = draw_p(rng, n_requests), draw_o(rng, n_requests)
    source = f"poisson rate={rate_per_s}/s n={n_requests} prompt={prompt_len} output={output_len} seed={seed}"
    return _capped(Workload(arrival, prompts, outputs, source), max_seq_len)


def _capped(w: Workload, max_seq_len: int | None) -> Workload:
    if max_seq_len is None:
        return w
    p = np.minimum(w.prompt_len, max_seq_len - 1)
    o = np.minimum(w.output_len, max_seq_len - p)
    cut = int(np.sum((p != w.prompt_len) | (o != w.output_len)))
    return Workload(w.arrival_s, p, o, w.source + (f"; {cut} cut to max_seq_len={max_seq_len}" if cut else ""))


def load_trace(path: str | Path, max_seq_len: int | None = None) -> Workload:
    """A trace file: per request ``arrival_s``, ``prompt_len``, ``output_len`` (CSV with that header,
    or JSON lines); sorted by arrival."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"trace: {path} is not a file")
    rows = _read_rows(path)
    if not rows or not isinstance(rows[0], dict):
        raise ValueError(f"trace: {path} needs a header (CSV) or JSON lines with {', '.join(TRACE_COLUMNS)}")
    missing = [c for c in TRACE_COLUMNS if c not in rows[0]]
    if missing:
        raise ValueError(f"trace: {path} lacks column(s) {', '.join(missing)}; it has {', '.join(sorted(rows[0]))}")
    try:
        arrival = np.array([float(r["arrival_s"]) for r in rows])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"trace: {path}: arrival_s is not a number ({exc})") from None
    if not np.all(np.isfinite(arrival)) or np.any(arrival < 0):
        raise ValueError(f"trace: {path}: arrival_s must be finite and >= 0")
    prompts = np.array([_length("prompt_len", path, i, r["prompt_len"]) for i, r in enumerate(rows)], dtype=np.int64)
    outputs = np.array([_length("output_len", path, i, r["output_len"]) for i, r in enumerate(rows)], dtype=np.int64)
    order = np.argsort(arrival, kind="stable")
    return _capped(Workload(arrival[order], prompts[order], outputs[order], f"trace {path}"), max_seq_len)


def save_trace(w: Workload, path: str | Path) -> Path:
    """Write a workload as a CSV trace that ``load_trace`` reads back."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(TRACE_COLUMNS)
        for a, p, o in zip(w.arrival_s, w.prompt_len, w.output_len):
            out.writerow((repr(float(a)), int(p), int(o)))
    return path


__all__ = ["TRACE_COLUMNS", "Workload", "load_trace", "parse_dist", "poisson_workload", "save_trace"]
