"""Predicted against measured: relative errors by implementation and pass, for time and DRAM bytes.

Relative error = (predicted - measured) / measured, as in costmodel/validation.py. Time is the
isolated call's CUDA-event median; DRAM bytes are Nsight Compute's read + write over the call's
kernels, predicted as those counters see them (ncu_view.py). Targets (issue 11): time median |err| <= 5 %, worst <= 15 %; DRAM median <= 3 %, worst <= 10 %.
"""

from __future__ import annotations

import statistics

from costmodel.validation.implementations.ncu_view import DirtyL2, kernel_view
from costmodel.validation.implementations.records import Measured, Profiled, config_of
from simulators import simulate_attention

TARGETS = {"time_median": 0.05, "time_worst": 0.15, "dram_median": 0.03, "dram_worst": 0.10}


def predict(spec, case):
    return simulate_attention(spec, case.impl, pass_=case.pass_, **config_of(case))


def time_rows(spec, measured: list[Measured]) -> list[dict]:
    rows = []
    for m in measured:
        r = predict(spec, m.case)
        rows.append({"key": m.case.key(), "impl": m.case.impl, "pass": m.case.pass_, "label": m.case.shape.label(),
                     "measured_s": m.time_s, "back_to_back_s": m.back_to_back_s, "predicted_s": r.time_s,
                     "predicted_gpu_s": r.gpu_time_s, "bound": r.bound,
                     "rel_error": r.time_s / m.time_s - 1})
    return rows


def dram_rows(spec, profiled: list[Profiled], dirty: DirtyL2 | None = None) -> list[dict]:
    rows = []
    for p in profiled:
        r = predict(spec, p.case)
        nbytes, gpu_s = kernel_view(p.case.impl, r, dirty)  # as Nsight Compute counts (ncu_view.py)
        rows.append({"key": p.case.key(), "impl": p.case.impl, "pass": p.case.pass_, "label": p.case.shape.label(),
                     "measured_bytes": p.dram_bytes, "predicted_bytes": nbytes,
                     "measured_gpu_s": p.gpu_time_s, "predicted_gpu_s": gpu_s,
                     "rel_error": nbytes / p.dram_bytes - 1 if p.dram_bytes else None,
                     "gpu_time_rel_error": gpu_s / p.gpu_time_s - 1 if p.gpu_time_s else None})
    return rows


def summarize(rows: list[dict], key: str = "rel_error") -> dict:
    """{(impl, pass): {n, median_abs, worst_abs, worst_label}}."""
    out = {}
    for impl, pass_ in sorted({(r["impl"], r["pass"]) for r in rows}):
        errs = [(abs(r[key]), r["label"]) for r in rows if r["impl"] == impl and r["pass"] == pass_
                and r[key] is not None]
        if errs:
            worst = max(errs)
            out[f"{impl} {pass_}"] = {"n": len(errs), "median_abs": statistics.median(e for e, _ in errs),
                                      "worst_abs": worst[0], "worst_label": worst[1]}
    return out


def table(summary: dict, title: str) -> str:
    lines = [f"| {title} | n | median \\|err\\| | worst \\|err\\| (where) |", "| --- | --- | --- | --- |"]
    for name, s in summary.items():
        lines.append(f"| {name} | {s['n']} | {100 * s['median_abs']:.1f} % | {100 * s['worst_abs']:.1f} % "
                     f"({s['worst_label']}) |")
    return "\n".join(lines)
