"""FlashAttention-1 forward pass (Dao et al. 2022, "FlashAttention", Algorithm 1).

The loop order is the paper's: K/V tiles outside, query tiles inside, so the
running O_i, l_i, m_i of every query tile go back to HBM after each K/V tile and
come back for the next one. That re-read and re-write is what FlashAttention-2
removed, and what this kernel is here to show.

Schedule, as a simulator should model it:

    grid  = (batch * heads,)    one thread block per (batch, head) runs both loops,
            as the paper's CUDA implementation does (parallel over batch and heads only)
    block = num_threads threads (default 128)
    per block:
        for j in [0, T_c):                                                 (step 5)
            load K_j, V_j (B_c x d each) from HBM into shared memory       (step 6)
            for i in [i_lo(j), T_r):                                       (step 7)
                load Q_i (B_r x d, input dtype) and m_i, l_i (B_r float32)
                    from HBM                                               (step 8)
                S = Q_i K_j^T; m~ = rowmax(S); P~ = exp(S - m~); l~ = rowsum(P~)
                m_new, l_new                                               (steps 9-11)
                O~ = P~ V_j in registers; read O_i (B_r x d, float32) from HBM,
                O_i = (l_i e^(m_i - m_new) O_i + e^(m~ - m_new) O~) / l_new  (step 12)
                write O_i (float32), l_i, m_i to HBM                       (steps 12-13)

    i_lo(j) = 0, or floor(j B_c / B_r) when causal (query tiles wholly above the
    diagonal are skipped); causal diagonal tiles mask elements.

Two departures from the letter of the paper, both as in its reference code
(Is_first / Is_last): step 2's initialisation of O, l, m in HBM is folded into the
first visit of each query tile (j = 0 starts from O = 0, l = 0, m = -inf on chip and
reads nothing), and the last visit (j = T_c - 1, or the diagonal tile when causal)
writes O_i to the output in the input dtype and lse_i = m_i + log l_i instead of the
float32 workspace. So per (batch, head) and per (j, i) visit with 0 < j < last:
reads Q_i (input dtype), O_i (fp32), l_i, m_i; writes O_i (fp32), l_i, m_i.

Register tiling, shared-memory layout and the base-2 softmax are those of
``flash2`` (see its docstring); here P~ has its own tile since K_j stays resident
across the inner loop, and the row sum l~ is reduced across threads at every visit.
The workspace holds m in base-2 units (scores are scaled by log2 e).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from numba import cuda, float32

from . import _checks
from ._cuda import LN2, LOG2E, NEG_INF, SMEM_ALIGN, U, as_device, empty, kernel_jit, launch, to_caller
from ._flash_tiles import PAD, ForwardTiles
from ._tiling import outer_product_mac


@dataclass(frozen=True)
class FA1Tiles(ForwardTiles):
    """One compiled FA1 forward variant: FA2's thread split, with P and the row statistics staged."""

    def smem(self) -> dict:
        br, bc, d = self.block_r, self.block_c, self.head_dim
        qp, kp, vp, pp = br + PAD, bc + PAD, d + PAD, br + PAD
        k_off = d * qp
        v_off = k_off + d * kp
        p_off = v_off + bc * vp
        rm_off = p_off + bc * pp
        rl_off = rm_off + br * self.tx
        return dict(qp=qp, kp=kp, vp=vp, pp=pp, q_off=0, k_off=k_off, v_off=v_off, p_off=p_off,
                    rm_off=rm_off, rl_off=rl_off, words=rl_off + br * self.tx)


