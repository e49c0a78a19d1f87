"""How operations are counted, stated once; and the tile *moments* both simulator paths share.

Counting (every number the simulator reports follows these rules):

* matmul: 2 FLOPs per multiply-accumulate (C[m,n] += A[m,k] B[k,n] is 2mnk).
* exp and log: one ``exp_ops`` each, on the special-function unit, not in FLOPs.
* everything else, per element: 1 FLOP for each add, subtract, multiply, divide, max
  and compare; so scale = 1, mask = 1 (a select), dropout = 2 (compare the random
  number, multiply by 1/(1-p); generating it is not counted), softmax = 4 + 1 exp
  (max, subtract, sum, divide), softmax backward dS = P o (dP - rowsum(dP o P)) = 4.
* a tile the kernel computes costs its full r x c (edge tiles have fewer rows or
  columns); a masked-out element still costs its matmul FLOPs. Element masking is
  counted only on *partial* tiles; empty tiles cost nothing.

The flash kernels' FLOPs, smem traffic and staged bytes are linear in a handful of sums
over the tiles a schedule visits, the *moments* below. The closed form computes them
from the band geometry, the enumeration accumulates them tile by tile; the formulas
that turn them into FLOPs are here, once, and used by both.
"""

from __future__ import annotations

import numpy as np

# Slots of the int64 moment vector (numba-friendly: a plain array, not an object).
TILES = 0  # tile visits (one (i, j) pair processed once)
RC = 1  # sum of r x c over visits
RC_PARTIAL = 2  # sum of r x c over visits to partial tiles (element mask applied)
R = 3  # sum of r over visits
C = 4  # sum of c over visits
ROWS = 5  # query tiles finished (a block's row tile written once: FA2 forward, decode)
ROWS_R = 6  # their rows
COLS = 7  # key tiles loaded per block (FA1, backward kernels)
COLS_C = 8  # their rows
STAGED = 9  # bytes written into shared memory (tiles staged from global memory)
G_READ = 10  # bytes requested from global memory: loads (and the read half of atomics)
G_WRITE = 11  # bytes requested: stores (and the write half of atomics)
H_READ = 12  # DRAM bytes read, after the L2 wave model
H_WRITE = 13  # DRAM bytes written
N_MOMENTS = 14


# Matmul FLOPs per (query, key) pair per unit of head_dim: forward S = Q K^T and O = P V
# (2 matmuls x 2 FLOPs), backward S again, dV = P^T dO, dP = dO V^T, dQ = dS K, dK = dS^T Q
# (5 x 2). Dao 2023 section 4.1 counts "4 seqlen^2 head_dim num_heads" forward and 2.5x
# that backward; every attention FLOP count of this project uses these two numbers.
PAIR_MATMUL_FLOPS = {"fwd": 4, "bwd": 10}


def moments() -> np.ndarray:
    return np.zeros(N_MOMENTS, dtype=np.int64)


