"""A kernel's time on a GPU: its per-level bytes and FLOPs on the roofline, spread over SMs in waves,
limited by what one block can issue and keep in flight, plus fixed and launch costs.

A kernel is described generally (``results.KernelCount``): grid, threads, blocks per SM, FLOPs by
unit, bytes per level, the tensor-core instruction family and the bytes a block keeps in flight,
so the same terms time FlashAttention, cuDNN, cuBLAS, elementwise ops or our Numba kernels.

Resources come in two kinds:

* **per-SM**: the matmul unit (tensor cores, or the FP32 SIMT lanes with ``tensor_cores=False``),
  the FP32 lanes for other FLOPs, the SFUs for exp, and shared-memory bandwidth. Each SM has 1/SMs
  of the GPU's rate and only the blocks on that SM can use it.
* **shared**: DRAM (HBM) and L2 bandwidth, one pool for the whole GPU.

Terms (b = blocks, P = spec.sm_count, k = blocks per SM; each has a unit and a meaning):

1. **Waves and tail** (per-SM resources). Blocks spread breadth-first, so the busiest SM runs
   n = ceil(b / P) blocks, k at a time. A block can draw at most a share c <= 1 of its SM's rate
   (term 3); r co-resident blocks draw min(1, r c). The busiest SM's time, in units of one block's
   work at one SM's rate, is

       T(n) = floor(n / k) x k / min(1, k c) + (n mod k) / min(1, (n mod k) c)

   and a resource's time is t_r = work_r / rate_r x T(n) x P / b. With c = 1 (any block can use
   its whole SM) T(n) = n: the staircase ceil(b / P) x P / b (``per_sm_factor``). With c = 1 / k
   (k blocks needed to fill an SM) T(n) = ceil(n / k) x k: a wave of S = k P slots plus one block
   costs two waves, the wave quantization of a GEMM or FlashAttention grid.
2. **Per-SM bandwidth, Little's law** ("latency" resource). An SM's loads return after a latency
   lambda (s), so a block that keeps I bytes in flight draws at most I / lambda B/s. Its loads hit
   in L2 or go to DRAM: lambda is the byte-weighted mean of ``l2_latency_s`` and ``dram_latency_s``
   over the kernel's L2-served and DRAM-served bytes. The k blocks of an SM run together, so the
   busiest SM needs ceil(n / k) rounds of (global bytes a block) x lambda / I seconds:

       t_latency = ceil(ceil(b / P) / k) x (global_bytes / b) x lambda / I

   A grid with b < P draws at most b I / lambda of the HBM: 32 decode blocks cannot pull all of it.
3. **Issue limit of the instruction family**. A block of w warps reaches a share
   c = min(1, w / w_sat) of its SM's tensor rate, w_sat (warps) the warps an SM needs in flight to
   keep its tensor cores busy with that family (mma.sync: several warps' independent MMAs;
   wgmma: one warpgroup issues asynchronously). And the family attains ``tensor_efficiency`` of the
   unit's measured peak (cuBLAS's wgmma rate) in the kernel's main loop: FlashAttention-2's sm80
   kernels issue mma.sync on sm90 and reach well under Hopper's wgmma rate.
4. **Fixed and launch costs** (s): ``kernel_fixed_s`` of GPU time per launch (ramp-up of the
   first wave, drain of the last: a kernel with nothing to do still takes microseconds of GPU time)
   and ``launch_s`` of host time per launch; the caller adds a call's host overhead.
5. **Occupancy** enters through k (``l2.blocks_per_sm``: shared memory, registers, threads).
6. **A block's own latency** (s): ``block_fixed_s`` per round of blocks on the busiest SM,
   ceil(ceil(b / P) / k) rounds: what a block spends outside its main loop that co-resident blocks do
   not hide (a FlashAttention block loads its Q tile and first K/V tiles before any MMA, and writes O
   and the row statistics after the last). It makes a grid of many short blocks (short sequences)
   slower per FLOP than one of few long ones at the same block count. The caller picks the value per
   kernel: a forward's, a backward's, a decode kernel's (simulators/implementations/params.py).

    time = max_r t_r + rounds x block_fixed_s + fixed_s + launch_s

   With ``serial_compute`` the compute units become one resource, max(MMA, rest) + (1 - overlap) x
   min(MMA, rest), rest = exp + other FP32 work: FA2's warps run MMA, then exp, then the softmax
   (overlap 0); Hopper kernels with two consumer warpgroups hide one's softmax under the other's MMA
   (FA3, Shah et al. 2024 §3.1), partly: on the H200 cuDNN's d = 64 call at N = 8192, with 2x the exps
   of d = 128 at equal FLOPs, took 1.4x as long, so overlap is fitted per implementation.

Blocks of unequal work (a causal kernel's query blocks see 1 to N / B_c key tiles) multiply the
per-SM resources' time by the kernel's ``imbalance``: the end of the schedule in which the blocks, in
launch order, go to whichever slot frees first and an SM's last blocks share its rate (each drawing at
most the share c of term 3), over the same grid's with every block at the mean
(``simulators.implementations.build.tile_imbalance``).

Left out: per-wave max (a compute-bound wave followed by a memory-bound one is charged the max of
the totals, not the sum of each wave's max); overlap of one kernel's tail with the next kernel's start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hardware_specs.roofline import Work, matmul_unit, roofline_time
from simulators.results import KernelCount, KernelResult

SHARED_RESOURCES = ("hbm", "l2")  # one pool for the GPU; every other resource is per SM
COMPUTE_RESOURCES = ("fp32", "fp16", "bf16", "tf32_tensor", "fp16_tensor", "bf16_tensor", "fp8_tensor",
                     "int8_tensor", "fp64", "fp64_tensor", "sfu_exp")


@dataclass(frozen=True)
class TimingParams:
    """The timing model's parameters for one kernel; the defaults give the plain roofline."""

    tensor_efficiency: float = 1.0  # share of the matmul unit's (measured) peak the main loop attains, 1
    warps_to_saturate: float | None = None  # warps per SM the instruction family needs for its full rate
    dram_latency_s: float | None = None  # loaded DRAM latency seen by an SM's loads, s (None: no term 2)
    l2_latency_s: float | None = None  # L2 hit latency, s
    kernel_fixed_s: float = 0.0  # GPU time of a launch beyond its work (ramp-up, drain), s
    launch_s: float | None = None  # host time per launch, s (None: the spec's kernel_launch_s)
    serial_compute: bool = False  # combine the compute units' times into one (the same warps run them)
    overlap: float = 0.0  # with serial_compute: share of the shorter of (MMA, exp + softmax) hidden under the
    # longer, 1: 0 = one after the other (FA2's warps), 1 = fully overlapped (ping-pong warpgroups, FA3 / cuDNN)
    memory_efficiency: float = 1.0  # share of the DRAM bandwidth the kernel's access pattern attains, 1
    smem_operands: bool = True  # False: MMA operands bypass the 128 B/clk load path (wgmma reads shared
    # memory through the tensor cores' own port), so shared-memory bandwidth is not a resource
    block_fixed_s: float = 0.0  # a block's time outside its main loop not hidden by co-resident blocks, s (term 6)


