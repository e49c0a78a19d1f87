"""FlashAttention-2 backward pass (Dao 2023, "FlashAttention-2", Algorithm 2).

P is recomputed from Q, K and the forward's lse (no N x N matrix is stored).

Schedule, as a simulator should model it (three launches, then a cast for fp16):

    1. preprocess, grid (ceil(N / 16), B*H), 128 threads (4 warps), one warp per query
       row, 4 rows a warp: reads O_i and dO_i (N x d each) in whole 128-byte lines,
       writes D = rowsum(dO o O) (N float32).
       (A zero-fill of the float32 dQ accumulator, N x d, precedes it.)
    2. main, grid (T_c = ceil(N / B_c), B*H), blockIdx.x = key tile j:
         load K_j, V_j (B_c x d) from HBM once; dK_j = dV_j = 0 in registers
         for i in [i_lo, T_r)   (i_lo = floor(j B_c / B_r) when causal, else 0):
             load Q_i, dO_i (B_r x d), lse_i, D_i (B_r) from HBM
             S = Q_i K_j^T; P = exp(S - lse_i)                (recomputed, masked)
             dV_j += P^T dO_i
             dP = dO_i V_j^T; dS = P o (dP - D_i)
             dK_j += dS^T Q_i
             dQ_i += dS K_j: atomic adds of B_r x d float32 values to HBM
         write dK_j, dV_j (B_c x d, input dtype) once
    3. for float16 inputs only, cast the float32 dQ accumulator to dq.

HBM traffic per (batch, head) in the main kernel: K, V once; Q, dO, lse, D once per
key tile (T_c times, fewer when causal); dQ read-modify-written by atomics T_c
times; dK, dV written once.

Register tiling (see ``_tiling``): thread (y, x) owns rows of the key tile (over y)
and columns of d (over x) of dK_j and dV_j, a (key rows x query columns) micro-tile
of S^T and dP^T, and a (query rows x d columns) micro-tile of dQ_i. Each product
reads both operands k-major from shared memory, so Q_i, dO_i and K_j are staged
twice (row-major and transposed) and dS twice; the shared memory is large
(about 174 KB at B_r = B_c = d = 64), so one block runs per multiprocessor.

Grouped-query attention is not supported here (dK, dV of a shared kv head would
need a reduction over its query heads): k and v must have as many heads as q.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from numba import cuda, float32

from . import _checks
from ._cuda import LOG2E, SIMULATOR, SMEM_ALIGN, U, as_device, empty, kernel_jit, launch, to_caller
from ._tiling import Split, lane_sum, outer_product_mac, pick_tx, split
from .flash2 import PAD
from ._flash_tiles import FlashTiles


@dataclass(frozen=True)
class BackwardTiles(FlashTiles):
    """One compiled backward variant: dK_j, dV_j (B_c x d) and dQ_i (B_r x d) over ty x tx threads."""

    @property
    def tx(self) -> int:
        return pick_tx((self.head_dim, self.block_r), self.num_threads)

    @property
    def ty(self) -> int:
        return self.num_threads // self.tx

    @property
    def key_rows(self) -> Split:   # rows of dK_j, dV_j, S^T over thread rows
        return split(self.block_c, self.ty, "block_c over thread rows")

    @property
    def query_rows(self) -> Split:  # rows of dQ_i over thread rows
        return split(self.block_r, self.ty, "block_r over thread rows")

    @property
    def d_cols(self) -> Split:      # head_dim columns over thread columns
        return split(self.head_dim, self.tx, "head_dim over thread columns")

    @property
    def query_cols(self) -> Split:  # query columns of S^T over thread columns
        return split(self.block_r, self.tx, "block_r over thread columns")

    def smem(self) -> dict:
        br, bc, d = self.block_r, self.block_c, self.head_dim
        tiles = [  # name, rows, pitch
            ("kt", d, bc + PAD), ("vt", d, bc + PAD), ("kr", bc, d + PAD),
            ("qt", d, br + PAD), ("qr", br, d + PAD), ("dot", d, br + PAD), ("dor", br, d + PAD),
            ("p", br, bc + PAD), ("ds", br, bc + PAD), ("dst", bc, br + PAD),
            ("lse", 1, br + PAD), ("dd", 1, br + PAD),
        ]
        out, off = {}, 0
        for name, rows, pitch in tiles:
            out[name] = (off, pitch)
            off += rows * pitch
        out["words"] = off
        return out

    def check(self) -> None:
        self.key_rows, self.query_rows, self.d_cols, self.query_cols  # noqa: B018
        self.check_loads()


def default_config(head_dim: int) -> tuple[int, int, int]:
    """(block_r, block_c, num_threads) that fit the shared memory for this head_dim."""
    return (64, 64, 128) if head_dim <= 64 else (32, 64, 256)


PRE_WARPS = 4          # warps per block of the preprocess
PRE_ROWS_PER_WARP = 4  # rows each warp reduces, their loads issued together
PRE_ROWS = PRE_WARPS * PRE_ROWS_PER_WARP  # rows per block
PRE_SMEM_BYTES = 4 * 32 * PRE_WARPS if SIMULATOR else 0  # the simulator's stand-in for the shuffles


def preprocess_grid(n: int, batch_heads: int) -> tuple[int, int]:
    """Grid of the preprocess: blocks of PRE_ROWS rows, one column of blocks per (batch, head)."""
    return (-(-n // PRE_ROWS), batch_heads)


@functools.lru_cache(maxsize=None)
def build_preprocess(head_dim: int):
    """D_i = rowsum(dO_i o O_i) (Algorithm 2, line 4), one warp per row.

    Lane x reads elements x + 32 e (e < d / 32) of its warp's rows, so one warp load
    is a contiguous stretch of a row (128 bytes in fp32): every sector fetched is used.
    The 32 partial sums of a row are added by shuffles (``lane_sum``).
    """
    if head_dim % 32:
        raise ValueError(f"head_dim={head_dim} must be a multiple of 32 (a warp's lanes share a row)")
    per_lane = head_dim // 32  # elements of a row per lane
    RPW = PRE_ROWS_PER_WARP
    row_sum = lane_sum(32)

    @kernel_jit()
    def preprocess(o, do, dd, n):
        # o, do: (B*H, N, d); dd: (B*H, N) float32
        sm = cuda.shared.array(0, float32, alignment=SMEM_ALIGN)  # used by the simulator's lane_sum only
        t = U(cuda.threadIdx.x)
        warp, x = t // U(32), t % U(32)
        bh = U(cuda.blockIdx.y)
        nu = U(n)
        row0 = U(cuda.blockIdx.x) * U(PRE_ROWS) + warp * U(RPW)
        acc = cuda.local.array(RPW, float32)
        for r in range(RPW):  # independent rows: their loads are in flight together
            row = row0 + U(r)
            acc[r] = float32(0)
            if row < nu:
                for e in range(per_lane):
                    col = x + U(32 * e)
                    acc[r] += float32(do[bh, row, col]) * float32(o[bh, row, col])
        for r in range(RPW):
            total = row_sum(sm, t, acc[r])
            row = row0 + U(r)
            if x == U(0) and row < nu:
                dd[bh, row] = total

    return preprocess


def preprocess(o3, do3):
    """D = rowsum(dO o O), (B*H, N) float32, of (B*H, N, d) device arrays: one launch."""
    bh, n, d = o3.shape
    dd = empty((bh, n), np.float32, "dd")
    launch(build_preprocess(d), preprocess_grid(n, bh), 32 * PRE_WARPS, PRE_SMEM_BYTES, o3, do3, dd, np.int32(n))
    return dd


@functools.lru_cache(maxsize=None)
def build_fill():
    @kernel_jit()
    def fill(out, value, count):
        i = U(cuda.blockIdx.x) * U(cuda.blockDim.x) + U(cuda.threadIdx.x)
        if i < U(count):
            out[i] = value

    return fill


@functools.lru_cache(maxsize=None)
def build_cast():
    @kernel_jit()
    def cast(src, dst, count):
        i = U(cuda.blockIdx.x) * U(cuda.blockDim.x) + U(cuda.threadIdx.x)
        if i < U(count):
            dst[i] = src[i]

    return cast


@functools.lru_cache(maxsize=None)
def build_kernel(cfg: BackwardTiles, causal: bool):
    kr, qr, dc, qc = cfg.key_rows, cfg.query_rows, cfg.d_cols, cfg.query_cols
    TMC, TMR, TD, TNR = kr.per_thread, qr.per_thread, dc.per_thread, qc.per_thread
    KR_CH, KR_ST = kr.chunk, kr.chunk * kr.threads
    QR_CH, QR_ST = qr.chunk, qr.chunk * qr.threads
    D_CH, D_ST = dc.chunk, dc.chunk * dc.threads
    QC_CH, QC_ST = qc.chunk, qc.chunk * qc.threads
    block_r, block_c, head_dim = cfg.block_r, cfg.block_c, cfg.head_dim
    lay = cfg.smem()
    (KT, KTP), (VT, VTP), (KRM, KRP) = (tuple(U(x) for x in lay[n]) for n in ("kt", "vt", "kr"))
    (QT, QTP), (QRM, QRP) = (tuple(U(x) for x in lay[n]) for n in ("qt", "qr"))
    (DOT, DOTP), (DOR, DORP) = (tuple(U(x) for x in lay[n]) for n in ("dot", "dor"))
    (PS, PSP), (DS, DSP), (DST, DSTP) = (tuple(U(x) for x in lay[n]) for n in ("p", "ds", "dst"))
    LSE, DD = U(lay["lse"][0]), U(lay["dd"][0])
    NTHREADS = cfg.num_threads
    NT, D = U(NTHREADS), U(head_dim)
    UTX = U(cfg.tx)
    Q_LOADS = block_r * head_dim // cfg.num_threads
    KV_LOADS = block_c * head_dim // cfg.num_threads
    ST_WORDS, KV_WORDS, DQ_WORDS = TMC * TNR, TMC * TD, TMR * TD
    CAUSAL = causal
    st_mac = outer_product_mac(kr, qc, head_dim)   # S^T = K_j Q_i^T, dP^T = V_j dO_i^T
    kv_mac = outer_product_mac(kr, dc, block_r)    # dV_j += P^T dO_i, dK_j += dS^T Q_i
    dq_mac = outer_product_mac(qr, dc, block_c)    # dQ_i = dS K_j

    @kernel_jit()
    def fa2_backward(q, k, v, do, lse, dd, dq, dk, dv, n, scale, q_scale):
        # q, k, v, do, dk, dv: (B*H, N, d); lse, dd: (B*H, N); dq: (B*H, N, d) float32
        sm = cuda.shared.array(0, float32, alignment=SMEM_ALIGN)
        t = U(cuda.threadIdx.x)
        ty, tx = t // UTX, t % UTX
        kr_base, qr_base = ty * U(KR_CH), ty * U(QR_CH)
        d_base, qc_base = tx * U(D_CH), tx * U(QC_CH)
        j = cuda.blockIdx.x
        bh = U(cuda.blockIdx.y)
        col0 = j * block_c
        nu = U(n)

        st = cuda.local.array(ST_WORDS, float32)  # S^T, then dP^T
        dk_acc = cuda.local.array(KV_WORDS, float32)
        dv_acc = cuda.local.array(KV_WORDS, float32)
        dq_acc = cuda.local.array(DQ_WORDS, float32)
        af = cuda.local.array(TMC, float32)
        bf = cuda.local.array(TNR, float32)
        cf = cuda.local.array(TD, float32)
        rf = cuda.local.array(TMR, float32)
        for a in range(KV_WORDS):
            dk_acc[a] = float32(0)
            dv_acc[a] = float32(0)

        # Load K_j (as K_j^T and row-major) and V_j (as V_j^T).
        for it in range(KV_LOADS):
            e = U(it) * NT + t
            c, x = e // D, e % D
            col = U(col0) + c
            kval = float32(0)
            vval = float32(0)
            if col < nu:
                kval = float32(k[bh, col, x])
                vval = float32(v[bh, col, x])
            sm[KT + x * KTP + c] = kval
            sm[KRM + c * KRP + x] = kval
            sm[VT + x * VTP + c] = vval

        t_r = (n + block_r - 1) // block_r
        i_lo = (col0 // block_r) if CAUSAL else 0
        for i in range(i_lo, t_r):
            row0 = i * block_r
            cuda.syncthreads()  # the previous Q_i, dO_i, P, dS are consumed
            # Load Q_i, dO_i (both layouts), lse_i and D_i.
            for it in range(Q_LOADS):
                e = U(it) * NT + t
                r, x = e // D, e % D
                row = U(row0) + r
                qval = float32(0)
                doval = float32(0)
                if row < nu:
                    qval = float32(q[bh, row, x])
                    doval = float32(do[bh, row, x])
                sm[QT + x * QTP + r] = qval * q_scale
                sm[QRM + r * QRP + x] = qval
                sm[DOT + x * DOTP + r] = doval
                sm[DOR + r * DORP + x] = doval
            for r in range(t, block_r, NTHREADS):
                row = U(row0) + U(r)
                sm[LSE + U(r)] = lse[bh, row] * float32(LOG2E) if row < nu else float32(0)
                sm[DD + U(r)] = dd[bh, row] if row < nu else float32(0)
            cuda.syncthreads()

            # S^T = K_j Q_i^T (base 2); P^T = exp2(S^T - lse_i), zero where masked.
            for a in range(ST_WORDS):
                st[a] = float32(0)
            st_mac(sm, KT + kr_base, KTP, QT + qc_base, QTP, st, af, bf)
            for a in range(TMC):
                c = kr_base + U((a // KR_CH) * KR_ST + a % KR_CH)
                col = U(col0) + c
                for b in range(TNR):
                    r = qc_base + U((b // QC_CH) * QC_ST + b % QC_CH)
                    row = U(row0) + r
                    p = math.exp2(st[a * TNR + b] - sm[LSE + r])
                    if row >= nu or col >= nu or (CAUSAL and col > row):
                        p = float32(0)
                    sm[PS + r * PSP + c] = p
            # dP^T = V_j dO_i^T; dS^T = P^T o (dP^T - D_i).
            for a in range(ST_WORDS):
                st[a] = float32(0)
            st_mac(sm, VT + kr_base, VTP, DOT + qc_base, DOTP, st, af, bf)
            for a in range(TMC):
                c = kr_base + U((a // KR_CH) * KR_ST + a % KR_CH)
                for b in range(TNR):
                    r = qc_base + U((b // QC_CH) * QC_ST + b % QC_CH)
                    ds = sm[PS + r * PSP + c] * (st[a * TNR + b] - sm[DD + r])
                    sm[DS + r * DSP + c] = ds
                    sm[DST + c * DSTP + r] = ds
            cuda.syncthreads()

            # dV_j += P^T dO_i; dK_j += dS^T Q_i.
            kv_mac(sm, PS + kr_base, PSP, DOR + d_base, DORP, dv_acc, af, cf)
            kv_mac(sm, DS + kr_base, DSP, QRM + d_base, QRP, dk_acc, af, cf)
            # dQ_i += dS K_j (scaled), by atomic adds to the float32 accumulator in HBM.
            for a in range(DQ_WORDS):
                dq_acc[a] = float32(0)
            dq_mac(sm, DST + qr_base, DSTP, KRM + d_base, KRP, dq_acc, rf, cf)
            for a in range(TMR):
                row = U(row0) + qr_base + U((a // QR_CH) * QR_ST + a % QR_CH)
                if row < nu:
                    for b in range(TD):
                        x = d_base + U((b // D_CH) * D_ST + b % D_CH)
                        cuda.atomic.add(dq, (bh, row, x), dq_acc[a * TD + b] * scale)

        # Write dK_j, dV_j once.
        for a in range(TMC):
            col = U(col0) + kr_base + U((a // KR_CH) * KR_ST + a % KR_CH)
            if col < nu:
                for b in range(TD):
                    x = d_base + U((b // D_CH) * D_ST + b % D_CH)
                    dk[bh, col, x] = dk_acc[a * TD + b] * scale
                    dv[bh, col, x] = dv_acc[a * TD + b]

    return fa2_backward


def flash_attention_backward(q, k, v, o, lse, do, causal=False, block_r=None, block_c=None,
                             scale=None, *, num_threads=None):
    """Gradients ``(dq, dk, dv)`` of the attention forward, from its ``o`` and ``lse``.

    q, k, v, o, do: (batch, heads, N, d), one dtype (float32 or float16); lse:
    (batch, heads, N) float32 as returned by ``flash_attention``. The gradients take
    the input dtype. block_r, block_c, num_threads default by head_dim
    (``default_config``).
    """
    host = not _checks.is_device(q)
    B, H, N, d = _checks.attention_inputs(q, k, v, same_heads=True)
    _checks.same_shape("o", o, q.shape, q.dtype)
    _checks.same_shape("do", do, q.shape, q.dtype)
    _checks.same_shape("lse", lse, (B, H, N), np.float32)
    dr, dc, dt = default_config(d)
    cfg = _checks.config(BackwardTiles, block_r or dr, block_c or dc, d, num_threads or dt)
    scale = _checks.scale(d, scale)

    qd, kd, vd, od, dod, lsed = (as_device(x) for x in (q, k, v, o, do, lse))
    shape3 = (B * H, N, d)
    q3, k3, v3, o3, do3 = (x.reshape(shape3) for x in (qd, kd, vd, od, dod))
    dq_acc = empty(shape3, np.float32, "dq_acc")
    dk = empty((B, H, N, d), q.dtype, "dk")
    dv = empty((B, H, N, d), q.dtype, "dv")
    count = B * H * N * d
    launch(build_fill(), ((count + 255) // 256,), 256, 0, dq_acc.reshape(count), np.float32(0), np.int64(count))
    dd = preprocess(o3, do3)
    launch(build_kernel(cfg, bool(causal)), ((N + cfg.block_c - 1) // cfg.block_c, B * H), cfg.num_threads,
           cfg.smem_bytes(), q3, k3, v3, do3, lsed.reshape(B * H, N), dd, dq_acc,
           dk.reshape(shape3), dv.reshape(shape3), np.int32(N), np.float32(scale), np.float32(scale * LOG2E))
    if np.dtype(q.dtype) == np.float32:
        dq = dq_acc.reshape(B, H, N, d)
    else:
        dq = empty((B, H, N, d), q.dtype, "dq")
        launch(build_cast(), ((count + 255) // 256,), 256, 0, dq_acc.reshape(count), dq.reshape(count),
               np.int64(count))
    return tuple(to_caller(x, host) for x in (dq, dk, dv))
