"""The timing model's terms (simulators/timing.py) on constructed kernels, against hand counts.

Each kernel is built by hand (a KernelCount with chosen grid, warps, FLOPs and bytes), so the
expected times come from the datasheet rates of the H100 SXM5 spec and arithmetic, not from the
model's own output.
"""

import math

import pytest

from hardware_specs import load_gpu
from simulators.results import KernelCount
from simulators.timing import TimingParams, busiest_sm_units, littles_law_time_s, time_kernel

H100 = load_gpu("h100-sxm5-80gb")
SMS = 132
BF16_TC = 989.4e12  # H100 SXM5 dense bf16 tensor peak, whitepaper Table 3
HBM_Bps = 3.35e12


def kernel(blocks, threads=128, blocks_per_sm=2, flops=0.0, hbm=0, global_bytes=None, inflight=0.0, **kw):
    g = hbm if global_bytes is None else global_bytes
    return KernelCount(name="k", grid=(blocks,), schedule="constructed", matmul_flops=flops, other_flops=0.0,
                       exp_ops=0.0, global_read_bytes=g, global_write_bytes=0, hbm_read_bytes=hbm, hbm_write_bytes=0,
                       smem_bytes=0.0, smem_per_block_bytes=0, threads_per_block=threads, blocks_per_sm=blocks_per_sm,
                       inflight_bytes_per_block=inflight, **kw)


def test_one_block_more_than_a_wave_costs_a_wave():
    """Blocks of 4 warps on an instruction family that needs 8 warps an SM (c = 1/2, 2 blocks an SM):
    264 blocks fill one wave; the 265th runs alone on its SM at half that SM's rate, so the kernel
    takes two waves' time."""
    p = TimingParams(warps_to_saturate=8)
    per_block = 1e9  # FLOPs a block
    t = {b: time_kernel(H100, kernel(b, flops=b * per_block), "bf16", True, p).times_s["bf16_tensor"]
         for b in (264, 265)}
    wave_s = 2 * per_block / (BF16_TC / SMS)  # two co-resident blocks' work at one SM's full rate
    assert t[264] == pytest.approx(wave_s)
    assert t[265] == pytest.approx(2 * wave_s)
    assert busiest_sm_units(265, SMS, 2, 0.5) == 4  # two rounds of 2 block-units each


def test_a_block_that_can_fill_its_sm_makes_the_tail_cheap():
    """The same grid with blocks that can each draw the whole SM (c = 1): the lone 265th block runs
    at the full SM rate, half a wave (the staircase of the plain per-SM rule)."""
    per_block = 1e9
    t = {b: time_kernel(H100, kernel(b, flops=b * per_block), "bf16", True).times_s["bf16_tensor"] for b in (264, 265)}
    assert t[265] == pytest.approx(1.5 * t[264])


def test_issue_share_of_a_lone_block():
    """One block of 4 warps, 8 warps needed: it reaches half of one SM's tensor rate."""
    k = kernel(1, flops=1e9, blocks_per_sm=1)
    full = time_kernel(H100, k, "bf16", True).times_s["bf16_tensor"]
    half = time_kernel(H100, k, "bf16", True, TimingParams(warps_to_saturate=8)).times_s["bf16_tensor"]
    assert full == pytest.approx(1e9 / (BF16_TC / SMS))
    assert half == pytest.approx(2 * full)


def test_few_blocks_cannot_draw_the_whole_hbm():
    """32 blocks (B*H < SMs), each keeping 64 KiB in flight against a 1 us latency: an SM draws at most
    64 KiB / 1 us = 65.5 GB/s, the grid 2.1 TB/s, under the 3.35 TB/s of HBM (Little's law)."""
    inflight, lat = 65536.0, 1e-6
    hbm = 32 * 8 * 2**20  # 8 MiB a block, all from DRAM
    k = kernel(32, hbm=hbm, inflight=inflight, blocks_per_sm=1)
    r = time_kernel(H100, k, "bf16", True, TimingParams(dram_latency_s=lat, l2_latency_s=0.3e-6))
    expect = (hbm / 32) * lat / inflight
    assert r.times_s["latency"] == pytest.approx(expect)
    assert r.times_s["hbm"] == pytest.approx(hbm / HBM_Bps)
    assert r.bound == "latency"
    drawn_Bps = hbm / r.times_s["latency"]
    assert drawn_Bps == pytest.approx(32 * inflight / lat) and drawn_Bps < HBM_Bps
    # enough blocks to fill every SM twice over: the shared bandwidth binds again
    big = kernel(528, hbm=528 * 2**20, inflight=inflight, blocks_per_sm=2)
    assert time_kernel(H100, big, "bf16", True, TimingParams(dram_latency_s=lat)).bound == "hbm"


