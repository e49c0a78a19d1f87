"""Validation results: the file format, predicted-vs-measured errors, and the project's targets.

``ioaware validate`` runs attention kernels on a GPU and writes one JSON object: ``meta``
(what ran where, with which versions) and ``records``, one per (implementation, shape),
each holding the FLOPs the simulator counts, what was measured (CUDA-event time, DRAM
bytes from Nsight Compute) and what the simulator predicted. The pydantic models below are
that format's schema and the only place it is checked.

The comparison is the relative error of the prediction, ``(predicted - measured) /
measured``: positive where the model is pessimistic (predicts slower or more bytes),
negative where it is optimistic.

Pure Python and numpy: reading and comparing results needs no GPU.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import re
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

# Implementations a record can hold. "ours" are the Numba kernels in kernels/; "torch"
# are torch.nn.functional.scaled_dot_product_attention forced onto one backend.
OUR_FAMILIES = (
    "standard_fwd", "flash2_fwd", "flash1_fwd", "flash_bwd", "decode", "flash_decoding", "window_fwd",
)
TORCH_FAMILIES = ("torch_sdpa_flash", "torch_sdpa_cudnn", "torch_sdpa_efficient", "torch_sdpa_math")
FAMILIES = OUR_FAMILIES + TORCH_FAMILIES

# The project's accuracy targets (set by the lead for the validation milestone). Each is
# (name, families it covers, metric, threshold on |relative error|). A family without
# records is reported as "no data", neither pass nor fail.
TARGETS = (
    ("ours: median |time error| <= 10%", OUR_FAMILIES, "median_abs_time_error", 0.10),
    ("ours: worst |time error| <= 30%", OUR_FAMILIES, "worst_abs_time_error", 0.30),
    ("DRAM bytes within 5% (standard and FA2 forward)", ("standard_fwd", "flash2_fwd"), "worst_abs_bytes_error", 0.05),
    ("torch flash / cuDNN SDPA: median |time error| <= 15%", ("torch_sdpa_flash", "torch_sdpa_cudnn"),
     "median_abs_time_error", 0.15),
)


def numba_fp32_efficiency(spec, blocks_per_sm: float | None = None, dram_fraction: float = 1.0) -> float | None:
    """The FP32 efficiency our Numba kernels are predicted with: the rate the register-tiled
    matmul microkernel (``kernels.matmul``) attained during calibration over the spec's FP32
    peak. None where the spec holds no such measurement (a datasheet spec): predictions
    then stay at the FP32 peak, a lower bound on time.

    The tiled rate is what the attention kernels' inner product loop runs at with nothing
    else in it (same tiles, threads, loads and barriers), measured on a plain matmul; no
    attention timing goes into it. ``blocks_per_sm``: the kernel's resident warps per SM
    in units of the microkernel's 128-thread blocks; where calibration also measured the
    rate at 1, 2, ... resident blocks (``by_blocks_per_sm``), the full-grid rate is scaled
    by how much slower that occupancy ran than the sweep's largest, in proportion to
    ``dram_fraction``, the share of the kernel's global reads that come from DRAM.
    """
    info = (spec.calibration or {}).get("numba_tiled_fp32_flops_per_s")
    peak = spec.peak_flops_per_s.get("fp32")
    if not info or not peak:
        return None
    value = float(info["value"])
    by_occ = {float(k): float(v) for k, v in (info.get("by_blocks_per_sm") or {}).items()}
    if blocks_per_sm is not None and by_occ:
        # The sweep's grids of exactly k blocks per SM stream A from DRAM (one wave, no tile
        # reuse in L2), and its rate grows about linearly with k (H200: 5.9, 10.2, 14.3, 18.2
        # TFLOP/s at k = 1..4): a block's load phase stalls on memory and only other resident
        # blocks fill it. Only the ratio rate_k / rate_kmax is used (the full grid's rate is
        # ``value``), and only for the share of a kernel's reads that come from DRAM as the
        # sweep's do. That weighting is an assumption, not a measurement: the sweep was not
        # repeated with L2-resident operands. What supports it: FA1 (one block per head, every
        # block streaming its own K/V from DRAM) ran at 7.9 TFLOP/s, near the sweep's one-block
        # rate, while FA2 at d = 128 (two blocks per SM, K/V shared through L2) ran at 20,
        # twice the sweep's two-block rate. Linear between the measured k, clamped at both ends.
        ks = sorted(by_occ)
        rate_k = float(np.interp(blocks_per_sm, ks, [by_occ[k] for k in ks]))
        f = min(1.0, max(0.0, float(dram_fraction)))
        value *= (1.0 - f) + f * rate_k / by_occ[ks[-1]]
    return min(1.0, value / float(peak))


# ---------------------------------------------------------------- the file format


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Meta(_Strict):
    """Where and how the results were obtained."""

    command: str
    gpu: str
    spec: str  # calibrated spec name or path the predictions used
    driver: str
    cuda_runtime: str
    numba: str
    numba_cuda: str
    numpy: str
    torch: str | None = None
    date: _dt.date
    ncu: bool
    notes: list[str] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list)  # configurations left out (budget, errors)


class Config(_Strict):
    """One attention shape. Tensors are (batch, heads, seq_len, head_dim); K/V have kv_heads heads."""

    batch: int = Field(gt=0)
    heads: int = Field(gt=0)
    kv_heads: int = Field(gt=0)
    seq_len: int = Field(gt=0)
    kv_len: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    dtype: Literal["fp32", "fp16", "bf16"]
    causal: bool
    block_r: int | None = Field(default=None, gt=0)
    block_c: int | None = Field(default=None, gt=0)
    window: int | None = Field(default=None, gt=0)
    splits: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _grouped_heads(self) -> "Config":
        if self.heads % self.kv_heads:
            raise ValueError(f"heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads})")
        return self

    def label(self) -> str:
        """A short human name: 'B4 H16 N2048 d64 fp32 causal'."""
        parts = [f"B{self.batch}", f"H{self.heads}"]
        if self.kv_heads != self.heads:
            parts.append(f"Hkv{self.kv_heads}")
        parts.append(f"N{self.seq_len}" if self.kv_len == self.seq_len else f"N{self.seq_len}/{self.kv_len}")
        parts += [f"d{self.head_dim}", self.dtype]
        if self.causal:
            parts.append("causal")
        for key, short in (("block_r", "Br"), ("block_c", "Bc"), ("window", "w"), ("splits", "splits")):
            value = getattr(self, key)
            if value is not None:
                parts.append(f"{short}{value}")
        return " ".join(parts)


class NcuKernel(_Strict):
    """One kernel launch as Nsight Compute saw it (caches flushed before it, clocks not locked)."""

    name: str
    dram_read_bytes: float = Field(ge=0)
    dram_write_bytes: float = Field(ge=0)
    time_s: float = Field(ge=0)


class Measured(_Strict):
    time_s: float = Field(gt=0)  # median of time_samples_s
    time_samples_s: list[float] = Field(min_length=1)
    dram_read_bytes: float | None = Field(default=None, ge=0)
    dram_write_bytes: float | None = Field(default=None, ge=0)
    ncu_kernels: list[NcuKernel] | None = None
    rel_error_vs_reference: float | None = Field(default=None, ge=0)

    @property
    def dram_bytes(self) -> float | None:
        """DRAM bytes read + written, where Nsight Compute measured them."""
        if self.dram_read_bytes is None or self.dram_write_bytes is None:
            return None
        return self.dram_read_bytes + self.dram_write_bytes


class PredictedKernel(_Strict):
    name: str
    time_s: float = Field(ge=0)  # launch_s included
    hbm_bytes: float = Field(ge=0)
    bound: str
    launch_s: float = Field(default=0.0, ge=0)  # the launch cost in time_s (host side: not in a GPU timer)


class Predicted(_Strict):
    time_s: float = Field(gt=0)
    hbm_bytes: float = Field(ge=0)
    global_bytes: float = Field(ge=0)
    bound: str
    kernels: list[PredictedKernel] = Field(default_factory=list)


class Record(_Strict):
    family: str
    source: Literal["ours", "torch"]
    config: Config
    flops: float = Field(ge=0)
    measured: Measured
    predicted: Predicted

    @model_validator(mode="after")
    def _family_matches_source(self) -> "Record":
        if self.family not in FAMILIES:
            raise ValueError(f"family: unknown {self.family!r}; allowed: {', '.join(FAMILIES)}")
        expected = "torch" if self.family in TORCH_FAMILIES else "ours"
        if self.source != expected:
            raise ValueError(f"source: family {self.family!r} is {expected!r}, got {self.source!r}")
        return self


class Results(_Strict):
    meta: Meta
    records: list[Record]


class ResultsError(ValueError):
    """A results file that could not be read or did not validate; the message names the field."""


def parse_results(data: dict, origin: str = "results") -> Results:
    """Validate a results mapping; errors name the field path (``records.3.measured.time_s``)."""
    try:
        return Results.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "results"
            given = err.get("input")
            shown = "" if isinstance(given, (dict, list)) else f" (got {given!r})"
            lines.append(f"{loc}: {err['msg']}{shown}")
        raise ResultsError(f"{origin}: invalid results file: " + "; ".join(lines)) from None


def load_results(path: str | Path) -> Results:
    """Read and validate a results JSON file."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ResultsError(f"{path}: not a text file (not UTF-8); a results JSON file is accepted") from None
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ResultsError(f"{path}: a results file holds one JSON object, got {type(data).__name__}")
    return parse_results(data, str(path))


