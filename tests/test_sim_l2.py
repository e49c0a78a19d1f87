"""The L2 wave model: occupancy and the per-wave rule (time over waves: test_sim_timing.py)."""

import pytest

from hardware_specs import load_gpu
from simulators import simulate_attention
from simulators.l2 import blocks_per_sm, wave_dram

A100 = load_gpu("a100-sxm4-40gb")


def test_wave_rule_fits_and_spills():
    # everything fits: distinct bytes only
    assert wave_dram(1000, 100, 50, 50, 150, 200) == (100, 50)
    # touched 400 > capacity 200: half the reuse survives
    assert wave_dram(1000, 100, 50, 50, 400, 200) == (100 + 450, 50)
    assert wave_dram(1000, 100, 0, 0, 10**12, 0) == (1000, 0)


def test_blocks_per_sm_from_shared_memory_and_registers():
    assert blocks_per_sm(A100, 48 * 1024, 128, 64) == 3  # 164 KB / 48 KB
    assert blocks_per_sm(A100, 1024, 256, 128) == 2  # 64k registers / (256 x 128)
    assert blocks_per_sm(A100, 1024, 128, 64, max_blocks=1) == 1
    with pytest.raises(ValueError, match="shared memory"):
        blocks_per_sm(A100, 200 * 1024, 128, 64)


def test_no_l2_means_dram_equals_global_requests():
    kw = dict(batch=2, heads=4, seq_len=1024, head_dim=64, block_r=64, block_c=64, causal=True)
    r = simulate_attention(A100, "flash2", l2_fraction=1e-9, **kw)
    assert r.hbm_bytes == pytest.approx(r.global_bytes, rel=1e-6)
    full = simulate_attention(A100, "flash2", **kw)
    assert full.hbm_bytes < 0.3 * full.global_bytes


def test_launch_order_decides_l2_reuse():
    """Query tiles of one head in one wave share K and V; heads-fastest launch spreads each head's
    tiles over every wave, so each wave needs every head's K and V and L2 cannot hold them."""
    kw = dict(batch=8, heads=16, seq_len=8192, head_dim=128, block_r=128, block_c=128)
    tiles = simulate_attention("h100-sxm5-80gb", "flash2", **kw)
    heads = simulate_attention("h100-sxm5-80gb", "flash2", grid_order="heads-fastest", **kw)
    assert tiles.global_bytes == heads.global_bytes
    assert heads.kernels[0].grid == (128, 64)
    assert heads.hbm_bytes > 5 * tiles.hbm_bytes
