"""The L2 wave model: occupancy, the per-wave rule and the footprint of tiles live at once (time over
waves: test_sim_timing.py). Expected numbers are hand counts of tiny grids, or Nsight Compute readings."""

import numpy as np
import pytest

from hardware_specs import load_gpu
from simulators import closed, walk as enum
from simulators.counting import H_READ, H_WRITE
from simulators import simulate_attention
from simulators.l2 import blocks_per_sm, boxes, max_live, wave_dram
from simulators.mask import Band, band_tile_classes
from simulators.problem import FlashProblem

A100 = load_gpu("a100-sxm4-40gb")


def test_wave_rule_fits_or_loses_every_reuse():
    # footprint 150 <= capacity 200: distinct bytes only
    assert wave_dram(1000, 100, 50, 50, 150, 200) == (100, 50)
    assert wave_dram(1000, 100, 50, 50, 200, 200) == (100, 50)
    # footprint 201 > 200: LRU over a cycle longer than the cache keeps nothing
    assert wave_dram(1000, 100, 50, 50, 201, 200) == (1000, 50)
    assert wave_dram(1000, 100, 0, 0, 10**12, 0) == (1000, 0)


def test_max_live_counts_tiles_live_at_one_step():
    # wave 0: 10 B over steps [0, 2], 5 B at step 2, 7 B over [3, 4] -> 15 B at step 2
    # wave 2: 4 B over [1, 1] and 4 B over [0, 5] -> 8 B; wave 1: nothing
    first, last = np.array([0, 2, 3, 1, 0]), np.array([2, 2, 4, 1, 5])
    pos, val = boxes(first, last, np.array([10, 5, 7, 4, 4]))
    np.testing.assert_array_equal(max_live(np.tile([0, 0, 0, 2, 2], 4), pos, val, 3), [15, 0, 8])


def test_blocks_per_sm_from_shared_memory_and_registers():
    assert blocks_per_sm(A100, 48 * 1024, 128, 64) == 3  # 164 KB / 48 KB
    assert blocks_per_sm(A100, 1024, 256, 128) == 2  # 64k registers / (256 x 128)
    assert blocks_per_sm(A100, 1024, 128, 64, max_blocks=1) == 1
    with pytest.raises(ValueError, match="shared memory"):
        blocks_per_sm(A100, 200 * 1024, 128, 64)


def _decode_dram(heads, splits, slots, tiles_fastest, capacity):
    p = FlashProblem(1, 4096, 64, 1, 128, 1, heads, 4, 4, 4, 4, Band(1, 4096))
    tc = band_tile_classes(1, 4096, p.band.left, p.band.right, 1, 128)[None]
    m = closed.decode(p, splits, None, slots, capacity, tiles_fastest)
    e = enum.decode(tc, 1, 4096, 128, 64, 4, 4, 1, heads, 4, splits, 0, slots, capacity, tiles_fastest)
    np.testing.assert_array_equal(m, e)
    return int(m[H_READ]), int(m[H_WRITE])


KV_HEAD = 2 * 4096 * 64 * 4  # K and V of one kv head: 32 tiles of 128 x 64 fp32 each: 2 MiB
Q = O = 64 * 4  # one query row, fp32


@pytest.mark.parametrize("slots,copies", [(8, 1), (4, 1), (2, 2), (1, 4)])
def test_decode_gqa_group_in_one_wave_reads_its_cache_once(slots, copies):
    """Decode, one block per query head (splits = 1), 4 query heads per kv head, 2 kv heads, a
    300 KB L2: each kv head's cache (2 MiB) is 7x the L2, but the group's blocks read K_j, V_j
    (64 KiB) at the same step. A wave holding a whole group reads the cache once; waves of 2 or 1
    blocks split each group over 2 or 4 waves, and each wave reads it again."""
    reads, writes = _decode_dram(8, 1, slots, True, 300_000)
    assert reads == copies * 2 * KV_HEAD + 8 * Q
    assert writes == 8 * (O + 4)  # O and lse of each head, once