def per_sm_factor(blocks: int, sm_count: int) -> float:
    """ceil(b / SMs) x SMs / b: per-SM resources' time over the full-GPU roofline's (term 1, c = 1)."""
    return math.ceil(blocks / sm_count) * sm_count / blocks


def busiest_sm_units(blocks: int, sm_count: int, blocks_per_sm: int, block_share: float = 1.0) -> float:
    """T(n) of term 1: the busiest SM's time in units of one block's work at one SM's full rate."""
    n = math.ceil(blocks / sm_count)
    k = max(1, int(blocks_per_sm))
    c = min(1.0, block_share)
    full, rem = divmod(n, k)
    t = full * k / min(1.0, k * c)
    if rem:
        t += rem / min(1.0, rem * c)
    return t


def wave_factor(blocks: int, sm_count: int, blocks_per_sm: int, block_share: float = 1.0) -> float:
    """T(n) x P / b: a per-SM resource's time over its full-GPU roofline time."""
    return busiest_sm_units(blocks, sm_count, blocks_per_sm, block_share) * sm_count / blocks


def block_rounds(blocks: int, sm_count: int, blocks_per_sm: int) -> int:
    """ceil(ceil(b / P) / k): rounds of co-resident blocks the busiest SM runs (terms 2 and 6)."""
    return math.ceil(math.ceil(blocks / sm_count) / max(1, int(blocks_per_sm)))


def littles_law_time_s(global_bytes: float, hbm_bytes: float, blocks: int, sm_count: int, blocks_per_sm: int,
                       inflight_bytes_per_block: float, dram_latency_s: float, l2_latency_s: float) -> float:
    """Term 2: the busiest SM's rounds x a block's global bytes x mean latency / bytes in flight."""
    if inflight_bytes_per_block <= 0 or global_bytes <= 0:
        return 0.0
    dram_share = min(1.0, hbm_bytes / global_bytes)
    latency_s = dram_share * dram_latency_s + (1.0 - dram_share) * l2_latency_s
    return block_rounds(blocks, sm_count, blocks_per_sm) * (global_bytes / blocks) * latency_s / inflight_bytes_per_block


