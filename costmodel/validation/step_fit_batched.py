"""Fit the cuBLAS model's strided-batched terms (``GemmModel.batched_write_Bps``, ``batched_tile_s``) on the
eager-attention bmm grid (``attn_ops_grids.bmm_grid``, split ``fit``; its ``heldout`` points only report),
and ``batched_unaligned_write_Bps`` on the pitch grid (``attn_ops_grids.bmm_pitch_grid``).

Grid search of the two parameters minimizing the mean squared log error of ``gemm_time`` against the
measured CUDA-graph times, every other GEMM parameter held at the projection lattice's fit.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from costmodel.validation.attn_ops_grids import BMM_N
from costmodel.validation.step_fit import grid_search
from hardware_specs.op_timing import Fit, GemmModel
from simulators.matmul import SECTOR_BYTES, gemm_time


def batched_pred(spec, rows, model: GemmModel) -> np.ndarray:
    m, n, k, b = (np.array([r[x] for r in rows], dtype=float) for x in ("m", "n", "k", "batch"))
    return np.asarray(gemm_time(spec, m, n, k, "bf16", batch=b, model=model))


def batched_errors(spec, rows, model: GemmModel) -> tuple[float, float]:
    """(median, max) |pred / measured - 1| over ``rows``."""
    e = np.abs(batched_pred(spec, rows, model) / np.array([r["time_s"] for r in rows]) - 1)
    return float(np.median(e)), float(e.max())


def _sector_rows(r) -> bool:
    """A score GEMM whose rows of C are not a whole number of 32-byte sectors (the pitch grid's N = 1000,
    7000; the held-out N = 3000)."""
    return r["op"] == "qk" and (r["n"] * 2) % SECTOR_BYTES != 0


def _on_lattice(r) -> bool:
    """A row of bmm_grid's fit lattice (N a power of two), not of bmm_pitch_grid."""
    return r["m"] in BMM_N


def fit_batched(spec, rows, model: GemmModel, date: dt.date | None = None, gpu: str = "NVIDIA H200") -> GemmModel:
    """The aligned terms on the bmm lattice (N a power of two), then the sector-misaligned write bandwidth on
    the pitch grid's misaligned rows (``fit_unaligned_rows``)."""
    lattice = [r for r in rows if _on_lattice(r) or r["split"] == "heldout"]
    model = _fit_aligned(spec, lattice, model, date, gpu)
    return fit_unaligned_rows(spec, rows, model, date, gpu)


def fit_unaligned_rows(spec, rows, model: GemmModel, date: dt.date | None = None, gpu: str = "NVIDIA H200"
                       ) -> GemmModel:
    """``batched_unaligned_write_Bps``: 1-D grid search (0.5-4 TB/s, 10 GB/s steps) of the least mean squared
    log error over the misaligned fit rows; held out: the lattice's N = 3000 rows (B*H 40)."""
    pitch = [r for r in rows if r["split"] == "fit" and not _on_lattice(r)]
    fit = [r for r in pitch if _sector_rows(r)]
    held = [r for r in rows if r["split"] == "heldout" and _sector_rows(r)]
    aligned = [r for r in pitch if not _sector_rows(r)]
    if not fit:
        return model

    def loss(bw):
        m_ = model.model_copy(update={"batched_unaligned_write_Bps": bw})
        pred = batched_pred(spec, fit, m_)
        return float(np.mean(np.log(pred / np.array([r["time_s"] for r in fit])) ** 2))

    best = min(np.arange(0.5e12, 4.0e12 + 1, 1e10), key=loss)
    m = model.model_copy(update={"batched_unaligned_write_Bps": float(best)})
    fe, he = batched_errors(spec, fit, m), batched_errors(spec, held, m) if held else (None, None)
    ae = batched_errors(spec, aligned, m) if aligned else (None, None)
    meas_ = Fit(method=(f"grid search (0.5-4 TB/s, 10 GB/s steps), min mean squared log error over {len(fit)} "
                        f"strided-batched bf16 score GEMMs S = Q K^T whose rows are not whole 32-byte sectors "
                        f"(B*H 24 / 96, N 1000 / 7000, d 64 / 128; attn_ops_grids.bmm_pitch_grid, "
                        f"results/h200/attn_ops/attn_ops_h200_3.json), CUDA-graph replays; fit median/max |err| "
                        f"{fe[0]:.3f}/{fe[1]:.3f}; held out: B*H 40, N 3000, d 64 / 128"
                        + (f"; the grid's sector-aligned N 2000 / 4000 on the aligned terms: {ae[0]:.3f}/{ae[1]:.3f}"
                           if aligned else "")),
                date=date or dt.date(2026, 12, 2), gpu=gpu, fit_points=len(fit), heldout_points=len(held),
                heldout_median_abs_err=he[0], heldout_max_abs_err=he[1])
    return m.model_copy(update={"batched_unaligned_measured": meas_})


def _fit_aligned(spec, rows, model: GemmModel, date: dt.date | None = None, gpu: str = "NVIDIA H200") -> GemmModel:
    fit = [r for r in rows if r["split"] == "fit"]
    held = [r for r in rows if r["split"] == "heldout" and not _sector_rows(r)]
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
                        f"{fe[0]:.3f}/{fe[1]:.3f}; held out: B*H 40, N 1536/6144 and 3000's P V"),
                date=date or dt.date(2026, 12, 2), gpu=gpu, fit_points=len(fit), heldout_points=len(held),
                heldout_median_abs_err=he[0], heldout_max_abs_err=he[1])
    return m.model_copy(update={"batched_measured": meas_})


__all__ = ["batched_errors", "batched_pred", "fit_batched", "fit_unaligned_rows"]
