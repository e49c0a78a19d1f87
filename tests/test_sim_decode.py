"""Flash-Decoding: splits of the KV cache, the log-sum-exp reduction, paged caches."""

import pytest

from simulators import simulate_attention
from simulators.counting import decode_combine_flops

A100 = "a100-sxm4-40gb"
KW = dict(batch=2, heads=8, kv_heads=2, seq_len=1, kv_len=5000, head_dim=128)


@pytest.mark.parametrize("splits", [2, 5, 16])
def test_flash_decoding_splits_sum_to_unsplit_flops_plus_reduction(splits):
    """Each split finishes its own partial O_s and lse_s (Q scale, O / l, lse: r(2d + 2) FLOPs and r exp),
    then the combine kernel reduces them; the tile loop's FLOPs are the same however the cache is cut."""
    one = simulate_attention(A100, "flash-decoding", splits=1, **KW)
    many = simulate_attention(A100, "flash-decoding", splits=splits, **KW)
    bh, d, tiles = 16, 128, -(-5000 // 128)
    busy = -(-tiles // -(-tiles // splits))  # splits with at least one tile (16 splits of 3 tiles: 14)
    combine = decode_combine_flops(splits, 1, d)
    assert [k.name for k in many.kernels] == ["decode", "decode_combine"]
    assert many.flops == one.flops + (busy - 1) * bh * (2 * d + 2) + bh * combine["other"]
    assert many.exp_ops == one.exp_ops + (busy - 1) * bh + bh * combine["exp"]
    assert many.kernels[0].grid == (splits, bh)


def test_decode_is_fa2_forward_with_one_query_tile():
    dec = simulate_attention(A100, "flash-decoding", splits=1, block_c=64, **KW)
    fa2 = simulate_attention(A100, "flash2", block_r=1, block_c=64, **KW)
    assert dec.flops == fa2.flops and dec.global_bytes == fa2.global_bytes


def test_paged_cache_reads_one_int32_per_page_per_block():
    page, bh, batch = 16, 16, 2
    flat = simulate_attention(A100, "flash-decoding", splits=1, **KW)
    paged = simulate_attention(A100, "flash-decoding", splits=1, page_size=page, **KW)
    pages = -(-5000 // page)
    assert paged.global_bytes - flat.global_bytes == bh * pages * 4
    assert paged.hbm_bytes - flat.hbm_bytes == batch * pages * 4  # heads of a sequence share its table in L2
    assert paged.schedule["kv_cache_bytes_paged"] >= paged.schedule["kv_cache_bytes_contiguous"]


def test_splitting_fills_the_sms_when_batch_times_heads_is_small():
    """B*H = 32 blocks use 32 of 108 SMs; per-SM resources then bind: the bytes one block keeps in flight
    (Little's law, timing.py term 2) first, our SIMT kernel's FP32 lanes next (q, K, V sit in registers:
    kernels/decode.py). Splitting the cache into S = 7 (two waves of one block per SM) spreads the work
    over all SMs."""
    kw = dict(batch=1, heads=32, kv_heads=8, seq_len=1, kv_len=8192, head_dim=128, tensor_cores=False)
    one = simulate_attention(A100, "flash-decoding", splits=1, **kw)
    split = simulate_attention(A100, "flash-decoding", **kw)  # default: two waves of blocks
    assert split.schedule["splits"] == 7
    assert one.bound == "latency"
    assert one.kernels[0].times_s["fp32"] > max(one.kernels[0].times_s[r] for r in ("hbm", "l2", "smem"))
    fp32_one, fp32_split = one.kernels[0].times_s["fp32"], split.kernels[0].times_s["fp32"]
    # 32 blocks: one block's FLOPs at one SM's rate; 224 blocks over 108 SMs: ceil(224/108) = 3 blocks'
    # worth of the (7x smaller) split blocks' FLOPs, so 3/7 of the time.
    assert fp32_split == pytest.approx(fp32_one * 3 / 7, rel=0.02)


def test_splitting_speeds_up_hbm_bound_decode():
    """32 blocks (one per head) cannot draw the A100's HBM: each keeps one K tile in flight, so an SM
    pulls at most tile bytes / latency (Little's law, simulators/timing.py term 2) and the unsplit call
    is bound by that per-SM limit ("latency"); splitting fills the SMs and the time drops to the
    shared bandwidth's. (Before the term existed this was xfail: 32 SMs drew all of the HBM.)"""
    kw = dict(batch=1, heads=32, kv_heads=8, seq_len=1, kv_len=32768, head_dim=128)
    one = simulate_attention(A100, "flash-decoding", splits=1, **kw)
    split = simulate_attention(A100, "flash-decoding", **kw)
    assert one.bound == "latency"
    assert split.kernels[0].times_s["latency"] < split.kernels[0].times_s["hbm"] + split.kernels[0].times_s["l2"]
    assert split.time_s < one.time_s / 2


def test_decode_rejects_bad_splits_and_backward():
    with pytest.raises(ValueError, match="splits"):
        simulate_attention(A100, "flash-decoding", splits=1000, **KW)
    with pytest.raises(ValueError, match="pass"):
        simulate_attention(A100, "flash-decoding", pass_="bwd", **KW)


@pytest.mark.parametrize("d,dtype,itemsize", [(32, "fp32", 4), (64, "fp32", 4), (128, "fp32", 4),
                                               (64, "fp16", 2), (128, "fp16", 2)])
def test_decode_tile_and_footprint_are_the_kernels(d, dtype, itemsize):
    """The simulator's decode schedule is kernels/decode.py's: the same keys per tile and the same
    shared memory per block (its merge buffers), read from the kernel's own DecodeTiles."""
    from kernels.decode import DecodeTiles, default_threads

    cfg = DecodeTiles(d, default_threads(d), itemsize)
    r = simulate_attention(A100, "flash-decoding", batch=2, heads=8, kv_heads=2, seq_len=1, kv_len=4096,
                           head_dim=d, dtype=dtype, splits=1, tensor_cores=False)
    assert r.schedule["block_c"] == cfg.keys_per_tile
    k = r.kernels[0]
    assert k.threads_per_block == cfg.num_threads
    assert k.blocks_per_sm == 65536 // (cfg.num_threads * 128)  # 64K registers / (threads x the 128 cap)
    # On the GPU the merge buffers are all (the simulator adds a stand-in for the shuffles after them)
    assert k.smem_per_block_bytes == 4 * cfg.smem()["r_off"]
    h200 = {(64, 4): 9600, (128, 4): 17792}  # dynamic smem numba reported on the H200 (bench_decode.json)
    if (d, itemsize) in h200:
        assert k.smem_per_block_bytes == h200[(d, itemsize)]
