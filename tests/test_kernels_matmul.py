"""The register-tiled matmul that calibration times, against float64 numpy."""
import numpy as np
import pytest

from kernels import _cuda
from kernels.matmul import MatmulTiles, matmul


@pytest.mark.parametrize("cfg", [MatmulTiles(), MatmulTiles(32, 64, 32, 64)])
def test_matmul_matches_float64(cfg):
    rng = np.random.default_rng(401)
    a = rng.standard_normal((2 * cfg.block_m, cfg.block_k * 2)).astype(np.float32)
    b = rng.standard_normal((cfg.block_k * 2, cfg.block_n)).astype(np.float32)
    with _cuda.poisoned_outputs():
        c = matmul(a, b, cfg)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    assert np.all(np.isfinite(c))
    np.testing.assert_allclose(c, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_matmul_rejects_shapes_off_the_tiles():
    with pytest.raises(ValueError, match="M=65"):
        matmul(np.zeros((65, 64), np.float32), np.zeros((64, 64), np.float32))
