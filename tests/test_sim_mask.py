"""Tile geometry of banded masks: floor-division ranges, corner tests and a brute-force dense mask agree."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from simulators.mask import INF, Band, band_tile_classes, col_ranges, row_ranges, tile_classes_from_mask, token_mask


@st.composite
def bands(draw):
    n_q, n_k = draw(st.integers(1, 160)), draw(st.integers(1, 160))
    left = draw(st.sampled_from([INF, 0, 1, 5, 31, 100]))
    right = draw(st.sampled_from([INF, 0, 3, 40]))
    return Band(n_q, n_k, left, right), draw(st.sampled_from([1, 7, 16, 32])), draw(st.sampled_from([1, 5, 16, 64]))


@settings(max_examples=150, deadline=None)
@given(bands())
def test_tile_classes_brute_force_equals_corner_test(case):
    band, br, bc = case
    brute = tile_classes_from_mask(token_mask(band), br, bc)
    np.testing.assert_array_equal(band_tile_classes(band.n_q, band.n_k, band.left, band.right, br, bc), brute)


@settings(max_examples=150, deadline=None)
@given(bands())
def test_row_and_column_ranges_equal_brute_force(case):
    band, br, bc = case
    brute = tile_classes_from_mask(token_mask(band), br, bc)
    rr, cr = row_ranges(band, br, bc), col_ranges(band, br, bc)
    for i in range(brute.shape[0]):
        js = np.nonzero(brute[i])[0]
        full = np.nonzero(brute[i] == 2)[0]
        assert (rr["lo"][i], rr["hi"][i]) == ((js[0], js[-1]) if len(js) else (0, -1))
        assert len(js) == 0 or len(js) == js[-1] - js[0] + 1  # contiguous
        got_full = np.arange(rr["flo"][i], rr["fhi"][i] + 1)
        np.testing.assert_array_equal(got_full, full)
    for j in range(brute.shape[1]):
        is_ = np.nonzero(brute[:, j])[0]
        assert (cr["lo"][j], cr["hi"][j]) == ((is_[0], is_[-1]) if len(is_) else (0, -1))


def test_causal_window_matches_kernel_definition():
    """kernels/flash2.py: query i sees keys j with i - window < j <= i."""
    band = Band(10, 10, left=3 - 1, right=0)
    m = token_mask(band)
    assert m[5].nonzero()[0].tolist() == [3, 4, 5]