def block_share(threads_per_block: int, warps_to_saturate: float | None) -> float:
    """Term 3's c: the share of its SM's tensor rate one block can draw, its warps over the warps the
    instruction family needs in flight (1 where the family has no such limit)."""
    return 1.0 if warps_to_saturate is None else (threads_per_block / 32) / warps_to_saturate


def time_kernel(spec, k: KernelCount, dtype: str, tensor_cores: bool, params: TimingParams | None = None
                ) -> KernelResult:
    p = params or TimingParams()
    unit = matmul_unit(dtype, True) if tensor_cores else "fp32"
    l2_bytes = k.global_read_bytes + k.global_write_bytes
    hbm_bytes = k.hbm_read_bytes + k.hbm_write_bytes
    exp_ops = k.exp_ops if spec.sfu_exp_per_s is not None else 0.0  # no SFU rate: exp left untimed
    work = Work(matmul_flops=k.matmul_flops * k.pad_rows / p.tensor_efficiency, matmul_unit=unit,
                other_flops=k.other_flops, other_unit="fp32", exp_ops=exp_ops,
                hbm_bytes=hbm_bytes / p.memory_efficiency,
                l2_bytes=l2_bytes if spec.l2_bandwidth_Bps is not None else 0.0, smem_bytes=k.smem_bytes)
    rt = roofline_time(spec, work)  # every resource at the whole GPU's rate
    slots = spec.sm_count * k.blocks_per_sm
    share = block_share(k.threads_per_block, p.warps_to_saturate)
    factor = wave_factor(k.blocks, spec.sm_count, k.blocks_per_sm, share) * k.imbalance
    times_s = {r: float(t) * (1.0 if r in SHARED_RESOURCES else factor) for r, t in rt.times_s.items()}
    if not p.smem_operands:
        times_s.pop("smem", None)
    if p.serial_compute:
        units = [r for r in times_s if r in COMPUTE_RESOURCES]
        if units:
            mma = sum(times_s.pop(r) for r in units if r == unit)
            rest = sum(times_s.pop(r) for r in units if r != unit)
            times_s["compute"] = max(mma, rest) + (1.0 - p.overlap) * min(mma, rest)
    if p.dram_latency_s is not None and k.inflight_bytes_per_block > 0:
        times_s["latency"] = littles_law_time_s(l2_bytes, hbm_bytes, k.blocks, spec.sm_count, k.blocks_per_sm,
                                                k.inflight_bytes_per_block, p.dram_latency_s,
                                                p.l2_latency_s if p.l2_latency_s is not None else p.dram_latency_s)
    bound = max(times_s, key=times_s.get) if times_s else "none"
    launch_s = (spec.kernel_launch_s if p.launch_s is None else p.launch_s) * k.launches
    fixed_s = p.kernel_fixed_s * k.launches + block_rounds(k.blocks, spec.sm_count, k.blocks_per_sm) * p.block_fixed_s
    return KernelResult(
        name=k.name, grid=tuple(int(g) for g in k.grid), schedule=k.schedule, blocks=k.blocks,
        threads_per_block=k.threads_per_block, smem_per_block_bytes=k.smem_per_block_bytes,
        blocks_per_sm=k.blocks_per_sm, slots=slots, waves=math.ceil(k.blocks / slots),
        blocks_on_busiest_sm=math.ceil(k.blocks / spec.sm_count),
        flops=k.matmul_flops + k.other_flops, matmul_flops=k.matmul_flops, other_flops=k.other_flops,
        exp_ops=k.exp_ops, global_bytes=l2_bytes, global_read_bytes=k.global_read_bytes,
        global_write_bytes=k.global_write_bytes, hbm_bytes=hbm_bytes, hbm_read_bytes=k.hbm_read_bytes,
        hbm_write_bytes=k.hbm_write_bytes, l2_bytes=l2_bytes, smem_bytes=k.smem_bytes,
        roofline_time_s=float(rt.time_s), per_sm_factor=factor, launch_s=launch_s,
        time_s=(times_s[bound] if times_s else 0.0) + fixed_s + launch_s, bound=bound, times_s=times_s,
        fixed_s=fixed_s,
    )
