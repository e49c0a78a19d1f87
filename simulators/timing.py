"""A kernel's time on a GPU: its per-level bytes and FLOPs on the roofline, the grid's spread over SMs, launch.

Resources come in two kinds:

* **per-SM**: the matmul unit (tensor cores, or the FP32 SIMT lanes with
  ``tensor_cores=False``, as our Numba kernels run), the FP32 lanes for other FLOPs,
  the SFUs for exp, and shared-memory bandwidth. Each SM has 1/SMs of the GPU's rate
  and only the blocks on that SM can use it.
* **shared**: DRAM (HBM) and L2 bandwidth, one pool for the whole GPU.

Rule (max over resources of each resource's total time; b = blocks, SMs = spec.sm_count)::

    t_r = work_r / rate_r                                  (shared: hbm, l2)
    t_r = ceil(b / SMs) x (work_r / b) / (rate_r / SMs)    (per-SM)
        = work_r / rate_r x per_sm_factor,   per_sm_factor = ceil(b / SMs) x SMs / b
    time = max_r t_r + kernel_launch_s

Derivation of the per-SM term. Blocks do equal work (the kernel's total / b: the
average block, for masks that give blocks unequal work). The block scheduler spreads
blocks breadth-first, one per SM before any SM gets a second, so the busiest SM runs
ceil(b / SMs) blocks; co-resident blocks share their SM's rate, so that SM is busy for
ceil(b / SMs) blocks' work at one SM's rate, whatever the occupancy. Counted in the
lock-step waves of l2.py (slots S = SMs x blocks/SM): a full wave costs blocks/SM
blocks' work on each SM, a partial wave of w blocks ceil(w / SMs) of them; the sum over
ceil(b / S) waves is again ceil(b / SMs). So: b <= SMs blocks take one block's work at
one SM's rate (32 decode blocks on a 132-SM H100: FP32 time = one block's FLOPs /
(FP32 rate / 132)); whole waves take the full-GPU roofline time (factor 1); a wave of S
plus one block takes (1 + 1 / (blocks/SM)) wave times.

Assumed for the shared levels: any number of busy SMs can draw the full HBM and L2
bandwidth. A few SMs cannot in fact (an SM sustains at most the bytes it keeps in
flight over the memory latency, Little's law), but the spec holds no per-SM bandwidth
number, and a tuned one would be an unsourced constant; the roofline stays a lower
bound. So a memory-bound grid smaller than one wave is predicted at the full
bandwidth, which flatters an unsplit decode: Flash-Decoding's gain over it shows here
only where a per-SM resource binds.

Previous rule, replaced because it charged sub-wave grids as if each block had 1/(blocks/SM)
of an SM and 1/S of the HBM: time = roofline_time(all work, whole GPU) x ceil(b / S) /
(b / S) + launch, every resource scaled alike (16 blocks on 216 slots cost a full wave).

Left out: per-wave max (a compute-bound wave followed by a memory-bound one is charged
the max of the totals, not the sum of each wave's max); latency (a lone block of a few
warps cannot keep an SM's pipelines or its share of memory requests full); unequal
blocks (causal tiles) beyond their average.
"""

from __future__ import annotations

import math

from hardware_specs.roofline import Work, matmul_unit, roofline_time
from simulators.results import KernelCount, KernelResult

SHARED_RESOURCES = ("hbm", "l2")  # one pool for the GPU; every other resource is per SM


def per_sm_factor(blocks: int, sm_count: int) -> float:
    """ceil(b / SMs) x SMs / b: per-SM resources' time over the full-GPU roofline's (module docstring)."""
    return math.ceil(blocks / sm_count) * sm_count / blocks


def time_kernel(spec, k: KernelCount, dtype: str, tensor_cores: bool) -> KernelResult:
    unit = matmul_unit(dtype, True) if tensor_cores else "fp32"
    l2_bytes = k.global_read_bytes + k.global_write_bytes
    hbm_bytes = k.hbm_read_bytes + k.hbm_write_bytes
    exp_ops = k.exp_ops if spec.sfu_exp_per_s is not None else 0.0  # no SFU rate: exp left untimed
    work = Work(matmul_flops=k.matmul_flops, matmul_unit=unit, other_flops=k.other_flops, other_unit="fp32",
                exp_ops=exp_ops, hbm_bytes=hbm_bytes,
                l2_bytes=l2_bytes if spec.l2_bandwidth_Bps is not None else 0.0, smem_bytes=k.smem_bytes)
    rt = roofline_time(spec, work)  # every resource at the whole GPU's rate
    slots = spec.sm_count * k.blocks_per_sm
    factor = per_sm_factor(k.blocks, spec.sm_count)
    times_s = {r: float(t) * (1.0 if r in SHARED_RESOURCES else factor) for r, t in rt.times_s.items()}
    bound = max(times_s, key=times_s.get) if times_s else "none"
    return KernelResult(
        name=k.name, grid=tuple(int(g) for g in k.grid), schedule=k.schedule, blocks=k.blocks,
        threads_per_block=k.threads_per_block, smem_per_block_bytes=k.smem_per_block_bytes,
        blocks_per_sm=k.blocks_per_sm, slots=slots, waves=math.ceil(k.blocks / slots),
        blocks_on_busiest_sm=math.ceil(k.blocks / spec.sm_count),
        flops=k.matmul_flops + k.other_flops, matmul_flops=k.matmul_flops, other_flops=k.other_flops,
        exp_ops=k.exp_ops, global_bytes=l2_bytes, global_read_bytes=k.global_read_bytes,
        global_write_bytes=k.global_write_bytes, hbm_bytes=hbm_bytes, hbm_read_bytes=k.hbm_read_bytes,
        hbm_write_bytes=k.hbm_write_bytes, l2_bytes=l2_bytes, smem_bytes=k.smem_bytes,
        roofline_time_s=float(rt.time_s), per_sm_factor=factor, launch_s=spec.kernel_launch_s,
        time_s=(times_s[bound] if times_s else 0.0) + spec.kernel_launch_s, bound=bound, times_s=times_s,
    )