def merge_results(parts: list[Results]) -> Results:
    """One results set from several runs of one GPU (a sweep split over device calls).

    Records are concatenated in order, a configuration measured in several parts keeping
    its last measurement; the first part's meta is kept, with every part's command, notes
    and skipped configurations appended. Parts from different GPUs or
    specs are refused: their errors would not be comparable.
    """
    if not parts:
        raise ResultsError("merge: no results to merge")
    first = parts[0].meta
    for i, part in enumerate(parts[1:], start=1):
        for key in ("gpu", "spec"):
            if getattr(part.meta, key) != getattr(first, key):
                raise ResultsError(f"merge: part {i} has meta.{key} {getattr(part.meta, key)!r}, "
                                   f"part 0 {getattr(first, key)!r}; only results of one GPU and spec merge")
    if len(parts) == 1:
        return parts[0]
    notes = [f"merged from {len(parts)} runs: " + " | ".join(p.meta.command for p in parts)]
    for part in parts:
        notes += part.meta.notes
    latest: dict[str, Record] = {}
    for part in parts:
        for r in part.records:
            key = f"{r.family} {r.config.label()}"
            latest.pop(key, None)  # re-inserted: the order is that of the last measurement
            latest[key] = r
    skipped = list(dict.fromkeys(s for p in parts for s in p.meta.skipped if s.split(":", 1)[0] not in latest))
    meta = first.model_copy(update={"notes": notes, "skipped": skipped, "ncu": any(p.meta.ncu for p in parts)})
    return Results(meta=meta, records=list(latest.values()))