def test_mean_latency_weights_l2_hits():
    """A quarter of the bytes from DRAM (1 us), the rest L2 hits (0.2 us): mean latency 0.25 + 0.15 = 0.4 us."""
    t = littles_law_time_s(global_bytes=4e6, hbm_bytes=1e6, blocks=1, sm_count=SMS, blocks_per_sm=1,
                           inflight_bytes_per_block=1e4, dram_latency_s=1e-6, l2_latency_s=2e-7)
    assert t == pytest.approx(4e6 * 0.4e-6 / 1e4)


def test_fixed_and_launch_costs_add_per_launch():
    k = kernel(132, launches=3)
    r = time_kernel(H100, k, "bf16", True, TimingParams(kernel_fixed_s=2e-6, launch_s=5e-6))
    assert r.time_s == pytest.approx(3 * (2e-6 + 5e-6))


def test_serial_compute_sums_the_units():
    """MMA then exp in the same warps (FA2): their times add instead of overlapping."""
    k = KernelCount(name="k", grid=(264,), schedule="", matmul_flops=264e9, other_flops=0.0, exp_ops=264e7,
                    global_read_bytes=0, global_write_bytes=0, hbm_read_bytes=0, hbm_write_bytes=0, smem_bytes=0.0,
                    smem_per_block_bytes=0, threads_per_block=128, blocks_per_sm=2)
    plain = time_kernel(H100, k, "bf16", True).times_s
    serial = time_kernel(H100, k, "bf16", True, TimingParams(serial_compute=True)).times_s
    assert serial["compute"] == pytest.approx(plain["bf16_tensor"] + plain["sfu_exp"])


def test_occupancy_from_registers():
    """FlashAttention-2's forward at d = 128 as Nsight Compute saw it on the H200: 128 threads x 255
    registers and 64 KiB of shared memory a block: 65536 registers / (128 x 255) = 2 blocks an SM."""
    from simulators import simulate_attention

    r = simulate_attention("h200-sxm-141gb", "torch-flash", batch=8, heads=16, seq_len=2048, head_dim=128,
                           dtype="bf16")
    k = r.kernels[0]
    assert k.threads_per_block == 128 and k.blocks_per_sm == 65536 // (128 * 255) == 2
    assert k.smem_per_block_bytes == (128 * 128 + 2 * 64 * 128) * 2 == 65536
    assert k.slots == 2 * 132 and k.waves == math.ceil(k.blocks / 264)


@pytest.mark.parametrize("blocks,blocks_per_sm,rounds", [(132, 1, 1), (133, 1, 2), (264, 2, 1), (265, 2, 2),
                                                         (1000, 2, 4), (1, 4, 1)])
def test_a_blocks_own_latency_is_paid_once_a_round(blocks, blocks_per_sm, rounds):
    """Term 6: block_fixed_s is charged per round of co-resident blocks on the busiest SM,
    ceil(ceil(b / 132) / k) rounds, counted here by hand; nothing else moves."""
    k = kernel(blocks, blocks_per_sm=blocks_per_sm, flops=blocks * 1e9)
    base = time_kernel(H100, k, "bf16", True)
    with_block = time_kernel(H100, k, "bf16", True, TimingParams(block_fixed_s=2e-6))
    assert with_block.time_s - base.time_s == pytest.approx(rounds * 2e-6)
    assert with_block.times_s == base.times_s

