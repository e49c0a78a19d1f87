"""FlashAttention-1/2 counts against the papers: block sizes, Theorem 2's Theta(N^2 d^2 / M), causal
skipping, recomputation, GQA through L2, and the paper's Figure 2 numbers."""

import pytest

from simulators import flash_block_sizes, simulate_attention

A100, H100 = "a100-sxm4-40gb", "h100-sxm5-80gb"


def test_flash_block_sizes_seed_example():
    """Seed notes (Algorithm 1, line 1): d = 64, M = 100 KB of fp32 -> B_c = 100, B_r = 64."""
    assert flash_block_sizes(64, 100 * 1024 // 4) == (64, 100)


def _global(impl, n, **kw):
    base = dict(batch=1, heads=2, head_dim=64, dtype="fp16")
    return simulate_attention(A100, impl, seq_len=n, **{**base, **kw}).global_bytes


def test_fa1_hbm_accesses_theta_n2_d2_over_m():
    """Dao et al. 2022, Theorem 2: Theta(N^2 d^2 / M) with the paper's block rule: doubling N
    multiplies the accesses by ~4, doubling M halves them (the Theta(Nd) terms aside)."""
    kw = dict(fa1_io="paper")
    m = 32 * 1024  # bytes: 16k fp16 elements -> B_c = 64, B_r = 64
    assert 3.6 < _global("flash1", 8192, sram_bytes=m, **kw) / _global("flash1", 4096, sram_bytes=m, **kw) < 4.05
    assert 0.45 < _global("flash1", 8192, sram_bytes=2 * m, **kw) / _global("flash1", 8192, sram_bytes=m, **kw) < 0.6


def test_fa2_hbm_accesses_theta_n2_d2_over_m():
    """FA2 re-reads K and V once per query tile: Theta(N^2 d / B_r) = Theta(N^2 d^2 / M) when the
    query tile grows with M (the FA1 rule caps B_r at d, so tiles here are B_r = B_c = M / 4d)."""
    def g(n, tile):
        return _global("flash2", n, block_r=tile, block_c=tile)
    assert 3.6 < g(8192, 64) / g(4096, 64) < 4.05
    assert 0.45 < g(8192, 128) / g(8192, 64) < 0.6


def test_causal_flops_are_about_half():
    t = 4096 // 64
    dense = simulate_attention(A100, "flash2", batch=1, heads=2, seq_len=4096, head_dim=64, block_r=64, block_c=64)
    causal = simulate_attention(A100, "flash2", batch=1, heads=2, seq_len=4096, head_dim=64, block_r=64, block_c=64,
                                causal=True)
    assert causal.matmul_flops / dense.matmul_flops == pytest.approx((t + 1) / (2 * t), rel=1e-12)


def test_recomputation_costs_one_more_product_than_standard():
    """Without block skipping, FA's forward + backward runs 7 N x N x d products to standard's 6."""
    kw = dict(batch=2, heads=4, seq_len=1024, head_dim=64, causal=True, pass_="fwd+bwd")
    std = simulate_attention(A100, "standard", **kw)
    fa = simulate_attention(A100, "flash2", skip_masked_tiles=False, block_r=64, block_c=64, **kw)
    assert fa.matmul_flops == pytest.approx(7 / 6 * std.matmul_flops, rel=1e-12)


def test_gqa_divides_kv_dram_bytes_by_the_group_factor():
    """Decode, one block per (batch, query head): each block requests its kv head's cache, so the
    global requests do not change with GQA, but the blocks of a group share it through L2."""
    kw = dict(batch=1, heads=32, seq_len=1, kv_len=1024, head_dim=128, splits=1)
    mha = simulate_attention(A100, "flash-decoding", **kw)
    gqa = simulate_attention(A100, "flash-decoding", kv_heads=8, **kw)
    q_bytes = 32 * 128 * 2
    assert mha.global_bytes == gqa.global_bytes
    assert mha.kernels[0].hbm_read_bytes - q_bytes == 4 * (gqa.kernels[0].hbm_read_bytes - q_bytes)


def test_h100_reads_kv_about_once_from_dram_with_128_tiles():
    """FA2 forward, 128 x 128 tiles: every query tile re-reads K and V from global memory (L2), yet
    the query tiles of one head run in the same wave, so DRAM sees K and V about once."""
    n, d, bh = 8192, 128, 16
    r = simulate_attention(H100, "flash2", batch=1, heads=bh, seq_len=n, head_dim=d, block_r=128, block_c=128)
    k = r.kernels[0]
    tensor = bh * n * d * 2
    assert k.global_read_bytes == tensor + (n // 128) * 2 * tensor  # Q once, K and V per query tile
    # 264 slots hold 4.1 heads' 64 query tiles: heads cut by a wave boundary fetch K, V twice
    assert 3 * tensor <= k.hbm_read_bytes < 1.15 * 3 * tensor


def test_flashattention_gpt2_medium_fa_paper_figure2():
    """FlashAttention paper Figure 2 (seed 003): FA fwd + bwd on GPT-2 medium, 4.4 GB of HBM accesses
    (global memory requests). Algorithm 1 and 4 verbatim, causal tiles skipped: 4.5 GB."""
    r = simulate_attention(A100, "flash1", batch=64, heads=16, seq_len=1024, head_dim=64, dtype="fp16",
                           causal=True, dropout=0.1, pass_="fwd+bwd", fa1_io="paper")
    assert 0.9 < r.global_bytes / 4.4e9 < 1.15
    assert r.global_bytes < r.hbm_bytes * 1.5  # L2 catches part of the Q_i, O_i re-reads


def test_simt_flag_moves_matmuls_to_fp32_lanes():
    kw = dict(batch=4, heads=16, seq_len=2048, head_dim=64, block_r=64, block_c=64, dtype="fp32")
    tc = simulate_attention(A100, "flash2", **kw)
    simt = simulate_attention(A100, "flash2", tensor_cores=False, **kw)
    assert "tf32_tensor" in tc.kernels[0].times_s and "tf32_tensor" not in simt.kernels[0].times_s
    assert simt.time_s > tc.time_s


def test_flash_rejects_tiles_that_do_not_fit():
    with pytest.raises(ValueError, match="head_dim: 512"):
        simulate_attention(A100, "flash2", batch=1, heads=1, seq_len=128, head_dim=512, block_r=128, block_c=128)


# Nsight Compute on the project's H200 (ioaware validate --ncu, 2026-12-01), fp32, our Numba kernels
BWD = dict(batch=32, heads=32, seq_len=512, head_dim=64, block_r=64, block_c=64, dtype="fp32", tensor_cores=False)


def test_h200_fa2_backward_main_kernel_dram_nsight_compute():
    """The main backward kernel (K_j, V_j once, Q_i, dO_i, lse_i, D_i per key tile, dQ atomics):
    measured 675,585,280 B read and 384,931,584 written."""
    k = simulate_attention("h200-sxm-141gb", "flash2", pass_="bwd", **BWD).kernel("flash2_bwd")
    assert k.hbm_bytes == pytest.approx(675_585_280 + 384_931_584, rel=0.05)


def test_h200_fa2_backward_dram_nsight_compute():
    """Fill dQ, preprocess D = rowsum(dO o O) (one warp per row since 2026-12-02: it read 1.78 GB,
    6.6x its O and dO, with one row a thread), main kernel: measured 943,988,480 B read and 490,282,496
    written in all (costmodel/validation/results/h200/issue17/validation-fixes.json)."""
    r = simulate_attention("h200-sxm-141gb", "flash2", pass_="bwd", **BWD)
    assert r.hbm_bytes == pytest.approx(943_988_480 + 490_282_496, rel=0.05)
