"""kernels/decode.py: one-block-per-head decoding and Flash-Decoding (split KV plus a
log-sum-exp combine) against the float64 reference, in the simulator.

Most cases use 32 threads (4 key groups of 8 lanes), so a tile holds 4 * 256 / d keys
with fp32 (32 at d = 32, 16 at d = 64, 8 at d = 128) and twice that with fp16."""
import numpy as np
import pytest

from kernels import decode_attention, flash_decoding, poisoned_outputs, reference
from kernels._cuda import sm_count
from kernels.decode import DecodeTiles, default_num_splits, default_threads


def _inputs(rng, H=4, Hkv=2, L=77, d=32, dtype=np.float32, B=1):
    q = rng.standard_normal((B, H, 1, d)).astype(dtype)
    k = rng.standard_normal((B, Hkv, L, d)).astype(dtype)
    v = rng.standard_normal((B, Hkv, L, d)).astype(dtype)
    return q, k, v


def _tol(dtype):
    return 2e-3 if dtype == np.float16 else 1e-5


def _check(o, lse, q, k, v, tol, scale=None):
    ro, rl = reference.decode(q, k, v, scale=scale)
    assert o.shape == q.shape and o.dtype == q.dtype and lse.shape == q.shape[:3]
    assert np.isfinite(o).all() and np.isfinite(lse).all()
    assert reference.rel_error(o, ro) < tol and reference.rel_error(lse, rl) < 1e-5


def test_decode_one_block_per_head_gqa():
    rng = np.random.default_rng(601)
    q, k, v = _inputs(rng)
    with poisoned_outputs():
        o, lse = decode_attention(q, k, v, num_threads=32)
    _check(o, lse, q, k, v, 1e-5)


@pytest.mark.parametrize("splits,dtype,hkv", [(3, np.float32, 1), (2, np.float16, 2), (5, np.float32, 4)])
def test_flash_decoding_splits_not_dividing_L(splits, dtype, hkv):
    """77 keys in tiles of 32: 3 splits get 32, 32, 13 keys; 5 splits leave two empty."""
    rng = np.random.default_rng(602)
    q, k, v = _inputs(rng, Hkv=hkv, dtype=dtype)
    with poisoned_outputs():
        o, lse = flash_decoding(q, k, v, num_splits=splits, num_threads=32)
    _check(o, lse, q, k, v, _tol(dtype))


@pytest.mark.parametrize("L,H,Hkv,dtype", [
    (1, 4, 1, np.float32),    # one key, MQA: three of the four groups never see a key
    (65, 4, 2, np.float16),   # a tile (64 fp16 keys) and one key, GQA
    (31, 2, 2, np.float32),   # odd, shorter than a tile, one kv head per query head
    (65, 8, 1, np.float32),   # two tiles and one key, MQA with 8 query heads
])
def test_decode_cache_lengths_off_the_tile(L, H, Hkv, dtype):
    rng = np.random.default_rng(603)
    q, k, v = _inputs(rng, H=H, Hkv=Hkv, L=L, dtype=dtype)
    with poisoned_outputs():
        o, lse = decode_attention(q, k, v, num_threads=32)
    _check(o, lse, q, k, v, _tol(dtype))


@pytest.mark.parametrize("d,dtype", [(64, np.float32), (128, np.float32), (128, np.float16)])
def test_decode_head_dims_batches(d, dtype):
    """Tiles of 16 (d = 64) and 8 (d = 128, 16 with fp16) keys; two sequences, so kv head = b + h // 2."""
    rng = np.random.default_rng(604)
    T = DecodeTiles(d, 32, np.dtype(dtype).itemsize).keys_per_tile
    q, k, v = _inputs(rng, B=2, H=2, Hkv=1, L=2 * T + 3, d=d, dtype=dtype)
    with poisoned_outputs():
        o, lse = decode_attention(q, k, v, num_threads=32)
        o2, lse2 = flash_decoding(q, k, v, num_splits=2, num_threads=32)
    _check(o, lse, q, k, v, _tol(dtype))
    _check(o2, lse2, q, k, v, _tol(dtype))


@pytest.mark.parametrize("L,splits", [(33, 6), (1, 3)])
def test_flash_decoding_more_splits_than_tiles(L, splits):
    """33 keys are 2 tiles of 32, so 4 of 6 splits are empty; 1 key leaves 2 of 3 empty:
    an empty split writes o_s = 0 and lse_s = -inf, which the combine weighs 0."""
    rng = np.random.default_rng(605)
    q, k, v = _inputs(rng, L=L, Hkv=1)
    with poisoned_outputs():
        o, lse = flash_decoding(q, k, v, num_splits=splits, num_threads=32)
    _check(o, lse, q, k, v, 1e-5)


def test_decode_default_threads_and_scale():
    """256 threads (32 groups, 256 keys per tile at d = 32): 300 keys are two tiles."""
    rng = np.random.default_rng(606)
    q, k, v = _inputs(rng, H=2, Hkv=1, L=300)
    with poisoned_outputs():
        o, lse = decode_attention(q, k, v, scale=0.3)
    _check(o, lse, q, k, v, 1e-5, scale=0.3)


def test_decode_64_threads_fp16_splits():
    rng = np.random.default_rng(607)
    q, k, v = _inputs(rng, L=150, d=64, dtype=np.float16)  # tiles of 64 keys: 3 tiles, 3 splits
    with poisoned_outputs():
        o, lse = flash_decoding(q, k, v, num_splits=3, num_threads=64)
    _check(o, lse, q, k, v, 2e-3)


