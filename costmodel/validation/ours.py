"""How our Numba kernels (kernels/) are timed: the simulator's counts, the timing terms that time
every other implementation, and parameters fitted to our kernels.

``simulate_attention`` counts each of our kernels (FLOPs, bytes per level, grid, occupancy); this
re-times every counted kernel with ``simulators.timing.time_kernel`` and the ``numba_kernels``
section of the spec (``hardware_specs/numba_kernels.py``, fitted by ``fit_ours``):

* matmul kernels (``qk_scale_mask`` and ``pv_matmul`` of the standard path, ``flash1_fwd``,
  ``flash2_fwd``, ``flash2_bwd``, ``decode``): the FP32 SIMT lanes at ``<kernel>_efficiency[_d<d>]``
  of the calibrated peak (term 3's ``tensor_efficiency``), a block drawing at most a share
  warps / ``warps_to_saturate`` of its SM (term 1 with the issue share: FA1's B*H blocks on 132 SMs),
  except a kernel that spills to local memory (``SPILLING``: FA1 at d = 128), whose one block fills
  its SM's load/store path (the H200: FA1 d = 128 ran at the same rate per SM with one block as with
  two, FA1 d = 64 at 0.58 of it);
  the fused kernels run MMA, exp and softmax in the same warps (``serial_compute``);
* memory kernels (``softmax``, ``bwd_fill_dq``, ``bwd_preprocess``, ``bwd_cast_dq``,
  ``decode_combine``): the DRAM bandwidth at ``<kernel>_memory_efficiency``;
* decode (Little's law, term 2): a block keeps one tile of K in flight (T keys x d elements: the
  next tile's loads are issued together, kernels/decode.py step 3), and its loads wait a DRAM
  latency whether they hit L2 or not: the query heads of a GQA group walk the same tiles in
  lock-step, so their L2 hits wait on the same DRAM fetch (``dram_latency_s`` of the spec's
  ``implementations`` section, fitted on torch's kernels, used for both latencies);
* every launch: ``kernel_fixed_s`` of GPU time; per call, one host cost the GPU does not hide:
  ``host_api_s`` for the public API (checks, device views, buffers, numba's dispatch of the first
  launch; later launches are dispatched while the GPU runs), ``host_step_s`` for a
  ``prepare_decode`` step (its cuLaunchKernel calls).
"""
from __future__ import annotations

from simulators.flash import DECODE_THREADS, decode_keys_per_tile
from simulators.results import KernelCount
from simulators.timing import TimingParams, time_kernel

MATMUL_KERNELS = ("qk_scale_mask", "pv_matmul", "flash1_fwd", "flash2_fwd", "flash2_bwd", "decode")
FUSED_KERNELS = ("flash1_fwd", "flash2_fwd", "flash2_bwd", "decode")  # MMA, exp and softmax in the same warps
PER_HEAD_DIM = ("qk_scale_mask", "pv_matmul", "flash1_fwd", "flash2_fwd", "flash2_bwd")  # tiles differ by d
MEMORY_KERNELS = ("softmax", "bwd_fill_dq", "bwd_preprocess", "bwd_cast_dq", "decode_combine")
STEP_FAMILIES = ("decode", "flash_decoding")  # timed through prepare_decode (costmodel/validation/run.py)
# Kernels that keep part of their register tile in local memory: one block's local loads and stores
# already fill its SM's load/store path, so a block saturates its SM whatever warps_to_saturate says.
SPILLING = {("flash1_fwd", 128): "288-byte stack frame, its O micro-tile in local memory "
                                 "(ptxas -v, costmodel/validation/NOTES.md)"}


def efficiency_name(kernel: str, head_dim: int) -> str | None:
    """The section's parameter that sets a kernel's rate (None: the peak)."""
    if kernel in MATMUL_KERNELS:
        return f"{kernel}_efficiency_d{head_dim}" if kernel in PER_HEAD_DIM else f"{kernel}_efficiency"
    if kernel in MEMORY_KERNELS:
        return f"{kernel}_memory_efficiency"
    return None