def test_decode_launch_order_puts_a_group_in_one_wave_or_in_four():
    """Flash-Decoding, 4 splits of 8 tiles, 4 query heads of one kv head, 4 slots, 300 KB of L2.
    Split-fastest (blockIdx.x = split): wave h is query head h's 4 splits, 4 x 64 KiB live a step,
    the whole cache per wave: 4 x K and V. Heads-fastest: wave s is split s of the 4 heads, which
    read each tile together: K and V once, q once per head and wave."""
    splits_fastest = _decode_dram(4, 4, 4, True, 300_000)
    heads_fastest = _decode_dram(4, 4, 4, False, 300_000)
    assert splits_fastest == (4 * KV_HEAD + 4 * Q, 4 * 4 * (O + 4))
    assert heads_fastest == (KV_HEAD + 4 * 4 * Q, 4 * 4 * (O + 4))


def test_fa2_forward_query_tiles_share_each_kv_tile_at_its_step():
    """One head, 4 x 4 tiles of 64 rows, d = 16, fp32, one wave of 4 blocks. Q_i (4 KiB) is read at
    step 0 and kept in shared memory, K_t and V_t are read by all four blocks at step t, O_i and
    lse_i written at step 3: 4 Q + K_0 + V_0 = 24 KiB live at step 0, K_3 + V_3 + 4 (O + lse) =
    25,600 B at step 3. The 64 KiB the wave touches over its life do not matter."""
    p = FlashProblem(256, 256, 16, 64, 64, 1, 1, 1, 4, 4, 4, Band(256, 256))
    tc = band_tile_classes(256, 256, p.band.left, p.band.right, 64, 64)[None]
    tile, stats = 64 * 16 * 4, 64 * 4
    distinct, requested = 4 * tile + 8 * tile, 4 * tile + 4 * 8 * tile
    for cap, reads in ((25_600, distinct), (25_599, requested)):
        m = closed.fa2_fwd(p, 4, cap)
        np.testing.assert_array_equal(m, enum.fa2_fwd(tc, 256, 256, 64, 64, 16, 4, 4, 1, 1, 1, 4, cap))
        assert (m[H_READ], m[H_WRITE]) == (reads, 4 * (tile + stats))


def test_fa1_forward_two_by_two_tiles_live_footprint():
    """FA1 forward (kernel io), one head, 2 x 2 tiles of 64 rows, d = 16, fp32. Visits (j, i) =
    (0,0), (0,1), (1,0), (1,1) are steps 0-3. Row i's Q_i (4096 B) and workspace (O fp32, l, m:
    4608 B) are live from its first visit to its last; O_i + lse_i (4352 B) at the last; K_j + V_j
    (8192 B) at column j's first visit. Step 2 holds Q_0, Q_1, both workspaces, O_0, K_1, V_1:
    29,952 B. Reads: Q at every visit (4 x 4096), workspace at the second visits (2 x 4608), K, V
    once (16384): 41,984 requested, 33,792 distinct. Writes: workspace twice, O + lse twice."""
    p = FlashProblem(128, 128, 16, 64, 64, 1, 1, 1, 4, 4, 4, Band(128, 128))
    tc = band_tile_classes(128, 128, p.band.left, p.band.right, 64, 64)[None]
    for cap, reads in ((29_952, 33_792), (29_951, 41_984)):
        m = closed.fa1_fwd(p, 1, cap)
        np.testing.assert_array_equal(m, enum.fa1_fwd(tc, 128, 128, 64, 64, 16, 4, 4, 1, 1, 1, 1, cap, False))
        assert (m[H_READ], m[H_WRITE]) == (reads, 2 * 4608 + 2 * 4352)


# Nsight Compute on the project's H200 (ioaware validate --ncu, 2026-12-01): DRAM bytes read +
# written of our Numba kernels, fp32, predicted on the datasheet spec as costmodel/validation/predict.py does.
H200 = "h200-sxm-141gb"


def _h200(impl, **kw):
    return simulate_attention(H200, impl, dtype="fp32", tensor_cores=False, **kw).hbm_bytes


