"""The validation results file: its schema, reading, and merging of several runs.

``ioaware validate`` runs attention kernels on a GPU and writes one JSON object: ``meta``
(what ran where, with which versions) and ``records``, one per (implementation, shape),
each holding the FLOPs the simulator counts, what was measured (CUDA-event time, DRAM
bytes from Nsight Compute) and what the simulator predicted. The pydantic models below are
that format's schema and the only place it is checked.

Pure Python: reading results needs no GPU.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from costmodel.validation.families import FAMILIES, TORCH_FAMILIES
from hardware_specs.yaml_files import field_errors


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


class CaseConfig(_Strict):
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
    def _grouped_heads(self) -> "CaseConfig":
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
    config: CaseConfig
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
        raise ResultsError(f"{origin}: invalid results file: " + field_errors(exc, "results", (dict, list))) from None


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
