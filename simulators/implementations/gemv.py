"""torch's math backend in decode: the fp32 batched product with one query row (M = 1), a GEMV.

With N = 1 query the math backend's Q K^T is B H products (1 x d)(d x L) and P V is (1 x L)(L x d), in fp32
on the SIMT lanes (no TF32; cuBLAS strided-batched). Their FLOPs are 2 d a key row against 4 d bytes of K or
V read, so the tensor-core roofline says "DRAM"; measured, they are slower than DRAM at d <= 128 and the time
per key row hardly moves with d (decomposition of the calibration decodes, 2026-12-02, impls-raw-2.json: the
two products take 0.38-0.41 ns per (batch, head, key) row at d = 64 and 128, 0.50 at d = 256, where 4 d bytes
a row at the copy bandwidth give 0.06 / 0.12 / 0.25 ns each). A row costs a fixed instruction sequence
(for Q K^T, one dot product reduced across a warp and stored; for P V, one row's accumulate) whatever its
length, so the kernel is bound by whichever is longer (a roofline with an issue resource):

    time_s = max(hbm_bytes / bandwidth, B H L x gemv_row_s) + kernel_fixed_s

``gemv_row_s`` (the ``implementations:`` section, GPU-wide) is fitted on the calibration grid's decodes.
"""

from __future__ import annotations


def gemv_result(r, cfg, row_s: float):
    """Kernel result ``r`` of one M = 1 fp32 product (timed by timing.py on its bytes) with the per-row
    issue bound added as the resource ``gemv rows``: B H L rows of ``row_s`` each."""
    rows_s = float(cfg.batch_heads * cfg.kv_len * row_s)
    times = {**r.times_s, "gemv rows": rows_s}
    bound = max(times, key=times.get)
    return r.model_copy(update={"times_s": times, "bound": bound,
                                "time_s": times[bound] + r.fixed_s + r.launch_s})
