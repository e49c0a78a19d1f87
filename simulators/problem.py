"""The numbers a flash kernel's traffic depends on, gathered once for both simulator paths."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulators.mask import Band

STAT_BYTES = 4  # softmax statistics (m, l, lse, D) are float32 in every kernel modelled


@dataclass(frozen=True)
class FlashProblem:
    """Shapes, tiles and element sizes of one flash-attention launch.

    Q, O, dO: (B, H, N, d); K, V: (B, H_kv, L, d) with H = group x H_kv. ``e`` is the
    bytes of an input element in HBM, ``s`` of an element staged in shared memory, ``a``
    of the dQ accumulator.
    """

    n_q: int
    n_k: int
    d: int
    br: int
    bc: int
    batch: int
    heads: int
    group: int
    e: int
    s: int
    a: int
    band: Band
    dropout: bool = False
    skip: bool = True  # skip tiles the mask empties; False: compute them and mask every element

    @property
    def t_r(self) -> int:
        return -(-self.n_q // self.br)

    @property
    def t_c(self) -> int:
        return -(-self.n_k // self.bc)

    @property
    def bh(self) -> int:
        return self.batch * self.heads


def prefix(tile_bytes: np.ndarray) -> np.ndarray:
    """Cumulative bytes: prefix[t] = bytes of tiles [0, t)."""
    return np.concatenate([[0], np.cumsum(np.asarray(tile_bytes, dtype=np.int64))])


def range_sum(prefix: np.ndarray, lo, hi):
    """Sum of the tiles [lo, hi] (inclusive) from their ``prefix`` sums, 0 where hi < lo;
    broadcasts over arrays of lo and hi."""
    ok = hi >= lo
    return np.where(ok, prefix[np.where(ok, hi + 1, 0)] - prefix[np.where(ok, lo, 0)], 0)
