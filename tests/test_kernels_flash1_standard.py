"""kernels/flash1.py (FA1, Dao et al. 2022 Algorithm 1) and kernels/standard.py
(three kernels through HBM) against the float64 reference, in the simulator."""
import numpy as np
import pytest

from kernels import flash_attention_v1, poisoned_outputs, reference, standard_attention
from kernels.standard import MatmulConfig, SoftmaxConfig

TOL = {np.float32: 1e-5, np.float16: 2e-3}


def _inputs(rng, H=2, Hkv=2, N=40, d=32, dtype=np.float32):
    return tuple(rng.standard_normal((1, h, N, d)).astype(dtype) for h in (H, Hkv, Hkv))


@pytest.mark.parametrize("causal,dtype", [(False, np.float32), (True, np.float32), (True, np.float16)])
def test_fa1_algorithm1_matches_reference(causal, dtype):
    rng = np.random.default_rng(101)
    q, k, v = _inputs(rng, dtype=dtype)
    with poisoned_outputs():
        o, lse = flash_attention_v1(q, k, v, causal=causal, block_r=16, block_c=16, num_threads=16)
    ro, rl = reference.attention(q, k, v, causal=causal)
    assert np.isfinite(o).all() and np.isfinite(lse).all()
    assert o.dtype == dtype
    assert reference.rel_error(o, ro) < TOL[dtype]
    assert reference.rel_error(lse, rl) < 1e-5


def test_fa1_gqa_and_unequal_tiles():
    rng = np.random.default_rng(102)
    q, k, v = _inputs(rng, H=4, Hkv=1, N=45)
    with poisoned_outputs():
        o, lse = flash_attention_v1(q, k, v, causal=True, block_r=16, block_c=32, num_threads=16)
    ro, rl = reference.attention(q, k, v, causal=True)
    assert reference.rel_error(o, ro) < 1e-5 and reference.rel_error(lse, rl) < 1e-5


SMALL_STD = dict(qk_config=MatmulConfig(32, 32, 8, 16), pv_config=MatmulConfig(32, 32, 8, 16),
                 softmax_config=SoftmaxConfig(4, 8))


@pytest.mark.parametrize("causal,dtype", [(False, np.float32), (True, np.float32), (True, np.float16)])
def test_standard_three_kernels_match_reference(causal, dtype):
    rng = np.random.default_rng(103)
    q, k, v = _inputs(rng, H=2, Hkv=1, dtype=dtype)
    with poisoned_outputs():
        o = standard_attention(q, k, v, causal=causal, **SMALL_STD)
    ro, _ = reference.attention(q, k, v, causal=causal)
    assert o.dtype == dtype and np.isfinite(o).all()
    assert reference.rel_error(o, ro) < TOL[dtype]
