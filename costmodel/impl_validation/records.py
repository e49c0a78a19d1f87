"""The raw-sample file of the implementation runs, read into per-case measurements."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from costmodel.impl_validation.grids import Case

RAW = Path(__file__).parent / "data" / "impls-raw.json"
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


def load(path: str | Path = RAW) -> dict:
    return json.loads(Path(path).read_text())


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


def failures(data: dict) -> list[tuple[Case, str]]:
    return [(Case.model_validate(r["case"]), r["error"]) for r in data["records"] if "error" in r and r["rep"] == 0]


def profiles(data: dict, csv_path: str | Path | None = RAW.parent / "ncu.csv") -> list[Profiled]:
    """Per profiled case, its kernels; re-split from Nsight Compute's CSV where it is there (the
    runner of 2026-12-02 stored kernel durations unscaled: its unit table lacked "ns")."""
    from costmodel.impl_validation import ncu

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
