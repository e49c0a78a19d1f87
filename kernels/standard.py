"""Standard attention: three kernels with S and P materialised in HBM.

    (a) S = Q K^T * scale, causal entries set to -inf      register-tiled matmul
    (b) P = softmax(S) along rows                          one block per row
    (c) O = P V                                            register-tiled matmul

S and P are float32 in HBM whatever the input dtype (a choice: P in float16 would
halve their traffic but round every probability; here only Q, K, V and O take the
input dtype). Per (batch, head) that is 4 N^2 bytes written and read for S, and
again for P: the quadratic traffic FlashAttention avoids.

Nothing is skipped for the causal mask: (a) computes every tile and writes -inf
above the diagonal, (b) reads whole rows, (c) multiplies whole rows of P (zeros
included), as masked attention without fusion does. Their FLOPs are those of
the dense problem.

Schedules, as a simulator should model them:

(a) grid (ceil(N / bn), ceil(N / bm), B*H), blockIdx.x = key tile. Each block loops
    over d in steps of bk: loads a bm x bk slice of Q and a bn x bk slice of K into
    shared memory (transposed), accumulates its bm x bn tile of S in registers,
    and writes it once (float32). Q is read ceil(N / bn) times and K ceil(N / bm)
    times per head (through L2).
(b) grid (ceil(N / rows_per_block), B*H): each block holds rows_per_block rows with
    threads_per_row threads each (256 threads a block on the GPU: 32 to 256 per row).
    A row is read once from S into registers (ceil(N / threads_per_row) values per
    thread), its max and sum are reduced through shared memory, and it is written
    once to P.
(c) grid (ceil(d / bn), ceil(N / bm), B*H): each block loops over the N keys in steps
    of bk, loading a bm x bk slice of P and a bk x bn slice of V, and writes its
    bm x bn tile of O once (input dtype).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from numba import cuda, float32

from . import _checks, _cuda
from ._cuda import NEG_INF, SMEM_ALIGN, U, as_device, empty, kernel_jit, launch, to_caller
from ._tiling import Split, outer_product_mac, pick_tx, segment_max, segment_sum, split

PAD = 4


@dataclass(frozen=True)
class MatmulConfig:
    """A bm x bn output tile per block, reduced in steps of bk, num_threads threads."""

    bm: int
    bn: int
    bk: int
    num_threads: int

    @property
    def tx(self) -> int:
        return pick_tx((self.bn,), self.num_threads, max_tx=16)

    @property
    def rows(self) -> Split:
        return split(self.bm, self.num_threads // self.tx, "bm over thread rows")

    @property
    def cols(self) -> Split:
        return split(self.bn, self.tx, "bn over thread columns")

    def smem_bytes(self) -> int:
        return 4 * self.bk * ((self.bm + PAD) + (self.bn + PAD))

    def check(self) -> None:
        self.rows, self.cols  # noqa: B018
        for name, val in (("bm", self.bm), ("bn", self.bn)):
            if (val * self.bk) % self.num_threads:
                raise ValueError(f"{name}={val} times bk={self.bk} must be a multiple of "
                                 f"num_threads={self.num_threads}")


@functools.lru_cache(maxsize=None)
def build_matmul(cfg: MatmulConfig, b_transposed: bool, scores: bool, causal: bool):
    """C = A B (or A B^T), batched over blockIdx.z; ``scores`` adds the S epilogue.

    a: (B*H, M, K); b: (B*Hb, Ncols, K) if b_transposed else (B*Hb, K, Ncols);
    c: (B*H, M, Ncols). Batch z of a uses batch z // group of b.
    """
    rows, cols = cfg.rows, cfg.cols
    TM, TN = rows.per_thread, cols.per_thread
    R_CH, R_ST = rows.chunk, rows.chunk * rows.threads
    C_CH, C_ST = cols.chunk, cols.chunk * cols.threads
    BM, BN, BK = cfg.bm, cfg.bn, cfg.bk
    NT, UBK, UBN = U(cfg.num_threads), U(BK), U(BN)
    AP, BP = U(BM + PAD), U(BN + PAD)
    A_OFF, B_OFF = U(0), U(BK * (BM + PAD))
    UTX, UR_CH, UC_CH = U(cfg.tx), U(R_CH), U(C_CH)
    A_LOADS, B_LOADS = BM * BK // cfg.num_threads, BN * BK // cfg.num_threads
    WORDS = TM * TN
    TRANS_B, SCORES, CAUSAL = b_transposed, scores, causal
    mac = outer_product_mac(rows, cols, BK)

    @kernel_jit()
    def matmul(a, b, c, m_rows, n_cols, k_dim, group, scale):
        sm = cuda.shared.array(0, float32, alignment=SMEM_ALIGN)
        t = U(cuda.threadIdx.x)
        ty, tx = t // UTX, t % UTX
        r_base, c_base = ty * UR_CH, tx * UC_CH
        col0 = U(cuda.blockIdx.x) * UBN
        row0 = U(cuda.blockIdx.y) * U(BM)
        z = U(cuda.blockIdx.z)
        zb = z // U(group)
        mu, nu, ku = U(m_rows), U(n_cols), U(k_dim)

        acc = cuda.local.array(WORDS, float32)
        af = cuda.local.array(TM, float32)
        bf = cuda.local.array(TN, float32)
        for i in range(WORDS):
            acc[i] = float32(0)

        for k0 in range(0, k_dim, BK):
            k0u = U(k0)
            cuda.syncthreads()
            for it in range(A_LOADS):  # A[row0 + m, k0 + kk] -> As[kk][m]
                e = U(it) * NT + t
                mm, kk = e // UBK, e % UBK
                val = float32(0)
                if row0 + mm < mu and k0u + kk < ku:
                    val = float32(a[z, row0 + mm, k0u + kk])
                sm[A_OFF + kk * AP + mm] = val
            for it in range(B_LOADS):
                e = U(it) * NT + t
                if TRANS_B:  # B[col0 + nn, k0 + kk] -> Bs[kk][nn]
                    nn, kk = e // UBK, e % UBK
                    val = float32(0)
                    if col0 + nn < nu and k0u + kk < ku:
                        val = float32(b[zb, col0 + nn, k0u + kk])
                else:  # B[k0 + kk, col0 + nn] -> Bs[kk][nn]
                    kk, nn = e // UBN, e % UBN
                    val = float32(0)
                    if col0 + nn < nu and k0u + kk < ku:
                        val = float32(b[zb, k0u + kk, col0 + nn])
                sm[B_OFF + kk * BP + nn] = val
            cuda.syncthreads()
            mac(sm, A_OFF + r_base, AP, B_OFF + c_base, BP, acc, af, bf)

        for i in range(TM):
            row = row0 + r_base + U((i // R_CH) * R_ST + i % R_CH)
            if row < mu:
                for j in range(TN):
                    col = col0 + c_base + U((j // C_CH) * C_ST + j % C_CH)
                    if col < nu:
                        val = acc[i * TN + j]
                        if SCORES:
                            val *= scale
                            if CAUSAL and col > row:
                                val = NEG_INF
                        c[z, row, col] = val

    return matmul


@dataclass(frozen=True)
class SoftmaxConfig:
    """``rows_per_block`` rows per block, ``threads_per_row`` (a power of two) per row."""

    threads_per_row: int
    rows_per_block: int

    @property
    def num_threads(self) -> int:
        return self.threads_per_row * self.rows_per_block

    def smem_bytes(self) -> int:
        return 4 * self.num_threads


def default_softmax_config(n: int) -> SoftmaxConfig:
    """A power of two from 32 to 256 threads per row, about 8 or more values each;
    rows stacked to 256 threads per block."""
    t = 32
    while t < 256 and t * 8 < n:
        t *= 2
    return SoftmaxConfig(t, 256 // t)


@functools.lru_cache(maxsize=None)
def build_softmax(cfg: SoftmaxConfig, per_thread: int):
    TPR, RPB = U(cfg.threads_per_row), U(cfg.rows_per_block)
    PER = per_thread

    @kernel_jit()
    def row_softmax(s, p, n):
        # s, p: (B*H, N, N) float32; block (x, bh) owns rows x*RPB .. x*RPB + RPB - 1.
        red = cuda.shared.array(0, float32, alignment=SMEM_ALIGN)
        tid = U(cuda.threadIdx.x)
        seg, t = tid // TPR, tid % TPR
        row = U(cuda.blockIdx.x) * RPB + seg
        bh = U(cuda.blockIdx.y)
        nu = U(n)
        live = row < nu  # every thread still takes part in the barriers
        vals = cuda.local.array(PER, float32)
        mx = NEG_INF
        for e in range(PER):  # the only read of S
            col = U(e) * TPR + t
            vals[e] = NEG_INF
            if live and col < nu:
                vals[e] = s[bh, row, col]
                mx = max(mx, vals[e])
        mx = segment_max(red, seg * TPR, t, TPR, mx)
        if mx == NEG_INF:
            mx = float32(0)  # only for rows past the end, which write nothing
        total = float32(0)
        for e in range(PER):
            vals[e] = math.exp(vals[e] - mx)
            total += vals[e]
        total = segment_sum(red, seg * TPR, t, TPR, total)
        inv = float32(1) / total if total > float32(0) else float32(0)
        for e in range(PER):  # the only write of P
            col = U(e) * TPR + t
            if live and col < nu:
                p[bh, row, col] = vals[e] * inv

    return row_softmax


def _checked_matmul_config(cfg, name: str) -> MatmulConfig:
    """Check a ``MatmulConfig`` passed as ``name``."""
    if not isinstance(cfg, MatmulConfig):
        raise TypeError(f"{name} must be a standard.MatmulConfig, got {type(cfg).__name__}")
    for field in ("bm", "bn", "bk", "num_threads"):
        _checks.positive_int(f"{name}.{field}", getattr(cfg, field))
    try:
        cfg.check()
    except ValueError as err:
        raise ValueError(f"{name}={cfg}: {err}") from None
    if cfg.smem_bytes() > _cuda.smem_limit_bytes():
        raise ValueError(f"{name}={cfg} needs {cfg.smem_bytes()} bytes of shared memory; "
                         f"the device allows {_cuda.smem_limit_bytes()}")
    return cfg


def default_matmul_configs(head_dim: int) -> tuple[MatmulConfig, MatmulConfig]:
    """(S = Q K^T, O = P V) tilings: 128 x 128 tiles of S, 128 x d tiles of O."""
    return MatmulConfig(128, 128, 16, 256), MatmulConfig(128, head_dim, 16, 128 if head_dim <= 64 else 256)


def standard_attention(q, k, v, causal=False, scale=None, *, qk_config=None, pv_config=None,
                       softmax_config=None, stages=("qk", "softmax", "pv")):
    """Unfused softmax attention through HBM-resident S and P. Returns ``o``.

    q: (batch, heads, N, d); k, v: (batch, kv_heads, N, d); float32 or float16.
    o has q's shape and dtype. numpy in gives numpy out; device arrays give device arrays.
    """
    host = not _checks.is_device(q)
    B, H, N, d = _checks.attention_inputs(q, k, v)
    Hkv = k.shape[1]
    scale = _checks.scale(d, scale)
    qk_default, pv_default = default_matmul_configs(d)
    qk = _checked_matmul_config(qk_config or qk_default, "qk_config")
    pv = _checked_matmul_config(pv_config or pv_default, "pv_config")

    qd, kd, vd = (as_device(x) for x in (q, k, v))
    s = empty((B * H, N, N), np.float32, "s")
    p = empty((B * H, N, N), np.float32, "p")
    o = empty((B, H, N, d), q.dtype, "o")
    group = np.int32(H // Hkv)
    q3, k3, v3 = qd.reshape(B * H, N, d), kd.reshape(B * Hkv, N, d), vd.reshape(B * Hkv, N, d)

    # (a) S = Q K^T * scale  (``stages`` lets a benchmark time one kernel alone)
    if "qk" in stages:
        grid = ((N + qk.bn - 1) // qk.bn, (N + qk.bm - 1) // qk.bm, B * H)
        launch(build_matmul(qk, True, True, bool(causal)), grid, qk.num_threads, qk.smem_bytes(),
               q3, k3, s, np.int32(N), np.int32(N), np.int32(d), group, np.float32(scale))
    # (b) P = softmax(S)
    if "softmax" in stages:
        sc = softmax_config or default_softmax_config(N)
        grid = ((N + sc.rows_per_block - 1) // sc.rows_per_block, B * H)
        launch(build_softmax(sc, (N + sc.threads_per_row - 1) // sc.threads_per_row), grid,
               sc.num_threads, sc.smem_bytes(), s, p, np.int32(N))
    # (c) O = P V
    if "pv" in stages:
        grid = ((d + pv.bn - 1) // pv.bn, (N + pv.bm - 1) // pv.bm, B * H)
        launch(build_matmul(pv, False, False, False), grid, pv.num_threads, pv.smem_bytes(),
               p, v3, o.reshape(B * H, N, d), np.int32(N), np.int32(d), np.int32(N), group, np.float32(1))
    return to_caller(o, host)
