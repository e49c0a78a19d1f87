"""The raw-sample file of the implementation runs, read into per-case measurements."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from costmodel.validation.implementations.grids import Case

RAW = Path(__file__).parent / "data" / "impls-raw.json"
# every committed run, in order: 2026-12-02 01:50 UTC (calibration reps 0, 1 without decodes, held-out
# prefill, Nsight Compute) and 04:42 UTC (every decode of both grids, reps 2, 3; calibration prefill
# reps 2, 3, with the d = 256 shapes). Rep numbers are unique across runs.
# 2026-12-02 12:44 UTC (impls-raw-4.json): every decode of both grids three more times, reps 4-6, interleaved,
# and the held-out prefill twice more, reps 4, 5 (the isolated decodes' host time moved up to 2x between reps 2, 3)
# 2026-12-02 15:44 UTC (impls-raw-5.json): the calibration grid's block-count sweep (grids.block_sweep_shapes),
# new shapes, as reps 2, 3 so that the two-calibration spread includes them; every decode of both grids twice
# more, reps 7, 8. "Rep numbers are unique across runs" holds per case.
RAWS = (RAW, RAW.parent / "impls-raw-2.json", RAW.parent / "impls-raw-4.json", RAW.parent / "impls-raw-5.json")
# Nsight Compute of the calibration grid's fused fwd+bwd calls (2026-12-02 05:59 UTC, impls11c: gpu_run
# --phases none --ncu-set calibration-bwd): the backward's DRAM bytes are fitted on these; no timed records
BWD_NCU = RAW.parent / "impls-raw-3.json"
# kernels of a case's Nsight Compute window that are not the op: torch's own set-up of leaf grads
# (none expected), kept here so a change in torch shows up as an unmatched name, not a wrong sum
IGNORED_KERNELS = ()


@dataclass
class Measured:
    case: Case
    rep: int
    time_s: float  # median CUDA-event time of one isolated call
    back_to_back_s: float | None  # median per-call time with calls issued back to back
    samples: int
    rel_error: float | None


@dataclass
class Profiled:
    case: Case
    dram_bytes: float
    gpu_time_s: float
    kernels: list[dict]


def load(path: str | Path | tuple | list = RAWS) -> dict:
    """One raw file, or several merged: records and Nsight Compute entries concatenated, ``meta`` the
    first file's with every file's under ``runs``."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    files = [json.loads(Path(p).read_text()) for p in paths]
    if len(files) == 1:
        return files[0]
    return {"meta": {**files[0]["meta"], "runs": [f["meta"] for f in files]},
            "records": [r for f in files for r in f["records"]], "ncu": [e for f in files for e in f.get("ncu") or []]}


def measurements(data: dict) -> list[Measured]:
    out = []
    for r in data["records"]:
        if "error" in r or not r.get("samples_s"):
            continue
        b2b = r.get("back_to_back_s") or []
        out.append(Measured(Case.model_validate(r["case"]), r["rep"], statistics.median(r["samples_s"]),
                            statistics.median(b2b) if b2b else None, len(r["samples_s"]),
                            r.get("rel_error_vs_float64")))
    return out


def per_case(ms: list[Measured]) -> list[Measured]:
    """One measurement a case: the median over its repeats of their median times (mean of two)."""
    by: dict = {}
    for m in ms:
        by.setdefault(m.case.key(), []).append(m)
    out = []
    for group in by.values():
        b2b = [m.back_to_back_s for m in group if m.back_to_back_s is not None]
        out.append(Measured(group[0].case, min(m.rep for m in group), statistics.median(m.time_s for m in group),
                            statistics.median(b2b) if b2b else None, sum(m.samples for m in group),
                            group[0].rel_error))
    return out


def failures(data: dict) -> list[tuple[Case, str]]:
    return [(Case.model_validate(r["case"]), r["error"]) for r in data["records"] if "error" in r and r["rep"] == 0]


def profiles(data: dict, csv_path: str | Path | None = RAW.parent / "ncu.csv") -> list[Profiled]:
    """Per profiled case, its kernels; re-split from Nsight Compute's CSV where it is there (the
    runner of 2026-12-02 stored kernel durations unscaled: its unit table lacked "ns")."""
    from costmodel.validation.implementations import ncu

    entries = data.get("ncu") or []
    if csv_path is not None and Path(csv_path).is_file():
        groups = ncu.split_cases(ncu.parse_csv(Path(csv_path).read_text()), len(entries))
        entries = [{"case": e["case"], "kernels": g} for e, g in zip(entries, groups)]
    out = []
    for e in entries:
        ks = e.get("kernels")
        if not ks:
            continue
        ks = [k for k in ks if not any(n in k["name"] for n in IGNORED_KERNELS)]
        dram = sum((k["dram_read_bytes"] or 0) + (k["dram_write_bytes"] or 0) for k in ks)
        gpu = sum(k["time_s"] or 0 for k in ks)
        out.append(Profiled(Case.model_validate(e["case"]), dram, gpu, ks))
    return out


def config_of(case: Case) -> dict:
    s = case.shape
    return dict(batch=s.batch, heads=s.heads, kv_heads=s.kv_heads, seq_len=s.seq_len, kv_len=s.kv_len,
                head_dim=s.head_dim, dtype=s.dtype, causal=s.causal)
