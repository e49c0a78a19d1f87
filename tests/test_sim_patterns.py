"""Sparse patterns: tiles by brute force, reach over layers (Mistral 7B §2), seeded patterns."""

import math

import numpy as np
import pytest

from simulators import simulate_attention
from simulators.mask import Band, band_tile_classes, tile_classes_from_mask, token_mask as band_mask
from simulators.patterns import (Pattern, layers_to_full_reach, mistral_reach, reach_after, tile_classes,
                                 token_mask)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n,window,br,bc", [(200, 17, 32, 16), (257, 64, 64, 64), (100, 1, 16, 32)])
def test_window_pattern_tiles_brute_force(causal, n, window, br, bc):
    p = Pattern(("window",), window=window, causal=causal)
    classes, kept = tile_classes(p, n, n, 1, br, bc)
    dense = token_mask(p, n, n)
    np.testing.assert_array_equal(classes[0], tile_classes_from_mask(dense, br, bc))
    assert kept[0] == dense.sum()
    band = Band(n, n, window - 1, 0 if causal else window - 1)  # the band the flash kernels use
    np.testing.assert_array_equal(dense, band_mask(band))
    np.testing.assert_array_equal(classes[0], band_tile_classes(n, n, band.left, band.right, br, bc))


@pytest.mark.parametrize("names", [("strided",), ("dilated",), ("global", "window"), ("bigbird",), ("blockwise",)])
def test_pattern_tiles_brute_force(names):
    p = Pattern(names, window=8, stride=16, dilation=3, global_tokens=5, random_blocks=2, block=16, n_blocks=4,
                causal=False)
    heads = 3
    classes, kept = tile_classes(p, 150, 150, heads, 32, 16)
    for h in range(classes.shape[0]):
        dense = token_mask(p, 150, 150, h)
        np.testing.assert_array_equal(classes[h], tile_classes_from_mask(dense, 32, 16))
        assert kept[h] == dense.sum()


def test_bigbird_is_seeded():
    a = token_mask(Pattern(("bigbird",), seed=3, block=8, window=4, global_tokens=2), 128, 128)
    b = token_mask(Pattern(("bigbird",), seed=3, block=8, window=4, global_tokens=2), 128, 128)
    c = token_mask(Pattern(("bigbird",), seed=4, block=8, window=4, global_tokens=2), 128, 128)
    assert (a == b).all() and (a != c).any()


def test_blockwise_density_is_one_over_n_blocks():
    """The seed lecture: n blocks permuted per head keep 1/n of the pairs (n = 4: 75% sparse...)."""
    p = Pattern(("blockwise",), n_blocks=4)
    _, kept = tile_classes(p, 256, 256, 4, 64, 64)
    assert (kept == 256 * 256 // 4).all()


@pytest.mark.parametrize("layers,w", [(1, 8), (3, 8), (4, 5)])
def test_mistral_sliding_window_reach_is_layers_times_window(layers, w):
    """Mistral 7B §2: positions i-W..i per layer (our window = W + 1) reach L x W tokens back."""
    mask = token_mask(Pattern(("window",), window=w + 1, causal=True), 120, 120)
    assert reach_after(mask, layers, query=119) == mistral_reach(layers, w) == layers * w


def test_layers_until_every_token_is_reached():
    mask = token_mask(Pattern(("window",), window=9, causal=True), 100, 100)
    assert layers_to_full_reach(mask, causal=True) == math.ceil(99 / 8)
    local = token_mask(Pattern(("window",), window=4), 50, 50)  # |k - q| < 4: 3 tokens each way
    assert layers_to_full_reach(local, causal=False) == math.ceil(49 / 3)
    glob = token_mask(Pattern(("global", "window"), window=2, global_tokens=1), 50, 50)
    assert layers_to_full_reach(glob, causal=False) == 2  # any token -> [cls] -> any token
    assert layers_to_full_reach(token_mask(Pattern(("blockwise",), n_blocks=4), 64, 64), causal=False) is None


def test_sparse_pattern_skips_only_empty_tiles():
    """Strided attention keeps 1/stride of the pairs but touches every tile: no FLOPs saved."""
    kw = dict(batch=1, heads=2, seq_len=1024, head_dim=64, block_r=64, block_c=64)
    dense = simulate_attention("a100-sxm4-40gb", "flash2", **kw)
    strided = simulate_attention("a100-sxm4-40gb", "flash2", pattern=["strided"], pattern_options={"stride": 16}, **kw)
    window = simulate_attention("a100-sxm4-40gb", "flash2", pattern=["window"], window=64, **kw)
    assert strided.extra["pattern"]["density"] == pytest.approx(1 / 16, rel=1e-3)
    assert strided.matmul_flops == dense.matmul_flops
    assert window.matmul_flops < 0.2 * dense.matmul_flops
