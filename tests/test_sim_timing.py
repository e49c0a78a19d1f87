"""Kernel time (simulators/timing.py): per-SM resources on the busiest SM, DRAM and L2 shared.

Expected numbers are built from the spec's datasheet rates and hand counts, not from the
simulator's own factor.
"""

import pytest

from hardware_specs import load_gpu
from simulators import simulate_attention
from simulators.timing import per_sm_factor

H100 = load_gpu("h100-sxm5-80gb")
SMS = 132  # H100 SXM5 (whitepaper Table 3)
FP32_Bps = 66.9e12  # FP32 SIMT peak, FLOP/s
HBM_Bps = 3.35e12


def test_per_sm_factor_counts_blocks_on_the_busiest_sm():
    assert per_sm_factor(32, SMS) == pytest.approx(132 / 32)  # one block per SM, 100 SMs idle
    assert per_sm_factor(132, SMS) == 1.0
    assert per_sm_factor(133, SMS) == pytest.approx(2 * 132 / 133)  # one SM runs two blocks
    assert per_sm_factor(528, SMS) == 1.0


def test_decode_32_blocks_on_h100_each_block_has_one_sm():
    """Flash-Decoding without splits: grid B*H = 32 blocks on 132 SMs. Each block has an SM to itself,
    so its FP32 time is one block's FLOPs at one SM's FP32 rate (66.9 TFLOP/s / 132); DRAM is charged at
    the whole GPU's bandwidth (timing.py: no per-SM bandwidth limit). The rule before charged every
    resource x slots / 32 (each block 1/blocks-per-SM of an SM, and 1/slots of the HBM)."""
    L, d = 4096, 128
    r = simulate_attention(H100, "flash-decoding", batch=1, heads=32, seq_len=1, kv_len=L, head_dim=d,
                           splits=1, tensor_cores=False)
    k = r.kernels[0]
    assert k.grid == (1, 32) and k.blocks == 32
    assert k.matmul_flops == 32 * 4 * L * d  # per head q K^T and P V: 2 L d each
    block_flops = (k.matmul_flops + k.other_flops) / 32
    assert k.times_s["fp32"] == pytest.approx(block_flops / (FP32_Bps / SMS))
    assert k.times_s["hbm"] == pytest.approx(k.hbm_bytes / HBM_Bps)
    smem_Bps_per_sm = 128 * 1.98e9  # 32 banks x 4 B per clock at the 1.98 GHz boost clock
    assert k.times_s["smem"] == pytest.approx(k.smem_bytes / 32 / smem_Bps_per_sm)
    assert k.time_s == pytest.approx(max(k.times_s.values()) + 3e-6)
    old = k.roofline_time_s * (k.slots / 32) + 3e-6
    assert k.time_s < old / 3


# FA2 forward, one query tile per head (seq_len = B_r = 64) against 1024 keys: every block does the same
# work, the grid is (1, heads), so blocks = heads. At most 2 blocks per SM: 264 slots.
KW = dict(batch=1, seq_len=64, kv_len=1024, head_dim=64, block_r=64, block_c=64, tensor_cores=False,
          max_blocks_per_sm=2)


def _kernel(heads):
    k = simulate_attention(H100, "flash2", heads=heads, **KW).kernels[0]
    assert k.blocks == heads and k.blocks_per_sm == 2 and k.slots == 264
    return k


def test_full_waves_cost_the_full_gpu_roofline():
    """Exactly two full waves (528 blocks on 264 slots): every SM busy throughout, as before."""
    k = _kernel(528)
    assert k.waves == 2
    assert k.times_s["fp32"] == pytest.approx(k.flops / FP32_Bps)
    assert k.times_s["hbm"] == pytest.approx(k.hbm_bytes / HBM_Bps)
    assert k.time_s == pytest.approx(k.roofline_time_s + 3e-6)


def test_per_sm_time_is_a_staircase_in_blocks_per_sm():
    """Equal blocks, so per-SM time is (blocks on the busiest SM) x (one block alone on an SM). One full
    wave (264) puts 2 on each SM; 32 or 132 blocks put 1; a wave plus one block puts 3 on one SM
    (1.5 waves' time, where the rule before charged two full waves)."""
    block_alone_s = _kernel(1).flops / (FP32_Bps / SMS)
    expect_busiest = {1: 1, 32: 1, 132: 1, 133: 2, 264: 2, 265: 3, 528: 4}
    for heads, busiest in expect_busiest.items():
        k = _kernel(heads)
        assert k.blocks_on_busiest_sm == busiest
        assert k.times_s["fp32"] == pytest.approx(busiest * block_alone_s), heads
        assert k.times_s["hbm"] == pytest.approx(k.hbm_bytes / HBM_Bps), heads
    wave, wave_plus_one = _kernel(264), _kernel(265)
    assert wave.bound not in ("hbm", "l2") and wave_plus_one.bound == wave.bound  # a per-SM resource binds
    assert wave_plus_one.time_s - 3e-6 == pytest.approx(1.5 * (wave.time_s - 3e-6))
    assert wave_plus_one.waves == 2


def test_flash1_grid_of_16_blocks_on_a100():
    """FA1 forward launches one block per (batch, head): 16 blocks on 108 SMs, each alone on its SM."""
    r = simulate_attention("a100-sxm4-40gb", "flash1", batch=1, heads=16, seq_len=2048, head_dim=64,
                           block_r=64, block_c=64)
    k = r.kernels[0]
    assert k.blocks == 16 and k.waves == 1 and k.blocks_on_busiest_sm == 1
    assert k.per_sm_factor == pytest.approx(108 / 16)
    assert k.times_s["smem"] == pytest.approx(k.smem_bytes / 16 / (128 * 1.41e9))  # 128 B/clk, 1.41 GHz