def count_of(k, inflight_bytes: float = 0.0) -> KernelCount:
    """A simulator KernelResult back to the KernelCount it was timed from."""
    return KernelCount(name=k.name, grid=tuple(k.grid), schedule=k.schedule, matmul_flops=k.matmul_flops,
                       other_flops=k.other_flops, exp_ops=k.exp_ops, global_read_bytes=k.global_read_bytes,
                       global_write_bytes=k.global_write_bytes, hbm_read_bytes=k.hbm_read_bytes,
                       hbm_write_bytes=k.hbm_write_bytes, smem_bytes=k.smem_bytes,
                       smem_per_block_bytes=k.smem_per_block_bytes, threads_per_block=k.threads_per_block,
                       blocks_per_sm=k.blocks_per_sm, inflight_bytes_per_block=inflight_bytes)


def decode_inflight_bytes(head_dim: int, element_bytes: float, threads: int = DECODE_THREADS) -> float:
    """One tile of K (T keys x d elements), the loads a decode block issues together."""
    return decode_keys_per_tile(head_dim, element_bytes, threads) * head_dim * element_bytes


def timing_params(spec, section, kernel: str, head_dim: int, efficiency: float | None = None,
                  fixed_s: float | None = None) -> TimingParams:
    """The TimingParams of one of our kernels; ``efficiency`` / ``fixed_s`` override the section's
    (the fit times each kernel at trial values)."""
    name = efficiency_name(kernel, head_dim)
    eff = efficiency if efficiency is not None else (section.value(name, 1.0) if name else 1.0)
    latency = spec.implementations.value(None, "dram_latency_s") if spec.implementations else None
    return TimingParams(
        tensor_efficiency=eff if kernel in MATMUL_KERNELS else 1.0,
        memory_efficiency=eff if kernel in MEMORY_KERNELS else 1.0,
        warps_to_saturate=None if (kernel, head_dim) in SPILLING else section.value("warps_to_saturate"),
        dram_latency_s=latency if kernel == "decode" else None, l2_latency_s=latency if kernel == "decode" else None,
        kernel_fixed_s=section.value("kernel_fixed_s", 0.0) if fixed_s is None else fixed_s,
        launch_s=0.0, serial_compute=kernel in FUSED_KERNELS)


def time_our_kernel(spec, section, k, head_dim: int, element_bytes: float, efficiency: float | None = None,
                    fixed_s: float | None = None):
    """One counted kernel (a KernelResult of the simulator) timed as ours: a KernelResult."""
    inflight = decode_inflight_bytes(head_dim, element_bytes, k.threads_per_block) if k.name == "decode" else 0.0
    params = timing_params(spec, section, k.name, head_dim, efficiency, fixed_s)
    return time_kernel(spec, count_of(k, inflight), "fp32", False, params)


def host_s(section, family: str) -> float:
    """Host time of one call not hidden behind the GPU."""
    return section.value("host_step_s" if family in STEP_FAMILIES else "host_api_s", 0.0)


def predict_ours(spec, result, family: str, head_dim: int, element_bytes: float) -> tuple[float, dict]:
    """(flops, the results file's ``predicted`` mapping) of one of our calls from the simulator's result."""
    section = spec.numba_kernels
    kernels = [time_our_kernel(spec, section, k, head_dim, element_bytes) for k in result.kernels]
    host = host_s(section, family)
    main = max(kernels, key=lambda k: k.time_s)
    predicted = {
        "time_s": host + sum(k.time_s for k in kernels), "hbm_bytes": float(result.hbm_bytes),
        "global_bytes": float(result.global_bytes), "bound": main.bound,
        "kernels": [{"name": k.name, "time_s": float(k.time_s), "hbm_bytes": float(k.hbm_bytes), "bound": k.bound,
                     "launch_s": 0.0} for k in kernels],
    }
    return float(result.flops), predicted
