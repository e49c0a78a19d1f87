"""Fit the op-timing parameters on the measured op grids (never on the model runs).

    memory_ops   latency_s, bandwidth_Bps: least squares on relative error over the fit grid
                 (copy, add, mul at even powers of two), time = latency + bytes / bandwidth
    gemm         efficiency, bandwidth_fraction, overhead_s: coordinate descent on the mean
                 squared log error over the (M, N, K) lattice
    attention    SDPA forward / backward efficiency: the median of (needed time at the peak) over
                 (measured time) on the compute-bound prefill shapes
    launch       host cost per kernel from the eager micro-loops

Each returns the fitted model and its held-out errors (|predicted / measured - 1|).
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from hardware_specs.op_timing import Fit, GemmModel, LaunchModel, MemoryOpsModel


def _errors(pred, meas) -> tuple[float, float]:
    e = np.abs(np.asarray(pred) / np.asarray(meas) - 1)
    return float(np.median(e)), float(np.max(e))


def fit_memory_ops(rows, launch: dict, date: dt.date, gpu: str, host: dict | None = None,
                   resident_bytes: float = 40e6, family_rows=None) -> MemoryOpsModel:
    fit = [r for r in rows if r["split"] == "fit" and r["op"] in ("copy", "add", "mul")]
    held = [r for r in rows if r["split"] == "heldout" and r["op"] in ("copy", "add", "mul", "silu", "cast", "mean")]
    b = np.array([r["bytes"] for r in fit], dtype=float)
    t = np.array([r["time_s"] for r in fit])
    lat, inv_l2, inv_bw = _curve(b, t, resident_bytes)

    def pred(rr):
        bb = np.array([r["bytes"] for r in rr], dtype=float)
        return lat + bb * np.where(bb <= resident_bytes, inv_l2, inv_bw)
    med, mx = _errors(pred(held), [r["time_s"] for r in held])

    host = host or {}
    fams = ("vectorized", "cast_up", "cast_down", "broadcast", "strided", "cat", "index_copy", "reduce", "layernorm")
    autograd = (host["tiny_train_step_s"] / host["tiny_train_kernels"]) if "tiny_train_kernels" in host else None
    gap = max(float(np.median([g["gap_s"] for g in host["graph_gap"]])), 0.0) if host.get("graph_gap") else 0.0
    lm = LaunchModel(host_per_kernel_s=host.get("vectorized", launch["eager_add_s"]),
                     host_per_library_call_s=host.get("linear", launch["eager_linear_s"]),
                     host_attention_s=host.get("sdpa_decode"),
                     host_by_family={f: host[f] for f in fams if f in host},
                     host_per_kernel_autograd_s=autograd,
                     graph_per_kernel_s=gap, graph_launch_s=launch["graph_replay_one_kernel_s"])
    return MemoryOpsModel(
        latency_s=float(lat), bandwidth_Bps=float(1 / inv_bw), l2_resident_bytes=resident_bytes,
        l2_bandwidth_Bps=float(1 / inv_l2), launch=lm,
        families=fit_families(family_rows, resident_bytes) if family_rows else {},
        measured=Fit(method="CUDA-graph replays of R back-to-back torch copy_/add/mul over 2^10..2^28 bf16 elements "
                            "(even powers), weighted least squares on relative error; held out: odd powers and "
                            "silu, fp32->bf16 cast, row mean; launch from eager loops of tiny ops",
                     date=date, gpu=gpu, fit_points=len(fit), heldout_points=len(held),
                     heldout_median_abs_err=med, heldout_max_abs_err=mx))


def _curve(b, t, resident_bytes):
    """(latency, 1/bw_l2, 1/bw_dram) minimizing Σ (pred / t - 1)^2 (linear in the three)."""
    small = b <= resident_bytes
    A = np.stack([1 / t, np.where(small, b, 0) / t, np.where(small, 0, b) / t], axis=1)
    if small.all() or not small.any():  # one regime only: one bandwidth for both
        A = np.stack([1 / t, b / t], axis=1)
        (lat, inv), *_ = np.linalg.lstsq(A, np.ones_like(t), rcond=None)
        return lat, inv, inv
    (lat, inv_l2, inv_bw), *_ = np.linalg.lstsq(A, np.ones_like(t), rcond=None)
    return lat, inv_l2, inv_bw


def fit_families(rows, resident_bytes: float = 40e6) -> dict:
    """Each kernel family's curve from its fit points (h = 4096, families.py): the measured table
    plus latency + bytes / bandwidth for extrapolation. Held-out errors: ``family_errors``."""
    from hardware_specs.op_timing import KernelFamily

    out = {}
    for name in sorted({r["family"] for r in rows}):
        fit = sorted((r for r in rows if r["family"] == name and r["split"] == "fit"), key=lambda r: r["bytes"])
        b = np.array([r["bytes"] for r in fit], dtype=float)
        t = np.array([r["time_s"] for r in fit])
        lat, inv_l2, inv_bw = _curve(b, t, resident_bytes)
        out[name] = KernelFamily(latency_s=max(float(lat), 0.0), bandwidth_Bps=1 / max(float(inv_bw), 1e-15),
                                 l2_bandwidth_Bps=1 / max(float(inv_l2), 1e-15),
                                 table_bytes=tuple(float(x) for x in b), table_s=tuple(float(x) for x in t))
    return out


def family_errors(spec, rows) -> dict:
    """{family: (median, max) |pred / measured - 1|} on the held-out width (h = 2560)."""
    from simulators.memory_ops import memory_op_time

    out = {}
    for name in sorted({r["family"] for r in rows}):
        held = [r for r in rows if r["family"] == name and r["split"] == "heldout"]
        if held:
            pred = [float(memory_op_time(spec, r["bytes"], 1, name)) for r in held]
            out[name] = _errors(pred, [r["time_s"] for r in held])
    return out


def fit_unaligned(spec, rows, model: GemmModel, heldout_rows=()) -> GemmModel:
    """Align-1 GEMM efficiency and bandwidth fraction: grid search on the unaligned (M, N, K) points."""
    fit = [r for r in rows if r["split"] == "unaligned"]
    if not fit:
        return model
    return grid_search(model, "unaligned_efficiency", np.linspace(0.05, 0.5, 46), "unaligned_bandwidth_fraction",
                       np.linspace(0.2, 1.2, 26), lambda m: _gemm_pred(spec, fit, m), [r["time_s"] for r in fit])


def grid_search(model, x_name: str, xs, y_name: str, ys, predict, measured):
    """The copy of ``model`` with (x_name, y_name) on the grid xs x ys that minimizes the mean squared log
    error of ``predict(model)`` against ``measured`` (the first of equal minima)."""
    meas = np.asarray(measured, dtype=np.float64)
    best = None
    for x in xs:
        for y in ys:
            m = model.model_copy(update={x_name: float(x), y_name: float(y)})
            loss = float(np.mean(np.log(predict(m) / meas) ** 2))
            if best is None or loss < best[0]:
                best = (loss, m)
    return best[1]


def _gemm_pred(spec, rows, model):
    from simulators.matmul import gemm_time

    m, n, k = (np.array([r[x] for r in rows], dtype=float) for x in "mnk")
    return gemm_time(spec, m, n, k, "bf16", model=model)


def fit_gemm(spec, rows, date: dt.date, gpu: str) -> GemmModel:
    fit = [r for r in rows if r["split"] == "fit"]
    held = [r for r in rows if r["split"] == "heldout"]
    meas = np.array([r["time_s"] for r in fit])
    params = {"efficiency": 0.85, "bandwidth_fraction": 0.9, "overhead_s": 3e-6}
    grids = {"efficiency": np.linspace(0.5, 1.0, 51), "bandwidth_fraction": np.linspace(0.5, 1.3, 41),
             "overhead_s": np.linspace(0.0, 8e-6, 33)}

    def make(p):
        return GemmModel(efficiency={"bf16": p["efficiency"], "fp16": p["efficiency"]},
                         bandwidth_fraction=p["bandwidth_fraction"], overhead_s=p["overhead_s"])

    def loss(p):
        return float(np.mean(np.log(_gemm_pred(spec, fit, make(p)) / meas) ** 2))

    for _ in range(3):
        for key, values in grids.items():
            best = min(values, key=lambda v: loss({**params, key: float(v)}))
            params[key] = float(best)
    model = make(params)
    med, mx = _errors(_gemm_pred(spec, held, model), [r["time_s"] for r in held])
    fmed, fmx = _errors(_gemm_pred(spec, fit, model), meas)
    return model.model_copy(update={"measured": Fit(
        method=f"torch.mm bf16 (x @ W.T, W rotated over copies > 256 MB), CUDA-graph replays; fit on the {len(fit)}-point "
               f"(M, N, K) lattice (fit median |err| {fmed:.3f}, max {fmx:.3f}), coordinate descent on mean squared "
               "log error; held out: the validated models' projection shapes",
        date=date, gpu=gpu, fit_points=len(fit), heldout_points=len(held), heldout_median_abs_err=med,
        heldout_max_abs_err=mx)})


def fit_attention(spec, sdpa_rows, model: GemmModel, mem: MemoryOpsModel) -> GemmModel:
    """SDPA efficiencies: on prefill shapes (compute-bound), eff = model FLOPs / (peak · (t - overhead))."""
    from costmodel.flops import mean_keys_per_query

    peak = spec.peak_flops_per_s["bf16_tensor"]
    fwd, bwd = [], []
    for r in sdpa_rows:
        if r["kind"] != "prefill":
            continue
        keys = mean_keys_per_query(r["L"], True, None)
        flops = 4.0 * r["B"] * r["H"] * r["d"] * r["L"] * keys  # attn_scores + attn_values (costmodel.flops)
        fwd.append(flops / (peak * (r["fwd_s"] - model.overhead_s)))
        bwd.append(2.5 * flops / (peak * (r["fwd_bwd_s"] - r["fwd_s"] - model.overhead_s)))
    return model.model_copy(update={"attention_efficiency": {"bf16": float(np.median(fwd))},
                                    "attention_bwd_efficiency": {"bf16": float(np.median(bwd))}})


__all__ = ["family_errors", "fit_attention", "fit_families", "fit_gemm", "fit_memory_ops", "fit_unaligned"]