# ---------------------------------------------------------------- comparison


def relative_error(predicted, measured):
    """(predicted - measured) / measured; broadcasts over arrays."""
    predicted = np.asarray(predicted, dtype=float)
    measured = np.asarray(measured, dtype=float)
    out = (predicted - measured) / measured
    return float(out) if out.ndim == 0 else out


class ComparisonRow(_Strict):
    """One record's prediction beside its measurement."""

    family: str
    source: str
    config: str
    flops: float
    predicted_time_s: float
    measured_time_s: float
    time_error: float
    predicted_hbm_bytes: float
    measured_dram_bytes: float | None
    bytes_error: float | None
    bound: str
    # GPU time alone: Nsight Compute's summed kernel durations, against the predicted kernels'
    # times less their launch cost (None where ncu did not run or no kernel names a launch)
    predicted_gpu_time_s: float | None = None
    measured_gpu_time_s: float | None = None
    gpu_time_error: float | None = None


def _gpu_times(r: "Record") -> tuple[float | None, float | None]:
    ks = r.measured.ncu_kernels
    if not ks or not r.predicted.kernels:
        return None, None
    predicted = sum(k.time_s - k.launch_s for k in r.predicted.kernels)
    measured = sum(k.time_s for k in ks)
    return (predicted, measured) if predicted > 0 and measured > 0 else (None, None)