def test_tile_sizes_and_shared_memory():
    """n = 256 pk / d keys per group, 32 words of K per lane; shared memory is the merge alone."""
    assert default_threads(128) == 256
    assert [DecodeTiles(d, 256).keys_per_tile for d in (32, 64, 128)] == [256, 128, 64]
    assert [DecodeTiles(d, 256, 2).keys_per_tile for d in (32, 64, 128)] == [512, 256, 128]
    assert DecodeTiles(128, 32).keys_per_tile == 8
    lay = DecodeTiles(128, 256).smem()
    assert lay["r_off"] == 3 * 32 + 32 * (128 + 8)
    assert DecodeTiles(128, 256).smem_bytes() < 48 * 1024


def test_decode_argument_checks():
    q = np.ones((1, 2, 1, 32), np.float32)
    kc = np.ones((1, 1, 10, 32), np.float32)
    with pytest.raises(ValueError, match="num_threads=48 must be a multiple of 32"):
        decode_attention(q, kc, kc, num_threads=48)
    with pytest.raises(ValueError, match="cache length must be at least 1"):
        decode_attention(q, kc[:, :, :0], kc[:, :, :0])


def test_default_splits_two_waves_at_least_one_tile():
    sms = sm_count()  # 1 in the simulator
    assert default_num_splits(2 * sms, 77, 32) == 1  # the heads already give two waves
    assert default_num_splits(1, 77, 32) == min(2 * sms, 3)  # at most one split per tile (3)
    assert default_num_splits(1, 10, 32) == 1


@pytest.mark.parametrize("splits,dtype,L", [(1, np.float32, 45), (3, np.float16, 77), (None, np.float32, 33)])
def test_prepared_decode_step_rereads_its_inputs(splits, dtype, L):
    """prepare_decode: checked and bound once, then called again after fresh queries and
    caches are written into its device arrays in place; each call matches the float64
    reference of what the arrays hold then, with the outputs poisoned before each call."""
    from kernels import prepare_decode

    rng = np.random.default_rng(1717 + L)
    q, k, v = _inputs(rng, H=4, Hkv=2, L=L, d=32, dtype=dtype)
    step = prepare_decode(q, k, v, num_splits=splits, num_threads=32)
    for _ in range(2):
        for name, x in (("o", step.o), ("lse", step.lse)):
            x.copy_to_device(np.full(x.shape, np.nan, x.dtype))
        o, lse = step()
        _check(o.copy_to_host(), lse.copy_to_host(), q, k, v, _tol(dtype))
        q, k, v = _inputs(rng, H=4, Hkv=2, L=L, d=32, dtype=dtype)
        step.q.copy_to_device(q)
        step.k_cache.copy_to_device(k)
        step.v_cache.copy_to_device(v)


def test_prepared_decode_checks_at_prepare():
    from kernels import prepare_decode

    q = np.ones((1, 2, 1, 32), np.float32)
    kc = np.ones((1, 1, 10, 32), np.float32)
    with pytest.raises(ValueError, match="num_splits must be a positive integer, got 0"):
        prepare_decode(q, kc, kc, num_splits=0)
    with pytest.raises(ValueError, match="heads must be a multiple of kv_heads"):
        prepare_decode(q, np.ones((1, 3, 10, 32), np.float32), np.ones((1, 3, 10, 32), np.float32))


@pytest.mark.parametrize("H,Hkv,R,L,d,dtype,splits", [
    (8, 2, 4, 77, 32, np.float32, 1),     # the whole group of 4 per block, 77 keys: off the tile
    (8, 2, 4, 70, 64, np.float16, 3),     # fp16 pairs, split KV, one split part empty
    (8, 1, 8, 9, 128, np.float32, 2),     # MQA with 8 query heads: 32 lanes a key, 4 dims a lane, 1-key tiles
    (8, 2, 2, 33, 128, np.float32, 1),    # half a group a block (8 lanes a key, 16 dims a lane)
])
def test_decode_one_block_per_kv_head_group(H, Hkv, R, L, d, dtype, splits):
    """heads_per_block = R: each block reads its kv head's K/V once for R query heads;
    float64 reference on fresh seeded inputs, poisoned outputs, lengths off the tile."""
    rng = np.random.default_rng(1700 + H * L + d)
    q, k, v = _inputs(rng, B=1 + (R < 8), H=H, Hkv=Hkv, L=L, d=d, dtype=dtype)
    with poisoned_outputs():
        o, lse = flash_decoding(q, k, v, num_splits=splits, num_threads=32, heads_per_block=R)
    _check(o, lse, q, k, v, _tol(dtype))


def test_grouped_decode_config_and_checks():
    """R query heads a block: lanes per key grow so a lane holds at most 32 values of q."""
    assert [DecodeTiles(128, 256, 4, r).lanes for r in (1, 4, 8)] == [8, 16, 32]
    assert [DecodeTiles(64, 256, 4, r).dims_per_lane * r for r in (1, 4, 8)] == [8, 32, 32]
    assert DecodeTiles(64, 256, 4, 4).keys_per_tile == 32  # 32 groups of 8 lanes, one key each
    q = np.ones((1, 8, 1, 32), np.float32)
    kc = np.ones((1, 2, 10, 32), np.float32)
    with pytest.raises(ValueError, match="heads_per_block=3 must divide the 4 query heads per kv head"):
        decode_attention(q, kc, kc, heads_per_block=3)
    with pytest.raises(ValueError, match="heads_per_block=16 at head_dim=128 needs"):
        DecodeTiles(128, 256, 4, 16).check()