@functools.lru_cache(maxsize=None)
def build_kernel(cfg: FA1Tiles, causal: bool):
    rows, s_cols, o_cols = cfg.rows, cfg.s_cols, cfg.o_cols
    TX, TM, TN, TD = cfg.tx, rows.per_thread, s_cols.per_thread, o_cols.per_thread
    R_CH, R_ST = rows.chunk, rows.chunk * rows.threads
    S_CH, S_ST = s_cols.chunk, s_cols.chunk * s_cols.threads
    O_CH, O_ST = o_cols.chunk, o_cols.chunk * o_cols.threads
    lay = cfg.smem()
    block_r, block_c, head_dim = cfg.block_r, cfg.block_c, cfg.head_dim
    NT, D = U(cfg.num_threads), U(head_dim)
    QP, KP, VP, PP = U(lay["qp"]), U(lay["kp"]), U(lay["vp"]), U(lay["pp"])
    Q_OFF, K_OFF, V_OFF, P_OFF = U(lay["q_off"]), U(lay["k_off"]), U(lay["v_off"]), U(lay["p_off"])
    RM_OFF, RL_OFF = U(lay["rm_off"]), U(lay["rl_off"])
    UTX, UR_CH, US_CH, UO_CH = U(TX), U(R_CH), U(S_CH), U(O_CH)
    Q_LOADS = block_r * head_dim // cfg.num_threads
    KV_LOADS = block_c * head_dim // cfg.num_threads
    S_WORDS, O_WORDS = TM * TN, TM * TD
    GROUP = math.gcd(8, KV_LOADS)  # global loads in flight per thread
    CAUSAL = causal
    qk_mac = outer_product_mac(rows, s_cols, head_dim)
    pv_mac = outer_product_mac(rows, o_cols, block_c)

    @kernel_jit()
    def fa1_forward(q, k, v, o, lse, o_ws, l_ws, m_ws, n, group, q_scale):
        # q, o: (B*H, N, d); k, v: (B*Hkv, N, d); lse, l_ws, m_ws: (B*H, N); o_ws: (B*H, N, d) fp32
        sm = cuda.shared.array(0, float32, alignment=SMEM_ALIGN)
        t = U(cuda.threadIdx.x)
        ty, tx = t // UTX, t % UTX
        r_base, s_base, o_base = ty * UR_CH, tx * US_CH, tx * UO_CH
        bh = U(cuda.blockIdx.x)
        kvh = bh // U(group)
        nu = U(n)
        t_r = (n + block_r - 1) // block_r
        t_c = (n + block_c - 1) // block_c

        s = cuda.local.array(S_WORDS, float32)
        acc = cuda.local.array(O_WORDS, float32)   # P~_ij V_j, then the new O_i
        m_i = cuda.local.array(TM, float32)
        l_i = cuda.local.array(TM, float32)
        af = cuda.local.array(TM, float32)
        bf = cuda.local.array(TN, float32)
        vf = cuda.local.array(TD, float32)
        kbuf = cuda.local.array(GROUP, float32)
        vbuf = cuda.local.array(GROUP, float32)

        for j in range(t_c):  # step 5
            col0 = j * block_c
            cuda.syncthreads()  # the previous K_j, V_j are consumed
            # Step 6: load K_j (as K_j^T) and V_j into shared memory.
            # Loads go out GROUP at a time before their stores, so that GROUP loads
            # per thread are in flight instead of one.
            for g in range(KV_LOADS // GROUP):
                for u in range(GROUP):
                    e = U(g * GROUP + u) * NT + t
                    col = U(col0) + e // D
                    kbuf[u] = float32(0)
                    vbuf[u] = float32(0)
                    if col < nu:
                        kbuf[u] = float32(k[kvh, col, e % D])
                        vbuf[u] = float32(v[kvh, col, e % D])
                for u in range(GROUP):
                    e = U(g * GROUP + u) * NT + t
                    c, x = e // D, e % D
                    sm[K_OFF + x * KP + c] = kbuf[u]
                    sm[V_OFF + c * VP + x] = vbuf[u]

            i_lo = (col0 // block_r) if CAUSAL else 0
            for i in range(i_lo, t_r):  # step 7
                row0 = i * block_r
                j_last = t_c - 1
                if CAUSAL:
                    j_last = (min(n, row0 + block_r) + block_c - 1) // block_c - 1
                # Step 8: load Q_i into shared memory, m_i and l_i into registers.
                for it in range(Q_LOADS):
                    e = U(it) * NT + t
                    r, x = e // D, e % D
                    row = U(row0) + r
                    val = float32(0)
                    if row < nu:
                        val = float32(q[bh, row, x]) * q_scale
                    sm[Q_OFF + x * QP + r] = val
                for a in range(TM):
                    row = U(row0) + r_base + U((a // R_CH) * R_ST + a % R_CH)
                    m_i[a] = NEG_INF
                    l_i[a] = float32(0)
                    if j > 0 and row < nu:
                        m_i[a] = m_ws[bh, row]
                        l_i[a] = l_ws[bh, row]
                cuda.syncthreads()

                # Step 9: S_ij = Q_i K_j^T.
                for a in range(S_WORDS):
                    s[a] = float32(0)
                qk_mac(sm, Q_OFF + r_base, QP, K_OFF + s_base, KP, s, af, bf)
                if col0 + block_c > n or (CAUSAL and col0 + block_c - 1 > row0):
                    for a in range(TM):
                        row = row0 + r_base + (a // R_CH) * R_ST + a % R_CH
                        for b in range(TN):
                            col = col0 + s_base + (b // S_CH) * S_ST + b % S_CH
                            if col >= n or (CAUSAL and col > row):
                                s[a * TN + b] = NEG_INF

                # Step 10: m~_ij = rowmax(S_ij) across the row's threads ...
                for a in range(TM):
                    mx = s[a * TN]
                    for b in range(1, TN):
                        mx = max(mx, s[a * TN + b])
                    r = r_base + U((a // R_CH) * R_ST + a % R_CH)
                    sm[RM_OFF + r * UTX + tx] = mx
                cuda.syncthreads()
                # ... P~_ij = exp(S_ij - m~_ij) to shared memory, and this thread's part of l~_ij.
                for a in range(TM):
                    r = r_base + U((a // R_CH) * R_ST + a % R_CH)
                    m_t = NEG_INF
                    for x in range(TX):
                        m_t = max(m_t, sm[RM_OFF + r * UTX + U(x)])
                    m_use = float32(0) if m_t == NEG_INF else m_t
                    rowsum = float32(0)
                    for b in range(TN):
                        p = math.exp2(s[a * TN + b] - m_use)
                        rowsum += p
                        c = s_base + U((b // S_CH) * S_ST + b % S_CH)
                        sm[P_OFF + c * PP + r] = p
                    sm[RL_OFF + r * UTX + tx] = rowsum
                    s[a * TN] = m_t  # keep m~ (the S values are spent)
                cuda.syncthreads()

                # Step 12, on chip: O~ = P~_ij V_j.
                for a in range(O_WORDS):
                    acc[a] = float32(0)
                pv_mac(sm, P_OFF + r_base, PP, V_OFF + o_base, VP, acc, af, vf)

                # Steps 11-13: m_new, l_new; read O_i, combine, write O_i, l_i, m_i.
                last = j == j_last
                for a in range(TM):
                    r = r_base + U((a // R_CH) * R_ST + a % R_CH)
                    row = U(row0) + r
                    m_t = s[a * TN]
                    l_t = float32(0)
                    for x in range(TX):
                        l_t += sm[RL_OFF + r * UTX + U(x)]
                    m_new = max(m_i[a], m_t)
                    m_use = float32(0) if m_new == NEG_INF else m_new
                    c_old = l_i[a] * math.exp2(m_i[a] - m_use)
                    c_new = math.exp2(m_t - m_use)
                    l_new = c_old + c_new * l_t
                    inv_l = float32(0) if l_new == float32(0) else float32(1) / l_new
                    if row < nu and tx == U(0):
                        if last:
                            lse[bh, row] = m_new * LN2 + math.log(l_new)
                        else:
                            m_ws[bh, row] = m_new
                            l_ws[bh, row] = l_new
                    # Reuse the row-statistics registers for the two weights of step 12.
                    m_i[a] = c_old * inv_l
                    l_i[a] = c_new * inv_l
                for a in range(TM):
                    row = U(row0) + r_base + U((a // R_CH) * R_ST + a % R_CH)
                    if row < nu:
                        for b in range(TD):
                            col = o_base + U((b // O_CH) * O_ST + b % O_CH)
                            val = l_i[a] * acc[a * TD + b]
                            if j > 0:
                                val += m_i[a] * o_ws[bh, row, col]
                            if last:
                                o[bh, row, col] = val
                            else:
                                o_ws[bh, row, col] = val

    return fa1_forward


def flash_attention_v1(q, k, v, causal=False, block_r=64, block_c=64, scale=None, *, num_threads=128):
    """FlashAttention-1 forward (K/V blocks outer, query blocks inner). Returns ``(o, lse)``.

    Shapes and dtypes as ``flash_attention``; k and v may have fewer heads (GQA).
    Uses a float32 workspace of (B, H, N, d + 2) words for O_i, l_i, m_i.
    """
    host = not _checks.is_device(q)
    B, H, N, d = _checks.attention_inputs(q, k, v)
    cfg = _checks.config(FA1Tiles, block_r, block_c, d, num_threads)
    Hkv = k.shape[1]
    scale = _checks.scale(d, scale)

    qd, kd, vd = (as_device(x) for x in (q, k, v))
    o = empty((B, H, N, d), q.dtype, "o")
    lse = empty((B, H, N), np.float32, "lse")
    o_ws = empty((B * H, N, d), np.float32, "o_ws")
    l_ws = empty((B * H, N), np.float32, "l_ws")
    m_ws = empty((B * H, N), np.float32, "m_ws")
    kernel = build_kernel(cfg, bool(causal))
    launch(kernel, (B * H,), cfg.num_threads, cfg.smem_bytes(),
           qd.reshape(B * H, N, d), kd.reshape(B * Hkv, N, d), vd.reshape(B * Hkv, N, d),
           o.reshape(B * H, N, d), lse.reshape(B * H, N), o_ws, l_ws, m_ws,
           np.int32(N), np.int32(H // Hkv), np.float32(scale * LOG2E))
    return to_caller(o, host), to_caller(lse, host)