def compare(results: Results) -> list[ComparisonRow]:
    """Per record: the time error, and the DRAM-bytes error where Nsight Compute measured bytes."""
    rows = []
    for r in results.records:
        dram = r.measured.dram_bytes
        rows.append(ComparisonRow(
            family=r.family, source=r.source, config=r.config.label(), flops=r.flops,
            predicted_time_s=r.predicted.time_s, measured_time_s=r.measured.time_s,
            time_error=relative_error(r.predicted.time_s, r.measured.time_s),
            predicted_hbm_bytes=r.predicted.hbm_bytes, measured_dram_bytes=dram,
            bytes_error=None if not dram else relative_error(r.predicted.hbm_bytes, dram),
            bound=r.predicted.bound,
        ))
        gp, gm = _gpu_times(r)
        if gp is not None:
            rows[-1] = rows[-1].model_copy(update={"predicted_gpu_time_s": gp, "measured_gpu_time_s": gm,
                                                   "gpu_time_error": relative_error(gp, gm)})
    return rows


class FamilySummary(_Strict):
    family: str
    source: str
    n: int
    median_abs_time_error: float
    worst_abs_time_error: float
    n_bytes: int  # records with measured DRAM bytes
    median_abs_bytes_error: float | None
    worst_abs_bytes_error: float | None
    n_gpu_time: int = 0  # records with Nsight Compute kernel durations
    median_abs_gpu_time_error: float | None = None
    worst_abs_gpu_time_error: float | None = None


def summarize(results: Results) -> dict[str, FamilySummary]:
    """Per family (in FAMILIES order): count, median and worst |time error|, and the same for bytes."""
    rows = compare(results)
    out: dict[str, FamilySummary] = {}
    for family in sorted({r.family for r in rows}, key=FAMILIES.index):
        mine = [r for r in rows if r.family == family]
        t = np.abs([r.time_error for r in mine])
        b = np.abs([r.bytes_error for r in mine if r.bytes_error is not None])
        g = np.abs([r.gpu_time_error for r in mine if r.gpu_time_error is not None])
        out[family] = FamilySummary(
            family=family, source=mine[0].source, n=len(mine),
            median_abs_time_error=float(np.median(t)), worst_abs_time_error=float(t.max()),
            n_bytes=len(b),
            median_abs_bytes_error=float(np.median(b)) if len(b) else None,
            worst_abs_bytes_error=float(b.max()) if len(b) else None,
            n_gpu_time=len(g), median_abs_gpu_time_error=float(np.median(g)) if len(g) else None,
            worst_abs_gpu_time_error=float(g.max()) if len(g) else None,
        )
    return out


class TargetCheck(_Strict):
    """One target applied to one family: the number, the threshold, and the verdict."""

    target: str
    family: str
    metric: str
    threshold: float
    value: float | None
    passed: bool | None  # None: no data for this family


def targets(summary: dict[str, FamilySummary]) -> list[TargetCheck]:
    """Check each family against each target that covers it (see TARGETS)."""
    checks = []
    for name, families, metric, threshold in TARGETS:
        for family in families:
            s = summary.get(family)
            value = None if s is None else getattr(s, metric)
            checks.append(TargetCheck(
                target=name, family=family, metric=metric, threshold=threshold, value=value,
                passed=None if value is None else bool(value <= threshold),
            ))
    return checks


# ---------------------------------------------------------------- Nsight Compute output

