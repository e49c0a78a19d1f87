"""Register-tiled FP32 matmul: the product our attention kernels run, on its own.

C (M x N) = A (M x K) B (K x N), float32, row-major, M, N, K multiples of the tiles.

Why it exists: the roofline's FP32 ceiling (peak FMA rate, ``costmodel.validation.ceilings``'
FMA-chain microkernel) is what no real kernel reaches. The attention kernels stage
tiles from HBM through shared memory and multiply them with ``_tiling.outer_product_mac``;
how close *that* code gets to the FMA peak is a property of the code generator and the
tiling (loads, barriers, shared-memory reads, occupancy), not of attention. This kernel
runs exactly that loop with nothing else in it (FlashAttention-2's S = Q_i K_j^T step,
repeated over K), so its measured rate is the attainable FP32 rate of register-tiled
Numba code: ``ioaware calibrate`` records it as the calibrated spec's FP32 efficiency,
and the attention predictions for our kernels use it. Nothing is fitted to attention.

Schedule: grid (N / BN, M / BM), one block per BM x BN tile of C; per step of BK along
K, the block loads A's BM x BK tile (stored transposed, k-major) and B's BK x BN tile
into shared memory, then every thread accumulates its micro-tile.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from numba import cuda, float32

from . import _checks
from ._cuda import SMEM_ALIGN, U, as_device, empty, kernel_jit, launch, to_caller
from ._tiling import Split, outer_product_mac, pick_tx, split

PAD = 4  # words added to each shared-memory row, as in flash2


@dataclass(frozen=True)
class MatmulTiles:
    block_m: int = 64
    block_n: int = 64
    block_k: int = 64
    num_threads: int = 128

    @property
    def tx(self) -> int:
        return pick_tx((self.block_n,), self.num_threads)

    @property
    def rows(self) -> Split:
        return split(self.block_m, self.num_threads // self.tx, "block_m over thread rows")

    @property
    def cols(self) -> Split:
        return split(self.block_n, self.tx, "block_n over thread columns")

    def smem_words(self) -> int:
        return self.block_k * (self.block_m + PAD) + self.block_k * (self.block_n + PAD)

    def smem_bytes(self) -> int:
        return 4 * self.smem_words()


@functools.lru_cache(maxsize=None)
def build_kernel(cfg: MatmulTiles):
    rows, cols = cfg.rows, cfg.cols
    TX, TM, TN = cfg.tx, rows.per_thread, cols.per_thread
    R_CH, R_ST = rows.chunk, rows.chunk * rows.threads
    C_CH, C_ST = cols.chunk, cols.chunk * cols.threads
    BM, BN, BK, NT = cfg.block_m, cfg.block_n, cfg.block_k, U(cfg.num_threads)
    AP, BP = U(BM + PAD), U(BN + PAD)
    A_OFF, B_OFF = U(0), U(BK * (BM + PAD))
    UBK, UBN, UTX = U(BK), U(BN), U(TX)
    A_LOADS, B_LOADS = BM * BK // cfg.num_threads, BK * BN // cfg.num_threads
    GROUP = math.gcd(4, A_LOADS, B_LOADS)
    ACC_WORDS = TM * TN  # a closure constant: numba types local.array's shape only from a constant
    mac = outer_product_mac(rows, cols, BK)

    @kernel_jit()
    def matmul(a, b, c, k_total):
        sm = cuda.shared.array(0, float32, alignment=SMEM_ALIGN)
        t = U(cuda.threadIdx.x)
        ty, tx = t // UTX, t % UTX
        r_base, c_base = ty * U(R_CH), tx * U(C_CH)
        m0 = U(cuda.blockIdx.y) * U(BM)
        n0 = U(cuda.blockIdx.x) * U(BN)
        acc = cuda.local.array(ACC_WORDS, float32)
        af = cuda.local.array(TM, float32)
        bf = cuda.local.array(TN, float32)
        buf = cuda.local.array(GROUP, float32)
        for x in range(ACC_WORDS):
            acc[x] = float32(0)
        for k0 in range(0, k_total, BK):
            cuda.syncthreads()  # the previous tiles are consumed
            for g in range(A_LOADS // GROUP):  # A tile, stored k-major
                for u in range(GROUP):
                    e = U(g * GROUP + u) * NT + t
                    buf[u] = a[m0 + e // UBK, U(k0) + e % UBK]
                for u in range(GROUP):
                    e = U(g * GROUP + u) * NT + t
                    sm[A_OFF + (e % UBK) * AP + e // UBK] = buf[u]
            for g in range(B_LOADS // GROUP):
                for u in range(GROUP):
                    e = U(g * GROUP + u) * NT + t
                    buf[u] = b[U(k0) + e // UBN, n0 + e % UBN]
                for u in range(GROUP):
                    e = U(g * GROUP + u) * NT + t
                    sm[B_OFF + (e // UBN) * BP + e % UBN] = buf[u]
            cuda.syncthreads()
            mac(sm, A_OFF + r_base, AP, B_OFF + c_base, BP, acc, af, bf)
        for i in range(TM):
            r = m0 + r_base + U((i // R_CH) * R_ST + i % R_CH)
            for j in range(TN):
                c[r, n0 + c_base + U((j // C_CH) * C_ST + j % C_CH)] = acc[i * TN + j]

    return matmul


def matmul(a, b, cfg: MatmulTiles = MatmulTiles()):
    """C = A B in float32 with the register-tiled kernel. numpy in gives numpy out."""
    host = not _checks.is_device(a)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not multiply (need (M, K) and (K, N))")
    (m, k), n = a.shape, b.shape[1]
    for name, extent, tile in (("M", m, cfg.block_m), ("N", n, cfg.block_n), ("K", k, cfg.block_k)):
        if extent % tile:
            raise ValueError(f"matmul: {name}={extent} must be a multiple of its tile {tile}")
    if np.dtype(a.dtype) != np.float32 or np.dtype(b.dtype) != np.float32:
        raise TypeError(f"matmul: float32 inputs only, got {a.dtype} and {b.dtype}")
    ad, bd = as_device(a), as_device(b)
    c = empty((m, n), np.float32, "c")
    launch(build_kernel(cfg), (n // cfg.block_n, m // cfg.block_m), cfg.num_threads, cfg.smem_bytes(),
           ad, bd, c, np.int32(k))
    return to_caller(c, host)