def tile_flops(kind: str, m: np.ndarray, d: int, dropout: bool, fa1_io: str = "kernel") -> dict[str, float]:
    """matmul, other and exp counts of a flash kernel from its moments ``m``.

    Per visited tile (r query rows, c keys), following the algorithms' steps:

    * ``fa2_fwd`` / ``decode`` (Dao 2023 Alg. 1): S = Q K^T and O += P V: 4rcd; rowmax,
      subtract, rowsum: 3rc; exp(S - m): rc exp; m_new, alpha = exp(m_old - m_new),
      l = alpha l + rowsum: 4r and r exp; O rescale: rd. Per finished row tile: Q
      scaled on load (rd), O / l (rd + r), lse = m + log l (r and r exp).
    * ``fa1_fwd`` (Dao et al. 2022 Alg. 1/2): 4rcd; Q scaled on every load: rd;
      m~, exp, l~: 3rc and rc exp; steps 11-12: m_new, l_new, the two weights: 9r and
      2r exp; O_i = w_old O_i + w_new P~V: 3rd. Our kernel's last visit writes lse (r, r exp).
    * ``fa2_bwd`` (Dao 2023 Alg. 2): S, dV, dP, dQ, dK products: 10rcd; P = exp(S - lse):
      2rc (scale folded into Q: rd) and rc exp; dS = P o (dP - D): 2rc; dQ scaled and
      atomically added: 2rd. Per key tile: dK scaled: cd.
    * ``fa1_bwd`` (Dao et al. 2022 Alg. 4): 10rcd; P = diag(l)^-1 exp(S - m): 3rc, rc
      exp; D_i = rowsum(dO_i o O_i) recomputed at every visit: 2rd; dS: 2rc; dQ_i
      read-scaled-added: 2rd; Q scale rd. Per key tile: cd.

    Dropout adds 2rc per visit forward (applied to P) and 4rc backward (P and dP).
    """
    rc, part, r, rows_r, cols_c = (float(m[k]) for k in (RC, RC_PARTIAL, R, ROWS_R, COLS_C))
    drop = 1.0 if dropout else 0.0
    if kind in ("fa2_fwd", "decode"):
        return {"matmul": PAIR_MATMUL_FLOPS["fwd"] * d * rc,
                "other": 3 * rc + part + 2 * drop * rc + (4 + d) * r + (2 * d + 2) * rows_r,
                "exp": rc + r + rows_r}
    if kind == "fa1_fwd":
        lse = rows_r if fa1_io == "kernel" else 0.0
        return {"matmul": PAIR_MATMUL_FLOPS["fwd"] * d * rc,
                "other": 3 * rc + part + 2 * drop * rc + (4 * d + 9) * r + lse,
                "exp": rc + 2 * r + lse}
    if kind == "fa2_bwd":
        return {"matmul": PAIR_MATMUL_FLOPS["bwd"] * d * rc,
                "other": 3 * rc + part + 4 * drop * rc + 3 * d * r + d * cols_c,
                "exp": rc}
    if kind == "fa1_bwd":
        return {"matmul": PAIR_MATMUL_FLOPS["bwd"] * d * rc,
                "other": 4 * rc + part + 4 * drop * rc + 5 * d * r + d * cols_c,
                "exp": rc}
    raise ValueError(f"kind: unknown flash kernel {kind!r}")


# Operand reads from shared memory per r x c x d of tile products, as multiples of
# d*RC/t_n and d*RC/t_m (see smem_read_elements).
_SMEM_OPERANDS = {
    # S = Q K^T: Q as A (1/t_n), K as B (1/t_m); O += P V: P in registers, V as B (1/t_m)
    "fa2_fwd": (1, 2), "fa1_fwd": (1, 2), "decode": (1, 2),
    # S = Q K^T (Q: A, K: B); dV += P^T dO (dO: B); dP = dO V^T (dO: A, V: B);
    # dQ += dS K (K: B); dK += dS^T Q (Q: B). P, dS in registers.
    "fa2_bwd": (2, 5), "fa1_bwd": (2, 5),
}


def smem_read_elements(kind: str, m: np.ndarray, d: int, micro_tile: tuple[int, int]) -> float:
    """Elements threads read from shared memory for the tile products.

    A product C[m,n] += A[m,k] B[k,n] by threads that each own a t_m x t_n micro-tile of C
    (kernels/_tiling.py) reads, per thread, t_m k elements of A and k t_n of B: over the
    m n / (t_m t_n) threads, A is read m n k / t_n times and B m n k / t_m. Operands in
    registers (P, dS in the CUDA FlashAttention kernels) cost nothing; elementwise reads
    of staged tiles (O(rd) per tile against O(rcd / t)) are left out.
    """
    t_m, t_n = micro_tile
    a, b = _SMEM_OPERANDS[kind]
    return d * float(m[RC]) * (a / t_n + b / t_m)


# Standard attention: FLOPs per element of the N x L score matrix for each elementwise kernel.
ELEMENTWISE_FLOPS = {"scale": 1, "mask": 1, "softmax": 4, "dropout": 2, "dropout_bwd": 2, "softmax_bwd": 4}
ELEMENTWISE_EXP = {"softmax": 1}


def decode_combine_flops(splits: int, rows: int, d: int) -> dict[str, float]:
    """Flash-Decoding's reduction per (batch, head): lse_max = max_s lse_s (S), w_s = exp(lse_s - lse_max)
    (S subtract, S exp), sum_s w_s (S), O = sum_s w_s O_s / sum w (2 S d + d), lse = lse_max + log sum (1, 1 exp)."""
    return {"matmul": 0.0, "other": float(rows * (3 * splits + 2 * splits * d + d + 1)),
            "exp": float(rows * (splits + 1))}
