"""Fit the cuBLAS model's strided-batched terms (``GemmModel.batched_write_Bps``, ``batched_tile_s``) on the
eager-attention bmm grid (``attn_ops_grids.bmm_grid``, split ``fit``; its ``heldout`` points only report).

Grid search of the two parameters minimizing the mean squared log error of ``gemm_time`` against the
measured CUDA-graph times, every other GEMM parameter held at the projection lattice's fit.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from costmodel.validation.step_fit import grid_search
from hardware_specs.op_timing import Fit, GemmModel


def batched_pred(spec, rows, model: GemmModel) -> np.ndarray:
    from simulators.matmul import gemm_time

    m, n, k, b = (np.array([r[x] for r in rows], dtype=float) for x in ("m", "n", "k", "batch"))
    return np.asarray(gemm_time(spec, m, n, k, "bf16", batch=b, model=model))


def batched_errors(spec, rows, model: GemmModel) -> tuple[float, float]:
    """(median, max) |pred / measured - 1| over ``rows``."""
    e = np.abs(batched_pred(spec, rows, model) / np.array([r["time_s"] for r in rows]) - 1)
    return float(np.median(e)), float(e.max())


def fit_batched(spec, rows, model: GemmModel, date: dt.date | None = None, gpu: str = "NVIDIA H200") -> GemmModel:
    fit = [r for r in rows if r["split"] == "fit"]
    held = [r for r in rows if r["split"] == "heldout"]
    if not fit:
        return model
    m = grid_search(model, "batched_write_Bps", np.linspace(2.0e12, 5.0e12, 61), "batched_tile_s",
                    np.linspace(0.0, 3e-6, 31), lambda m_: batched_pred(spec, fit, m_), [r["time_s"] for r in fit])
    fe = batched_errors(spec, fit, m)
    he = batched_errors(spec, held, m) if held else (None, None)
    meas_ = Fit(method=(f"grid search (write 2-5 TB/s x tile 0-3 us), min mean squared log error over the "
                        f"strided-batched bf16 torch.matmul calls (S = Q K^T, O = P V; B*H 24 / 96, N 512-8192, "
                        f"d 64-256), CUDA-graph replays (costmodel.validation.attn_ops_run, "
                        f"results/h200/attn_ops/attn_ops_h200.json); fit median/max |err| "
                        f"{fe[0]:.3f}/{fe[1]:.3f}; held out: B*H 40, N 1536/3000/6144"),
                date=date or dt.date(2026, 12, 2), gpu=gpu, fit_points=len(fit), heldout_points=len(held),
                heldout_median_abs_err=he[0], heldout_max_abs_err=he[1])
    return m.model_copy(update={"batched_measured": meas_})


__all__ = ["batched_errors", "batched_pred", "fit_batched"]