# Unit words Nsight Compute prints, to bytes and seconds. "--page raw" spells time units
# out (nsecond); the details page abbreviates (ns); either may scale bytes (Kbyte).
_UNIT_SCALE = {
    "byte": 1.0, "kbyte": 1e3, "mbyte": 1e6, "gbyte": 1e9, "tbyte": 1e12,
    "kibyte": 2.0**10, "mibyte": 2.0**20, "gibyte": 2.0**30,
    "nsecond": 1e-9, "usecond": 1e-6, "msecond": 1e-3, "second": 1.0,
    "ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0,
}
NCU_METRICS = ("dram__bytes_read.sum", "dram__bytes_write.sum", "gpu__time_duration.sum")


def _ncu_number(text: str, unit: str, metric: str) -> float:
    value = float(text.replace(",", ""))
    key = unit.strip().lower()
    if key not in _UNIT_SCALE:
        raise ValueError(f"ncu: unknown unit {unit!r} for {metric}")
    return value * _UNIT_SCALE[key]


def parse_ncu_csv(text: str) -> list[NcuKernel]:
    """Kernels from ``ncu --csv`` output, in launch order, with DRAM bytes and duration.

    Reads both layouts: ``--page raw`` (one row per kernel, one column per metric, a
    second row of units) and the details page (one row per metric, with "Metric Name",
    "Metric Unit", "Metric Value"). Lines before the CSV header (``==PROF==`` progress,
    the program's own output) are skipped. Values may carry thousands separators.
    """
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith('"ID",')), None)
    if start is None:
        raise ValueError("ncu: no CSV header (a line starting with \"ID\",) in the output")
    body = [line for line in lines[start:] if line.startswith('"')]
    rows = list(csv.reader(io.StringIO("\n".join(body))))
    header = rows[0]
    kernels: dict[str, dict] = {}

    def entry(row: list[str]) -> dict:
        rec = dict(zip(header, row))
        return kernels.setdefault(rec["ID"], {"name": rec["Kernel Name"]})

    if "Metric Name" in header:
        for row in rows[1:]:
            rec = dict(zip(header, row))
            if rec.get("Metric Name") in NCU_METRICS:
                entry(row)[rec["Metric Name"]] = _ncu_number(rec["Metric Value"], rec["Metric Unit"], rec["Metric Name"])
    else:
        missing = [m for m in NCU_METRICS if m not in header]
        if missing:
            raise ValueError(f"ncu: CSV lacks the metric columns {', '.join(missing)}")
        units = dict(zip(header, rows[1])) if len(rows) > 1 and rows[1][0] == "" else {}
        for row in rows[1 + bool(units):]:
            rec = dict(zip(header, row))
            k = entry(row)
            for m in NCU_METRICS:
                k[m] = _ncu_number(rec[m], units.get(m, "byte" if "bytes" in m else "nsecond"), m)
    out = []
    for kid, k in kernels.items():
        missing = [m for m in NCU_METRICS if m not in k]
        if missing:
            raise ValueError(f"ncu: kernel {kid} ({k['name']}) has no value for {', '.join(missing)}")
        out.append(NcuKernel(name=k["name"], dram_read_bytes=k["dram__bytes_read.sum"],
                             dram_write_bytes=k["dram__bytes_write.sum"], time_s=k["gpu__time_duration.sum"]))
    return out


def short_kernel_name(name: str) -> str:
    """A readable kernel name: ncu prints Numba kernels mangled (``_ZN8__main__10copy_kernel...``)."""
    name = name.strip()
    if not name.startswith("_Z"):  # demangled: "cudapy::kernels::flash::fwd[abi:v1](Array<...>)"
        return name.split("(")[0].split("[")[0].split("<")[0].split("::")[-1] or name
    # Itanium mangling: length-prefixed identifiers; the kernel is the last one before the arguments.
    parts, i = [], 2 + (name[2] == "N")
    while i < len(name):
        m = re.match(r"(\d+)", name[i:])
        if not m:
            break
        n = int(m.group(1))
        i += len(m.group(1))
        parts.append(name[i:i + n])
        i += n
    idents = [p for p in parts if p and not p.startswith("_") and p.isidentifier()]
    return idents[-1] if idents else name
