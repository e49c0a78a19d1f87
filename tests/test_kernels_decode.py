"""kernels/decode.py: one-block-per-head decoding and Flash-Decoding (split KV plus a
log-sum-exp combine) against the float64 reference, in the simulator."""
import numpy as np
import pytest

from kernels import decode_attention, flash_decoding, poisoned_outputs, reference
from kernels.decode import default_num_splits


def _inputs(rng, H=4, Hkv=2, L=77, d=32, dtype=np.float32):
    q = rng.standard_normal((1, H, 1, d)).astype(dtype)
    k = rng.standard_normal((1, Hkv, L, d)).astype(dtype)
    v = rng.standard_normal((1, Hkv, L, d)).astype(dtype)
    return q, k, v


def _check(o, lse, q, k, v, tol):
    ro, rl = reference.decode(q, k, v)
    assert o.shape == q.shape and lse.shape == q.shape[:3]
    assert np.isfinite(o).all() and np.isfinite(lse).all()
    assert reference.rel_error(o, ro) < tol and reference.rel_error(lse, rl) < 1e-5


def test_decode_one_block_per_head_gqa():
    rng = np.random.default_rng()
    q, k, v = _inputs(rng)
    with poisoned_outputs():
        o, lse = decode_attention(q, k, v, num_threads=32)
    _check(o, lse, q, k, v, 1e-5)


@pytest.mark.parametrize("splits,dtype,hkv", [(3, np.float32, 1), (2, np.float16, 2), (5, np.float32, 4)])
def test_flash_decoding_splits_not_dividing_L(splits, dtype, hkv):
    """77 keys in tiles of 32: 3 splits get 32, 32, 13 keys; 5 splits leave two empty."""
    rng = np.random.default_rng()
    q, k, v = _inputs(rng, Hkv=hkv, dtype=dtype)
    with poisoned_outputs():
        o, lse = flash_decoding(q, k, v, num_splits=splits, num_threads=32)
    _check(o, lse, q, k, v, 2e-3 if dtype == np.float16 else 1e-5)


def test_default_splits_two_waves_at_least_one_tile():
    # the simulator reports 1 multiprocessor: two waves of 1 SM with 4 heads is 1 split
    assert default_num_splits(4, 77, 32) == 1
    assert default_num_splits(1, 77, 32) == 2
    assert default_num_splits(1, 10, 32) == 1
