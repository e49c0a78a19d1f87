"""Fit torch's register block softmax (``SoftmaxBlockModel``: cunn_SoftMaxForwardReg, rows of 2048 < L with
ceil(L / 1024) < 10) on the softmax rows of the eager-attention op runs (``attn_ops_grids.softmax_grid`` /
``softmax_rows_grid``, split ``fit``, B*H 24 / 96); the grid's ``heldout`` rows (B*H 40) only report.

Linear least squares: each row's time / waves = latency_s + blocks_per_sm * L / rate, the blocks per SM
from the registers Nsight Compute reports (two_block_max_reg_cnt), one rate for two blocks an SM and one
for one.

``fit_softmax_masked``: the extra time of a softmax whose input is causally masked (-inf above the
diagonal), from the ``softmax_causal`` rows (``attn_ops_grids.softmax_causal_grid``): masked elements / rate.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from hardware_specs.op_timing import Fit, SoftmaxBlockModel, SoftmaxMaskedModel
from simulators.memory_ops import forward_softmax_kernel

E = {"bf16": 2, "fp32": 4}


def reg_rows(spec, rows):
    from simulators.memory_ops import softmax_reg_count

    return [r for r in rows if softmax_reg_count(r["L"], E[r["dtype"]]) is not None]


def predict(spec, rows, model: SoftmaxBlockModel) -> np.ndarray:
    from simulators.memory_ops import softmax_block_time

    return np.array([float(softmax_block_time(spec, r["rows"], r["L"], E[r["dtype"]], model)) for r in rows])


def errors(spec, rows, model) -> tuple[float, float]:
    e = np.abs(predict(spec, rows, model) / np.array([r["time_s"] for r in rows]) - 1)
    return float(np.median(e)), float(e.max())


def fit_softmax_block(spec, rows, date: dt.date | None = None, gpu: str = "NVIDIA H200") -> SoftmaxBlockModel | None:
    from simulators.memory_ops import softmax_reg_count

    rows = reg_rows(spec, rows)
    fit = [r for r in rows if r["split"] == "fit"]
    held = [r for r in rows if r["split"] == "heldout"]
    if len(fit) < 3:
        return None
    base = SoftmaxBlockModel(latency_s=0.0, sm_element_rate_per_s=1.0, one_block_element_rate_per_s=1.0)
    a_rows, y = [], []
    for r in fit:
        c = softmax_reg_count(r["L"], E[r["dtype"]])
        bps = 2 if c <= base.two_block_max_reg_cnt else 1
        waves = np.ceil(r["rows"] / (spec.sm_count * bps))
        # relative least squares: each row divided by its measured time
        a_rows.append(np.array([waves, waves * 2 * r["L"] * (bps == 2), waves * r["L"] * (bps == 1)]) / r["time_s"])
        y.append(1.0)
    (lat, inv2, inv1), *_ = np.linalg.lstsq(np.array(a_rows), np.array(y), rcond=None)
    model = SoftmaxBlockModel(latency_s=max(float(lat), 0.0), sm_element_rate_per_s=1.0 / float(inv2),
                              one_block_element_rate_per_s=1.0 / float(inv1))
    fe = errors(spec, fit, model)
    he = errors(spec, held, model) if held else (None, None)
    meas = Fit(method=(f"linear least squares (relative) of time / waves = latency + blocks_per_sm * L / rate (one rate each for 2 and 1 blocks an SM) over "
                       f"the torch.softmax rows torch runs on cunn_SoftMaxForwardReg (bf16 and fp32, L 2304-9216, "
                       f"B*H 24 / 96), CUDA-graph replays (costmodel.validation.attn_ops_run, results/h200/attn_ops/"
                       f"attn_ops_h200.json and attn_ops_h200_2.json); fit median/max |err| {fe[0]:.3f}/{fe[1]:.3f}; "
                       f"held out: B*H 40, L 3000 / 6144"),
               date=date or dt.date(2026, 12, 2), gpu=gpu, fit_points=len(fit), heldout_points=len(held),
               heldout_median_abs_err=he[0], heldout_max_abs_err=he[1])
    return model.model_copy(update={"measured": meas})


def causal_masked(row) -> float:
    """-inf elements of a softmax_causal row: B*H matrices of N x N, the upper triangle above the diagonal."""
    n = row["L"]
    return row["batch"] * n * (n - 1) / 2


def masked_extra(row) -> float:
    """Measured seconds the masked rows took beyond the same rows unmasked (median of the two timings)."""
    return row["time_s"] - float(np.median(row["plain_time_s"]))


def _rate_key(row) -> str:
    """The SoftmaxMaskedModel key of a row: the forward kernel torch runs for it and its dtype."""
    return f"{forward_softmax_kernel(row['L'], E[row['dtype']])}_{row['dtype']}"


def masked_errors(rows, model: SoftmaxMaskedModel) -> tuple[float, float]:
    """Median and worst |err| of (unmasked time measured + masked / rate) against the masked rows' time."""
    e = []
    for r in rows:
        pred = float(np.median(r["plain_time_s"])) + causal_masked(r) / model.masked_element_rate_per_s[_rate_key(r)]
        e.append(abs(pred / r["time_s"] - 1))
    return float(np.median(e)), float(max(e))


def fit_softmax_masked(rows, date: dt.date | None = None, gpu: str = "NVIDIA H200") -> SoftmaxMaskedModel | None:
    """Per (kernel, dtype): extra = masked / rate, least squares relative to each row's masked time, through
    the origin (no masked element, no extra), on the ``fit`` rows; the ``heldout`` rows only report."""
    fit = [r for r in rows if r["split"] == "fit"]
    held = [r for r in rows if r["split"] == "heldout"]
    groups: dict[str, list] = {}
    for r in fit:
        groups.setdefault(_rate_key(r), []).append(r)
    rates = {}
    for key, rs in sorted(groups.items()):
        m = np.array([causal_masked(r) for r in rs]) / np.array([r["time_s"] for r in rs])
        x = np.array([masked_extra(r) for r in rs]) / np.array([r["time_s"] for r in rs])
        inv = float(m @ x / (m @ m))
        if inv > 0:
            rates[key] = 1.0 / inv
    if not rates:
        return None
    model = SoftmaxMaskedModel(masked_element_rate_per_s=rates)
    fe = masked_errors(fit, model)
    held = [r for r in held if _rate_key(r) in rates]
    he = masked_errors(held, model) if held else (None, None)
    meas = Fit(method=("least squares (relative, through the origin) of the extra time of torch.softmax over causally "
                       "masked (B*H, N, N) scores (masked_fill(triu(1), -inf)) against the same rows unmasked, timed "
                       "between two unmasked timings, = masked elements / rate, one rate per kernel (warp: L <= 2048 "
                       "and 8 KiB, block above) and dtype; B*H 24 / 96, N 512-8192, CUDA-graph replays "
                       "(costmodel.validation.attn_ops_run --sections softmax_causal, results/h200/attn_ops/"
                       f"attn_ops_h200_4.json); fit median/max |err| of the masked time {fe[0]:.3f}/{fe[1]:.3f}; held "
                       "out: B*H 40, N 1536 / 3000 / 6144"),
               date=date or dt.date(2026, 12, 3), gpu=gpu, fit_points=len(fit), heldout_points=len(held),
               heldout_median_abs_err=he[0], heldout_max_abs_err=he[1])
    return model.model_copy(update={"measured": meas})


__all__ = ["causal_masked", "errors", "fit_softmax_block", "fit_softmax_masked", "masked_errors", "masked_extra",
           "predict", "reg_rows"]
