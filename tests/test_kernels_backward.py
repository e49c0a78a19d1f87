"""kernels/flash_backward.py (FA2 backward, Dao 2023 Algorithm 2) against float64
reference gradients, in the simulator."""
import numpy as np
import pytest

from kernels import flash_attention_backward, poisoned_outputs, reference

TOL = {np.float32: 1e-5, np.float16: 3e-3}


@pytest.mark.parametrize("causal,dtype", [(False, np.float32), (True, np.float32), (True, np.float16)])
def test_fa2_algorithm2_gradients_match_reference(causal, dtype):
    rng = np.random.default_rng(301)
    q, k, v, do = (rng.standard_normal((1, 2, 40, 32)).astype(dtype) for _ in range(4))
    o, lse = reference.attention(q, k, v, causal=causal)
    with poisoned_outputs():
        grads = flash_attention_backward(q, k, v, o.astype(dtype), lse.astype(np.float32), do,
                                         causal=causal, block_r=16, block_c=16, num_threads=16)
    for got, ref in zip(grads, reference.attention_backward(q, k, v, do, causal=causal)):
        assert got.dtype == dtype and np.isfinite(got).all()
        assert reference.rel_error(got, ref) < TOL[dtype]


def test_backward_unequal_tiles():
    rng = np.random.default_rng(302)
    q, k, v, do = (rng.standard_normal((1, 1, 45, 32)).astype(np.float32) for _ in range(4))
    o, lse = reference.attention(q, k, v, causal=True)
    with poisoned_outputs():
        grads = flash_attention_backward(q, k, v, o.astype(np.float32), lse.astype(np.float32), do,
                                         causal=True, block_r=32, block_c=16, num_threads=32)
    for got, ref in zip(grads, reference.attention_backward(q, k, v, do, causal=True)):
        assert reference.rel_error(got, ref) < 1e-5


@pytest.mark.parametrize("n,d,dtype", [(37, 32, np.float32), (16, 64, np.float32), (5, 128, np.float16),
                                       (21, 128, np.float32)])
def test_preprocess_warp_per_row_rowsum(n, d, dtype):
    """Algorithm 2 line 4, D_i = rowsum(dO_i o O_i), one warp per row (16 rows a block):
    N = 37, 5 and 21 leave the last block part empty; poisoned, so every row must be written."""
    from numba import cuda

    from kernels.flash_backward import preprocess

    rng = np.random.default_rng(1700 + n + d)
    o, do = (rng.standard_normal((3, n, d)).astype(dtype) for _ in range(2))
    with poisoned_outputs():
        dd = preprocess(cuda.to_device(o), cuda.to_device(do)).copy_to_host()
    ref = (o.astype(np.float64) * do.astype(np.float64)).sum(axis=-1)
    assert dd.shape == (3, n) and dd.dtype == np.float32 and np.isfinite(dd).all()
    assert reference.rel_error(dd, ref) < 1e-6