def test_h200_gqa_decode_reads_the_cache_once_nsight_compute():
    """Decode B16, 32 query / 8 kv heads, L = 16384, d = 64: K and V are 1.07 GB, 17x the 60 MiB L2;
    measured 1,073,969,664 B read and 132,608 written. The rule before (whole cache per wave
    against the L2) predicted 3.92e9."""
    kw = dict(batch=16, heads=32, kv_heads=8, seq_len=1, kv_len=16384, head_dim=64)
    assert _h200("flash-decoding", splits=1, **kw) == pytest.approx(1_073_969_664 + 132_608, rel=0.01)


def test_h200_fa1_forward_reuse_lost_when_rows_do_not_fit_nsight_compute():
    """FA1 forward B32 H32 N512 d64, 64 x 64 tiles: 528 resident blocks each cycle their 8 rows' Q_i
    and fp32 O_i, l_i, m_i through L2 at every K/V tile, about 2.2x the L2: measured 2,307,450,624 B
    read and 1,090,146,816 written, the global requests within 1%. The rule before (a C/F share of
    the re-use kept) predicted 2.93e9."""
    kw = dict(batch=32, heads=32, seq_len=512, head_dim=64, block_r=64, block_c=64)
    assert _h200("flash1", **kw) == pytest.approx(2_307_450_624 + 1_090_146_816, rel=0.02)


def test_no_l2_means_dram_equals_global_requests():
    kw = dict(batch=2, heads=4, seq_len=1024, head_dim=64, block_r=64, block_c=64, causal=True)
    r = simulate_attention(A100, "flash2", l2_fraction=1e-9, **kw)
    assert r.hbm_bytes == r.global_bytes
    full = simulate_attention(A100, "flash2", **kw)
    assert full.hbm_bytes < 0.3 * full.global_bytes


def test_launch_order_decides_l2_reuse():
    """Query tiles of one head in one wave share K and V; heads-fastest launch spreads each head's
    tiles over every wave: the 2 tiles of a head in a wave still share each K/V tile at its step,
    but every wave reads every head's whole K and V again."""
    kw = dict(batch=8, heads=16, seq_len=8192, head_dim=128, block_r=128, block_c=128)
    tiles = simulate_attention("h100-sxm5-80gb", "flash2", **kw)
    heads = simulate_attention("h100-sxm5-80gb", "flash2", grid_order="heads-fastest", **kw)
    assert tiles.global_bytes == heads.global_bytes
    assert heads.kernels[0].grid == (128, 64)
    assert heads.hbm_bytes > 5 * tiles.hbm_bytes


def test_kv_reused_across_consecutive_waves_when_the_pair_fits():
    """l2.py rule 5, counted by hand. FA2 forward, one head, N = L = 16384, d 64, fp16, 64 x 64 tiles,
    one block an SM (H100: 132 slots): 256 query tiles in two waves (132, 124), every block reading all
    of K and V (4 MiB). Q and O are 2 MiB each. With the whole L2 the pair of waves fits: K/V cross DRAM
    once (compulsory, 8 MiB + lse). With 6 MB usable each wave fits but the pair (K/V + Q/O = 8 MiB)
    does not: the second wave reads K/V again, 4 MiB more."""
    from hardware_specs import load_gpu
    from simulators import simulate_attention

    h100 = load_gpu("h100-sxm5-80gb")
    kw = dict(batch=1, heads=1, seq_len=16384, head_dim=64, dtype="fp16", block_r=64, block_c=64, max_blocks_per_sm=1)
    mib = 2 ** 20
    lse = 16384 * 4
    warm = simulate_attention(h100, "flash2", **kw).kernels[0]
    cold = simulate_attention(h100, "flash2", l2_fraction=6e6 / h100.l2_bytes, **kw).kernels[0]
    assert warm.waves == 2
    assert warm.hbm_bytes == 8 * mib + lse
    assert cold.hbm_bytes == 12 * mib + lse
    walked = simulate_attention(h100, "flash2", path="enumerate", l2_fraction=6e6 / h100.l2_bytes, **kw).kernels[0]
    assert walked.hbm_bytes == cold.hbm_bytes  # the block walk applies the same rule
