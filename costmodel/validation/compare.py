"""Predicted against measured: relative errors per record, summaries per family, and the targets.

The comparison is the relative error of the prediction, ``(predicted - measured) /
measured``: positive where the model is pessimistic (predicts slower or more bytes),
negative where it is optimistic.
"""

from __future__ import annotations

import numpy as np

from costmodel.validation.families import FAMILIES, OUR_FAMILIES
from costmodel.validation.schema import Record, Results, _Strict


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
