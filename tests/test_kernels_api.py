"""kernels/api.py argument checks, kernels/reference.py, kernels/timing.py and the
NaN poisoning the other kernel tests rely on."""
import numpy as np
import pytest

from kernels import (decode_attention, flash_attention, flash_attention_backward, flash_attention_v1,
                     flash_decoding, poisoned_outputs, reference, standard_attention)
from kernels._cuda import empty
from kernels.timing import rotation_count, time_kernel


def _qkv(H=2, Hkv=2, N=8, d=32, dtype=np.float32):
    return tuple(np.ones((1, h, N, d), dtype) for h in (H, Hkv, Hkv))


def test_head_dim_must_be_supported():
    with pytest.raises(ValueError, match="head_dim 48.*32, 64, 128"):
        flash_attention(*_qkv(d=48))


def test_dtype_must_be_fp32_or_fp16():
    with pytest.raises(TypeError, match="q.dtype is float64"):
        flash_attention(*_qkv(dtype=np.float64))
    q, k, v = _qkv()
    with pytest.raises(TypeError, match="share one dtype"):
        flash_attention(q, k.astype(np.float16), v)


def test_shapes_must_match():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="k and v must have the same shape"):
        flash_attention(q, k, v[:, :, :4])
    with pytest.raises(ValueError, match="heads must be a multiple of kv_heads"):
        flash_attention(*_qkv(H=3, Hkv=2))
    with pytest.raises(ValueError, match="4 dimensions"):
        standard_attention(q[0], k[0], v[0])
    with pytest.raises(TypeError, match="numpy array or a numba device array"):
        flash_attention_v1([1.0], k, v)


def test_blocks_that_do_not_fit_shared_memory_are_refused():
    with pytest.raises(ValueError, match=r"block_r=256, block_c=256 .* bytes of shared memory"):
        flash_attention(*_qkv(d=128), block_r=256, block_c=256, num_threads=1024)


def test_blocks_that_do_not_tile_are_refused():
    with pytest.raises(ValueError, match="block_r=18 must be a multiple of 4"):
        flash_attention(*_qkv(), block_r=18)
    with pytest.raises(ValueError, match="block_c must be a positive integer"):
        flash_attention(*_qkv(), block_c=0)
    with pytest.raises(ValueError, match="num_threads=2000"):
        flash_attention(*_qkv(), num_threads=2000)


def test_window_needs_causal_and_backward_needs_equal_heads():
    with pytest.raises(ValueError, match="window=4 is a causal sliding window"):
        flash_attention(*_qkv(), window=4)
    q, k, v = _qkv(H=2, Hkv=1)
    lse = np.zeros((1, 2, 8), np.float32)
    with pytest.raises(ValueError, match="grouped-query attention is not supported"):
        flash_attention_backward(q, k, v, q, lse, q)
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="lse has shape"):
        flash_attention_backward(q, k, v, q, lse[:, :, :4], q)


def test_decode_shape_checks():
    q = np.ones((1, 2, 2, 32), np.float32)
    kc = np.ones((1, 1, 10, 32), np.float32)
    with pytest.raises(ValueError, match=r"\(batch, heads, 1, head_dim\)"):
        decode_attention(q, kc, kc)
    with pytest.raises(ValueError, match="num_splits must be a positive integer"):
        flash_decoding(q[:, :, :1], kc, kc, num_splits=0)


def test_poisoned_outputs_are_nan():
    with poisoned_outputs():
        buf = empty((3, 5), np.float16, "x").copy_to_host()
    assert np.isnan(buf).all()


def test_reference_lse_is_log_sum_exp():
    rng = np.random.default_rng(501)
    q, k, v = (rng.standard_normal((1, 1, 6, 4)) for _ in range(3))
    _, lse = reference.attention(q, k, v, scale=1.0)
    s = q[0, 0] @ k[0, 0].T
    assert np.allclose(lse[0, 0], np.log(np.exp(s).sum(axis=1)))
    o, _ = reference.attention(q, k, v, causal=True)
    assert np.allclose(o[0, 0, 0], v[0, 0, 0])  # the first token sees only itself


def test_time_kernel_returns_median_of_samples():
    calls = []
    t = time_kernel(lambda x: calls.append(x), 1, warmup=1, repeats=3)
    assert len(t.samples_s) == 3 and len(calls) == 4  # the simulator's events carry no time


def test_rotation_count_covers_twice_the_l2():
    assert rotation_count(10 * 2**20, 50 * 2**20) == 8
    assert rotation_count(30 * 2**20, 50 * 2**20) == 4
    assert rotation_count(200 * 2**20, 50 * 2**20) == 1
