"""A kernel's time on a GPU: its per-level bytes and FLOPs on the roofline, waves, launch.

time = roofline_time(spec, work) x ceil(blocks / slots) / (blocks / slots) + kernel_launch_s

* roofline (costmodel.roofline): the largest of DRAM bytes / HBM bandwidth, global
  (L2) bytes / L2 bandwidth, shared-memory bytes / smem bandwidth, matmul FLOPs on the
  matmul unit, other FLOPs on the FP32 lanes, exp on the SFUs; that resource *binds*.
* waves: blocks run in waves of slots = SMs x blocks/SM; the roofline time assumes
  the whole GPU busy, so a last partial wave is charged as a full one (a grid of 16
  blocks on 216 slots costs one full wave).
* the matmul unit: tensor cores (``matmul_unit(dtype)``) or, with ``tensor_cores=False``,
  the FP32 SIMT lanes our Numba kernels use (matmul and other FLOPs then share them).
"""

from __future__ import annotations

import math

from costmodel.roofline import Work, matmul_unit, roofline_time
from simulators.results import KernelCount, KernelResult


def time_kernel(spec, k: KernelCount, dtype: str, tensor_cores: bool) -> KernelResult:
    unit = matmul_unit(dtype, True) if tensor_cores else "fp32"
    l2_bytes = k.global_read_bytes + k.global_write_bytes
    hbm_bytes = k.hbm_read_bytes + k.hbm_write_bytes
    exp_ops = k.exp_ops if spec.sfu_exp_per_s is not None else 0.0  # no SFU rate: exp left untimed
    work = Work(matmul_flops=k.matmul_flops, matmul_unit=unit, other_flops=k.other_flops, other_unit="fp32",
                exp_ops=exp_ops, hbm_bytes=hbm_bytes,
                l2_bytes=l2_bytes if spec.l2_bandwidth_Bps is not None else 0.0, smem_bytes=k.smem_bytes)
    rt = roofline_time(spec, work)
    slots = spec.sm_count * k.blocks_per_sm
    waves = math.ceil(k.blocks / slots)
    factor = waves / (k.blocks / slots)
    return KernelResult(
        name=k.name, grid=tuple(int(g) for g in k.grid), schedule=k.schedule, blocks=k.blocks,
        threads_per_block=k.threads_per_block, smem_per_block_bytes=k.smem_per_block_bytes,
        blocks_per_sm=k.blocks_per_sm, slots=slots, waves=waves,
        flops=k.matmul_flops + k.other_flops, matmul_flops=k.matmul_flops, other_flops=k.other_flops,
        exp_ops=k.exp_ops, global_bytes=l2_bytes, global_read_bytes=k.global_read_bytes,
        global_write_bytes=k.global_write_bytes, hbm_bytes=hbm_bytes, hbm_read_bytes=k.hbm_read_bytes,
        hbm_write_bytes=k.hbm_write_bytes, l2_bytes=l2_bytes, smem_bytes=k.smem_bytes,
        roofline_time_s=float(rt.time_s), wave_factor=factor, launch_s=spec.kernel_launch_s,
        time_s=float(rt.time_s) * factor + spec.kernel_launch_s, bound=str(rt.bound),
        times_s={n: float(t) for n, t in rt.times_s.items()},
    )
