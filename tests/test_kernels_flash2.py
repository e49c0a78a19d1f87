"""kernels/flash2.py (FA2 forward, Dao 2023 Algorithm 1) against the float64 reference.

Runs in numba's CUDA simulator (tests/conftest.py): tiny shapes, N not a multiple of
the tiles, 16-thread blocks, outputs poisoned with NaN so unwritten elements fail.
"""
import numpy as np
import pytest

from kernels import flash_attention, poisoned_outputs, reference

SMALL = dict(block_r=16, block_c=16, num_threads=16)
TOL = {np.float32: 1e-5, np.float16: 2e-3}


def _inputs(rng, B=1, H=2, Hkv=2, N=40, d=32, dtype=np.float32):
    q = rng.standard_normal((B, H, N, d)).astype(dtype)
    k = rng.standard_normal((B, Hkv, N, d)).astype(dtype)
    v = rng.standard_normal((B, Hkv, N, d)).astype(dtype)
    return q, k, v


def _check(o, lse, q, k, v, dtype, **kw):
    ro, rl = reference.attention(q, k, v, **kw)
    assert o.dtype == q.dtype and lse.dtype == np.float32
    assert np.isfinite(o).all() and np.isfinite(lse).all(), "unwritten (NaN) output"
    assert reference.rel_error(o, ro) < TOL[dtype]
    assert reference.rel_error(lse, rl) < 1e-5


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("causal", [False, True])
def test_fa2_algorithm1_matches_reference(causal, dtype):
    rng = np.random.default_rng(201)
    q, k, v = _inputs(rng, dtype=dtype)
    with poisoned_outputs():
        o, lse = flash_attention(q, k, v, causal=causal, **SMALL)
    _check(o, lse, q, k, v, dtype, causal=causal)


def test_fa2_gqa_query_head_uses_kv_head_h_over_group():
    rng = np.random.default_rng(202)
    q, k, v = _inputs(rng, H=4, Hkv=2, N=37)
    with poisoned_outputs():
        o, lse = flash_attention(q, k, v, causal=True, **SMALL)
    _check(o, lse, q, k, v, np.float32, causal=True)


@pytest.mark.parametrize("window", [5, 20])
def test_fa2_sliding_window_mistral_band(window):
    rng = np.random.default_rng(203)
    q, k, v = _inputs(rng, N=50)
    with poisoned_outputs():
        o, lse = flash_attention(q, k, v, causal=True, window=window, **SMALL)
    _check(o, lse, q, k, v, np.float32, causal=True, window=window)


def test_fa2_unequal_tiles_and_custom_scale():
    rng = np.random.default_rng(204)
    q, k, v = _inputs(rng, N=45, H=1, Hkv=1)
    with poisoned_outputs():
        o, lse = flash_attention(q, k, v, causal=True, block_r=32, block_c=16, num_threads=32, scale=0.3)
    _check(o, lse, q, k, v, np.float32, causal=True, scale=0.3)


def test_fa2_device_arrays_in_give_device_arrays_out():
    from numba import cuda

    rng = np.random.default_rng(205)
    q, k, v = _inputs(rng, N=20, H=1, Hkv=1)
    o, lse = flash_attention(*(cuda.to_device(x) for x in (q, k, v)), **SMALL)
    assert cuda.is_cuda_array(o) if hasattr(cuda, "is_cuda_array") else not isinstance(o, np.ndarray)
    _check(o.copy_to_host(), lse.copy_to_host(), q, k, v, np.float32)
