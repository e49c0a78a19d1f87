"""Which (query, key) pairs a banded mask keeps, and which tiles of the score matrix that touches.

A *band* keeps key k for query q when ``-left <= k - q' <= right`` with q' = q + L - N
(bottom-right alignment). Dense attention is left = right = INF; causal is right = 0;
a causal sliding window of W keys is left = W - 1, right = 0.

Tiles: query tile i holds rows [i B_r, min(N, (i+1) B_r)), key tile j holds columns
[j B_c, min(L, (j+1) B_c)). A tile is *empty* (skipped: no loads, no FLOPs), *partial*
(computed and element-masked) or *full*. Tile classes are 0, 1, 2.

Two derivations of the same geometry, kept apart on purpose: ``row_ranges`` and
``col_ranges`` give, per tile row (column), the interval of non-empty and of full tiles
by floor division (the closed form); ``band_tile_classes`` tests every tile by its
corners (the enumeration's view). Tests hold them and a brute-force dense mask equal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

INF = 1 << 40  # "no bound": far beyond any sequence length, small enough for int64 sums


@dataclass(frozen=True)
class Band:
    n_q: int  # N, query rows
    n_k: int  # L, key columns
    left: int = INF
    right: int = INF

    @property
    def offset(self) -> int:
        return self.n_k - self.n_q


def band_of(cfg) -> Band:
    """The band of an ``AttentionConfig``: causal and window as kernels/flash2.py reads them."""
    right = 0 if cfg.causal else INF
    left = INF
    if cfg.window is not None:
        left = cfg.window - 1
        if not cfg.causal:
            right = cfg.window - 1
    return Band(cfg.seq_len, cfg.kv_len, left, right)


def token_mask(band: Band) -> np.ndarray:
    """The dense (N, L) boolean mask, True where the pair is kept (small N only)."""
    q = np.arange(band.n_q)[:, None] + band.offset
    k = np.arange(band.n_k)[None, :]
    return (k - q >= -band.left) & (k - q <= band.right)


def kept_pairs(band: Band) -> int:
    """(query, key) pairs the band keeps: per query row, the keys of its interval (``row_ranges`` with
    one-element tiles)."""
    r = row_ranges(band, 1, 1)
    return int(np.sum(np.maximum(r["hi"] - r["lo"] + 1, 0)))


def tile_sizes(n: int, block: int) -> np.ndarray:
    """Rows in each tile of ``block``; the last one is partial when block does not divide n."""
    t = -(-n // block)
    sizes = np.full(t, block, dtype=np.int64)
    sizes[-1] = n - (t - 1) * block
    return sizes


def _ceil_div(a, b):
    return -((-a) // b)


def row_ranges(band: Band, br: int, bc: int) -> dict[str, np.ndarray]:
    """Per query tile i: non-empty key tiles [lo, hi] and full ones [flo, fhi] (hi < lo: none).

    Rows q0..q1 of the tile keep keys [q0' - left, q1' + right]: an interval, so the
    non-empty tiles are contiguous. Tile j is full when its first key k0 >= q1' - left
    and its last key k1 <= q0' + right.
    """
    t_r, t_c = -(-band.n_q // br), -(-band.n_k // bc)
    i = np.arange(t_r, dtype=np.int64)
    q0 = i * br + band.offset
    q1 = np.minimum(band.n_q, (i + 1) * br) - 1 + band.offset
    k_first = np.maximum(q0 - band.left, 0)
    k_last = np.minimum(q1 + band.right, band.n_k - 1)
    empty = k_first > k_last
    lo = np.where(empty, 0, k_first // bc)
    hi = np.where(empty, -1, k_last // bc)
    flo = np.maximum(_ceil_div(q1 - band.left, bc), 0)
    reach = q0 + band.right  # last key every row of the tile keeps
    fhi = np.where(reach >= band.n_k - 1, t_c - 1, (reach + 1) // bc - 1)
    flo, fhi = np.maximum(flo, lo), np.minimum(fhi, hi)
    return {"lo": lo, "hi": hi, "flo": flo, "fhi": fhi}


def col_ranges(band: Band, br: int, bc: int) -> dict[str, np.ndarray]:
    """Per key tile j: the non-empty query tiles [lo, hi] (hi < lo: none)."""
    t_c = -(-band.n_k // bc)
    j = np.arange(t_c, dtype=np.int64)
    k0 = j * bc
    k1 = np.minimum(band.n_k, (j + 1) * bc) - 1
    # key k is kept by queries with q' in [k - right, k + left]
    q_first = np.maximum(k0 - band.right - band.offset, 0)
    q_last = np.minimum(k1 + band.left - band.offset, band.n_q - 1)
    empty = q_first > q_last
    return {"lo": np.where(empty, 0, q_first // br), "hi": np.where(empty, -1, q_last // br)}


@njit(cache=True)
def band_tile_classes(n_q, n_k, left, right, br, bc):
    """(T_r, T_c) int8: 0 empty, 1 partial, 2 full, from each tile's corners.

    Over a tile, k - q' takes every integer in [k0 - q1', k1 - q0']; the tile is empty
    when that interval misses [-left, right] and full when it lies inside it.
    """
    t_r = (n_q + br - 1) // br
    t_c = (n_k + bc - 1) // bc
    off = n_k - n_q
    out = np.zeros((t_r, t_c), dtype=np.int8)
    for i in range(t_r):
        q0 = i * br + off
        q1 = min(n_q, (i + 1) * br) - 1 + off
        for j in range(t_c):
            k0 = j * bc
            k1 = min(n_k, (j + 1) * bc) - 1
            dmin = k0 - q1
            dmax = k1 - q0
            if dmax < -left or dmin > right:
                out[i, j] = 0
            elif dmin >= -left and dmax <= right:
                out[i, j] = 2
            else:
                out[i, j] = 1
    return out


def tile_classes_from_mask(mask: np.ndarray, br: int, bc: int) -> np.ndarray:
    """Tile classes of a dense boolean mask (..., N, L): any kept -> non-empty, all kept -> full."""
    *lead, n, l = mask.shape
    t_r, t_c = -(-n // br), -(-l // bc)
    pad = np.zeros((*lead, t_r * br, t_c * bc), dtype=np.int8)
    pad[..., :n, :l] = mask
    valid = np.zeros((t_r * br, t_c * bc), dtype=np.int8)
    valid[:n, :l] = 1
    tiles = pad.reshape(*lead, t_r, br, t_c, bc)
    kept = tiles.sum(axis=(-3, -1))
    size = valid.reshape(t_r, br, t_c, bc).sum(axis=(-3, -1))
    return np.where(kept == 0, 0, np.where(kept == size, 2, 1)).astype(np.int8)
