"""The closed form (simulators/closed.py) and the block-by-block enumeration (simulators/walk.py)
agree exactly: FLOP moments, staged bytes, global bytes and DRAM bytes after the L2 wave model
(whose footprint, the bytes live at one step, each path derives its own way)."""

import time

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from simulators import closed, walk as enum, walk_backward
from simulators import simulate_attention
from simulators.mask import INF, Band, band_tile_classes
from simulators.problem import FlashProblem

SETTINGS = settings(max_examples=60, deadline=None)


@st.composite
def problems(draw, decode=False):
    n_q = draw(st.integers(1, 4)) if decode else draw(st.integers(1, 300))
    n_k = draw(st.integers(n_q, 2000)) if decode else draw(st.one_of(st.just(n_q), st.integers(1, 300)))
    d = draw(st.sampled_from([8, 16, 64, 128]))
    br = n_q if decode else draw(st.sampled_from([16, 32, 64, 100]))
    bc = draw(st.sampled_from([16, 32, 64, 100, 128]))
    group = draw(st.sampled_from([1, 2, 4]))
    heads = group * draw(st.integers(1, 3))
    batch = draw(st.integers(1, 3))
    causal = draw(st.booleans())
    window = draw(st.one_of(st.none(), st.integers(1, 400)))
    right = 0 if causal else INF
    left = INF
    if window is not None:
        left = window - 1
        right = right if causal else window - 1
    e, s = draw(st.sampled_from([(2, 4), (2, 2), (4, 4), (1, 2)]))
    skip = draw(st.booleans())
    p = FlashProblem(n_q, n_k, d, br, bc, batch, heads, group, e, s, 4, Band(n_q, n_k, left, right),
                     dropout=False, skip=skip)
    slots = draw(st.sampled_from([1, 3, 7, 64, 1000]))
    # around the footprints of these small grids too, where the tiles live at once decide
    capacity = draw(st.one_of(st.sampled_from([0, 2000, 100_000, 10**9]), st.integers(0, 300_000)))
    return p, slots, capacity


def _classes(p: FlashProblem) -> np.ndarray:
    tc = band_tile_classes(p.n_q, p.n_k, p.band.left, p.band.right, p.br, p.bc)[None]
    return tc if p.skip else np.maximum(tc, 1).astype(np.int8)


def _args(p):
    return p.n_q, p.n_k, p.br, p.bc, p.d, p.e, p.s


@SETTINGS
@given(problems(), st.booleans())
def test_fa2_forward_closed_form_equals_enumeration(case, tiles_fastest):
    p, slots, cap = case
    expect = enum.fa2_fwd(_classes(p), *_args(p), p.batch, p.heads, p.group, slots, cap, tiles_fastest)
    np.testing.assert_array_equal(closed.fa2_fwd(p, slots, cap, tiles_fastest), expect)


@SETTINGS
@given(problems(), st.booleans())
def test_fa2_backward_closed_form_equals_enumeration(case, tiles_fastest):
    p, slots, cap = case
    expect = walk_backward.fa2_bwd(_classes(p), *_args(p), p.a, p.batch, p.heads, p.group, slots, cap, tiles_fastest)
    np.testing.assert_array_equal(closed.fa2_bwd(p, slots, cap, tiles_fastest), expect)


@SETTINGS
@given(problems(), st.sampled_from(["kernel", "paper"]))
def test_fa1_forward_closed_form_equals_enumeration(case, io):
    p, slots, cap = case
    expect = enum.fa1_fwd(_classes(p), *_args(p), p.batch, p.heads, p.group, slots, cap, io == "paper")
    np.testing.assert_array_equal(closed.fa1_fwd(p, slots, cap, io), expect)


@SETTINGS
@given(problems())
def test_fa1_backward_closed_form_equals_enumeration(case):
    p, slots, cap = case
    expect = walk_backward.fa1_bwd(_classes(p), *_args(p), p.a, p.batch, p.heads, p.group, slots, cap)
    np.testing.assert_array_equal(closed.fa1_bwd(p, slots, cap), expect)


@SETTINGS
@given(problems(decode=True), st.data())
def test_decode_closed_form_equals_enumeration(case, data):
    p, slots, cap = case
    splits = data.draw(st.integers(1, p.t_c))
    page = data.draw(st.sampled_from([None, 7, 16, 64, 256]))
    fast = data.draw(st.booleans())
    expect = enum.decode(_classes(p), p.n_q, p.n_k, p.bc, p.d, p.e, p.s, p.batch, p.heads, p.group, splits,
                         page or 0, slots, cap, fast)
    np.testing.assert_array_equal(closed.decode(p, splits, page, slots, cap, fast), expect)


@settings(max_examples=15, deadline=None)
@given(st.sampled_from(["flash1", "flash2"]), st.sampled_from(["fwd", "bwd", "fwd+bwd"]), st.booleans(),
       st.integers(100, 700), st.sampled_from([1, 2, 4]), st.one_of(st.none(), st.integers(1, 300)))
def test_simulate_attention_paths_agree(impl, pass_, causal, n, group, window):
    kw = dict(batch=2, heads=2 * group, kv_heads=2, seq_len=n, head_dim=64,
              causal=causal or window is not None, window=window, block_r=64, block_c=32, pass_=pass_)
    a = simulate_attention("a100-sxm4-40gb", impl, path="closed", **kw)
    b = simulate_attention("a100-sxm4-40gb", impl, path="enumerate", **kw)
    assert [k.model_dump() for k in a.kernels] == [k.model_dump() for k in b.kernels]


def test_enumeration_128k_tokens_under_a_second():
    """N = 131072, d = 128, 64 x 64 tiles, one head: the whole FA2 forward schedule walked."""
    kw = dict(batch=1, heads=1, seq_len=131072, head_dim=128, block_r=64, block_c=64, path="enumerate")
    simulate_attention("a100-sxm4-40gb", "flash2", **kw)  # compile (or load the cache)
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        r = simulate_attention("a100-sxm4-40gb", "flash2", **kw)
        best = min(best, time.perf_counter() - t0)
    assert r.kernels[0].grid == (2048, 1)
    assert best < 1.0, f"enumeration took {best:.3f} s"
