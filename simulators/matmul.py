"""cuBLAS-like GEMM time: tile quantization, waves and their tail, split-K, a fitted efficiency.

C[M, N] = A[M, K] · B[K, N] (times ``batch`` independent products). A cuBLAS Hopper kernel
(CUTLASS 3 style) gives each thread block one ``tm x tn`` output tile and loops over K;
the candidate tiles and split-K factors are ``GemmModel.tiles`` / ``split_k``. For one
candidate (tm, tn, s):

    tiles      = ceil(M / tm) · ceil(N / tn) · s · batch        thread blocks
    waves      = ceil(tiles / SMs)                              one tile per SM at a time
    compute_s  = waves · 2·tm·tn·ceil(K / s) / (eff · peak / SMs)
                 (tile quantization: a partial tile costs a whole one; the wave tail: the
                 last wave costs a full wave even when few SMs are busy)
    bytes      = e_in · (M·K + K·N) · batch + e_out · M·N · batch · (1 if s = 1 else 2·s + 1)
                 (operands once, from DRAM; re-reads across tiles hit L2. Split-K writes
                 s fp32-sized partials and reduces them: counted as e_out · (2s + 1) · M·N)
    memory_s   = bytes / (bandwidth_fraction · memory-op bandwidth)
    time       = max(compute_s, memory_s) + overhead_s  (+ overhead_s for split-K's reduce kernel)

A strided-batched GEMM (batch > 1) with the fitted batched terms (``GemmModel.batched_write_Bps``,
``batched_tile_s``) writes C at the epilogue's own write bandwidth (``batched_unaligned_write_Bps`` where
a row of C is not a whole number of 32-byte sectors: N = 3000 bf16 scores, 6000 B rows) and pays a fixed
latency per tile:

    memory_s   = e_in·(M·K + K·N)·batch / (bandwidth_fraction · bandwidth)
                 + e_out·M·N·batch·(split factor) / batched_write_Bps
    compute_s  = waves · (2·tm·tn·ceil(K / s) / (eff · peak / SMs) + batched_tile_s)

and cuBLAS's heuristic is modelled as choosing the fastest candidate (min over tiles and
splits). ``eff`` (per dtype), ``bandwidth_fraction`` and ``overhead_s`` are fitted per GPU
(``hardware_specs/op_timing.py``); a spec without a fit gets stated defaults.

Every argument broadcasts over numpy arrays, so a sweep of shapes is one call.
"""

from __future__ import annotations

import numpy as np

from hardware_specs.op_timing import GemmModel, gemm_model, memory_ops_model
from hardware_specs.roofline import matmul_unit

SECTOR_BYTES = 32  # a DRAM transaction / L2 sector (CUDA C++ Best Practices Guide, coalesced access)

# Weight-only quantized GEMMs (int8 / int4 weights, 16-bit activations) dequantize on load and
# multiply in 16-bit: their compute runs on the activation dtype's tensor unit.
_COMPUTE_DTYPE = {"int4": "bf16"}


def _peak_and_eff(spec, model: GemmModel, dtype: str) -> tuple[float, float]:
    compute = _COMPUTE_DTYPE.get(dtype, dtype)
    unit = matmul_unit(compute, True)
    peak = spec.peak_flops_per_s.get(unit)
    if peak is None:
        raise ValueError(f"dtype: {dtype!r} needs {unit} on {spec.name}, which the spec does not give")
    eff = model.efficiency.get(compute, model.efficiency.get("bf16", 0.8))
    return peak, eff


def gemm_time(spec, m, n, k, dtype: str = "bf16", *, batch=1, in_bytes=None, weight_bytes=None, out_bytes=None,
              model: GemmModel | None = None, detail: bool = False):
    """Seconds of GPU time for ``batch`` GEMMs of (m x k)·(k x n) in ``dtype`` (module docstring).

    ``in_bytes`` / ``out_bytes``: bytes per element of A and C (default: the dtype's);
    ``weight_bytes``: of B (weight-only quantization: 1 for int8, 0.5 for int4). With
    ``detail=True`` returns (time_s, compute_s, memory_s, hbm_bytes, split) of the chosen candidate;
    a split-K kernel (split > 1) is followed by cuBLAS's splitKreduce kernel, timed as one more
    ``overhead_s`` (its bytes are in the ``2·s + 1`` term).
    """
    from hardware_specs.dtypes import dtype_bytes

    model = model or gemm_model(spec)
    mem = memory_ops_model(spec)
    m, n, k, batch = (np.asarray(x, dtype=np.float64) for x in (m, n, k, batch))
    for name, x in (("m", m), ("n", n), ("k", k), ("batch", batch)):
        if np.any(x <= 0):
            raise ValueError(f"gemm_time: {name} must be positive, got {x.min()}")
    e = dtype_bytes(dtype) if dtype != "int4" else 2.0
    e_in = e if in_bytes is None else in_bytes
    e_w = e_in if weight_bytes is None else weight_bytes
    e_out = e if out_bytes is None else out_bytes
    peak, eff = _peak_and_eff(spec, model, dtype)
    bwf = model.bandwidth_fraction
    if model.unaligned_efficiency is not None:  # N or K not a multiple of 8: align-1 kernels
        unaligned = (np.mod(n, 8) != 0) | (np.mod(k, 8) != 0)
        eff = np.where(unaligned, model.unaligned_efficiency, eff)
        bwf = np.where(unaligned, model.unaligned_bandwidth_fraction or bwf, bwf)
    sm_rate = eff * peak / spec.sm_count
    bw = bwf * mem.bandwidth_Bps
    batched = batch > 1
    write_bw = np.where(batched, model.batched_write_Bps, bw) if model.batched_write_Bps else bw
    if model.batched_unaligned_write_Bps:  # rows of C not a whole number of sectors (GemmModel)
        write_bw = np.where(batched & (np.mod(n * e_out, SECTOR_BYTES) != 0), model.batched_unaligned_write_Bps,
                            write_bw)
    tile_s = np.where(batched, model.batched_tile_s, 0.0) if model.batched_tile_s else 0.0
    best = best_c = best_m = best_b = best_s = None
    for s in model.split_k:
        ks = np.ceil(k / s)
        out_factor = 1.0 if s == 1 else 2.0 * s + 1.0
        reads, writes = (e_in * m * k + e_w * k * n) * batch, e_out * m * n * batch * out_factor
        hbm = reads + writes
        memory_s = reads / bw + writes / write_bw
        for tm, tn in model.tiles:
            tiles = np.ceil(m / tm) * np.ceil(n / tn) * s * batch
            waves = np.ceil(tiles / spec.sm_count)
            compute_s = waves * (2.0 * tm * tn * ks / sm_rate + tile_s)
            t = np.maximum(compute_s, memory_s) + (model.overhead_s if s > 1 else 0.0)
            if best is None:
                best, best_c, best_m, best_b, best_s = t, compute_s, memory_s, hbm, np.full(np.shape(t), s)
            else:
                better = t < best
                best = np.where(better, t, best)
                best_c = np.where(better, compute_s, best_c)
                best_m = np.where(better, memory_s, best_m)
                best_b = np.where(better, hbm, best_b)
                best_s = np.where(better, s, best_s)
    time_s = best + model.overhead_s
    if detail:
        return time_s, best_c, best_m, best_b, best_s
    return time_s


__all__ = ["gemm_time"]
