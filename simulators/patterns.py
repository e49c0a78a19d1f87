"""Sparse attention patterns (the seed lecture's fast-attention zoo) and how far information travels.

Patterns are token-level masks, built a row tile at a time so long sequences never
materialise N x L; several names combine by union, then the causal mask applies.
With q' = q + L - N and a pattern block size b:

* ``dense``: every pair.
* ``window`` / ``local``: |k - q'| < W (with causal: the W keys q'-W < k <= q').
* ``strided``: q' - k a multiple of ``stride`` (Child et al. 2019's strided heads).
* ``dilated``: |q' - k| = m x dilation for m < W (a window of W keys spaced by dilation).
* ``global``: the first ``global_tokens`` tokens see and are seen by every token.
* ``random``: each query block of b tokens sees ``random_blocks`` key blocks drawn with a
  seeded generator (BigBird's random attention).
* ``bigbird``: global + window + random (Zaheer et al. 2020).
* ``blockwise``: the sequence in ``n_blocks`` blocks; head h's query block a sees key block
  pi_h(a), pi_0 the identity and the others seeded permutations (the seed's blockwise
  multi-head attention).

Kernels skip only *empty tiles*: a pattern's FLOPs as its papers count them (kept pairs)
and the FLOPs a tiled kernel executes (kept tiles) differ, which is what
examples/sparse_flops_vs_time.py shows.

Reach: with one edge k -> q for every kept pair, L stacked layers carry information
from k to q when a path of at most L edges joins them (Mistral 7B §2: a causal window
of W tokens back reaches L x W tokens back after L layers).
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np

PATTERNS = ("dense", "window", "local", "strided", "dilated", "global", "random", "bigbird", "blockwise")


@dataclass(frozen=True)
class Pattern:
    names: tuple[str, ...]
    window: int = 256
    stride: int = 64
    dilation: int = 2
    global_tokens: int = 64
    random_blocks: int = 3
    block: int = 64
    n_blocks: int = 4
    seed: int = 0
    causal: bool = False

    def __post_init__(self):
        if not self.names:
            raise ValueError(f"pattern: no name given; allowed: {', '.join(PATTERNS)}")
        for name in self.names:
            if name not in PATTERNS:
                raise ValueError(f"pattern: {name!r} is not allowed; one or more of {', '.join(PATTERNS)} are")
        for key in ("window", "stride", "dilation", "block", "n_blocks", "global_tokens", "random_blocks"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{key}: {value!r} is not allowed; a positive integer is")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed: {self.seed!r} is not allowed; an integer >= 0 is")

    @property
    def per_head(self) -> bool:
        return "blockwise" in self.names


def _random_table(p: Pattern, n_q: int, n_k: int) -> np.ndarray:
    """(query blocks, random_blocks) key-block indices, distinct within a row, seeded."""
    qb, kb = -(-n_q // p.block), -(-n_k // p.block)
    rng = np.random.default_rng(p.seed)
    r = min(p.random_blocks, kb)
    return np.stack([rng.choice(kb, size=r, replace=False) for _ in range(qb)]) if r else np.zeros((qb, 0), int)


def _permutation(p: Pattern, head: int) -> np.ndarray:
    if head == 0:
        return np.arange(p.n_blocks)
    return np.random.default_rng([p.seed, head]).permutation(p.n_blocks)


def row_mask(p: Pattern, q0: int, q1: int, n_q: int, n_k: int, head: int = 0, table=None) -> np.ndarray:
    """Kept pairs of query rows [q0, q1): bool (q1 - q0, L)."""
    qp = np.arange(q0, q1)[:, None] + (n_k - n_q)
    k = np.arange(n_k)[None, :]
    dist = qp - k
    keep = np.zeros((q1 - q0, n_k), dtype=bool)
    names = set(p.names)
    if "bigbird" in names:
        names |= {"global", "window", "random"}
    if "dense" in names:
        keep[:] = True
    if names & {"window", "local"}:
        keep |= np.abs(dist) < p.window
    if "strided" in names:
        keep |= dist % p.stride == 0
    if "dilated" in names:
        keep |= (dist % p.dilation == 0) & (np.abs(dist) < p.window * p.dilation)
    if "global" in names:
        keep |= (k < p.global_tokens) | (qp < p.global_tokens)
    if "random" in names:
        table = _random_table(p, n_q, n_k) if table is None else table
        qblock = np.clip(qp[:, 0] // p.block, 0, len(table) - 1)
        kblock = k[0] // p.block
        keep |= (kblock[None, :, None] == table[qblock][:, None, :]).any(axis=-1)
    if "blockwise" in names:
        size = -(-n_k // p.n_blocks)
        perm = _permutation(p, head)
        keep |= perm[np.clip(qp // size, 0, p.n_blocks - 1)] == k // size
    if p.causal:
        keep &= dist >= 0
    return keep


def token_mask(p: Pattern, n_q: int, n_k: int, head: int = 0) -> np.ndarray:
    """The whole (N, L) mask of one head (small N only)."""
    return row_mask(p, 0, n_q, n_q, n_k, head)


def tile_classes(p: Pattern, n_q: int, n_k: int, heads: int, br: int, bc: int) -> tuple[np.ndarray, np.ndarray]:
    """(classes (H_m, T_r, T_c) int8 as mask.py defines them, kept pairs per mask head (H_m,)).

    H_m = heads for per-head patterns (blockwise), else 1.
    """
    t_r, t_c = -(-n_q // br), -(-n_k // bc)
    hm = heads if p.per_head else 1
    classes = np.zeros((hm, t_r, t_c), dtype=np.int8)
    kept = np.zeros(hm, dtype=np.int64)
    table = _random_table(p, n_q, n_k) if {"random", "bigbird"} & set(p.names) else None
    width = np.full(t_c, bc)
    width[-1] = n_k - (t_c - 1) * bc
    for h in range(hm):
        for i in range(t_r):
            q0, q1 = i * br, min(n_q, (i + 1) * br)
            rows = row_mask(p, q0, q1, n_q, n_k, h, table)
            pad = np.zeros((q1 - q0, t_c * bc), dtype=bool)
            pad[:, :n_k] = rows
            per_tile = pad.reshape(q1 - q0, t_c, bc).sum(axis=(0, 2))
            kept[h] += per_tile.sum()
            classes[h, i] = np.where(per_tile == 0, 0, np.where(per_tile == (q1 - q0) * width, 2, 1))
    return classes, kept


# ---------------------------------------------------------------- reach over layers


def reach_graph(mask: np.ndarray) -> nx.DiGraph:
    """Edge k -> q for every kept pair (q attends to k): information flows along edges, one per layer."""
    g = nx.DiGraph()
    g.add_nodes_from(range(mask.shape[1]))
    q, k = np.nonzero(mask)
    g.add_edges_from((int(a), int(b)) for a, b in zip(k, q) if a != b)
    return g


def reach_after(mask: np.ndarray, layers: int, query: int) -> int:
    """Tokens other than ``query`` whose information reaches it through ``layers`` layers."""
    dist = nx.single_source_shortest_path_length(reach_graph(mask).reverse(copy=False), query, cutoff=layers)
    return len(dist) - 1


def layers_to_full_reach(mask: np.ndarray, causal: bool) -> int | None:
    """Fewest layers after which every token has information from every token it may see
    (every earlier token when causal, every token otherwise); None if some never does."""
    g = reach_graph(mask).reverse(copy=False)
    n = mask.shape[0]
    worst = 0
    for q in range(n):
        dist = nx.single_source_shortest_path_length(g, q)
        need = q + 1 if causal else n
        if sum(1 for k in dist if k < need) < need:
            return None
        worst = max(worst, max(d for k, d in dist.items() if k < need))
    return worst


def mistral_reach(layers: int, window: int) -> int:
    """Mistral 7B §2: with positions i - W..i visible per layer, L layers reach L x W tokens back."""
    return layers * window
