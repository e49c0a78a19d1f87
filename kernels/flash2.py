"""FlashAttention-2 forward pass (Dao 2023, "FlashAttention-2", Algorithm 1).

Schedule, as a simulator should model it (one thread block per query tile):

    grid  = (T_r = ceil(N / B_r), batch * heads)   blockIdx.x = query tile i (fastest:
            the tiles of one head run together), blockIdx.y = batch * head
    block = num_threads threads (default 128)
    per block:
        load Q_i (B_r x d) from HBM once                                  (step 4)
        for j in [j_lo, j_hi):                                            (step 6)
            load K_j, V_j (B_c x d each) from HBM into shared memory      (step 7)
            S = Q_i K_j^T in registers; row max across the block;          (steps 8-9)
            P = exp(S - m) to shared memory; O_i, l_i rescaled in registers
            O_i += P V_j in registers                                     (step 10)
        write O_i (B_r x d, input dtype) and lse_i (B_r, float32) once    (steps 12-15)

    j_lo = 0, or floor((i B_r - window + 1) / B_c) with a sliding window;
    j_hi = T_c, or ceil(min(N, (i + 1) B_r) / B_c) when causal: tiles wholly above the
    diagonal or left of the window are never loaded. Only tiles that straddle the
    diagonal, the window's edge or the end of the sequence apply an element mask.

HBM traffic per (batch, head): Q and O once (N d each), K and V once per query tile
whose band reaches them (T_r N d each without a mask), lse once (N floats).

Sliding window (Mistral): query i attends keys j with i - window < j <= i. It is
causal by definition, so ``window`` requires ``causal=True``.

Grouped-query attention: k and v may have fewer heads; query head h reads kv head
h // (heads // kv_heads).

Register tiling: the block's threads form a ty x tx grid (see ``_tiling``); thread
(y, x) holds a tm x tn micro-tile of S and a tm x td micro-tile of O (td = d / tx),
both over the same tm query rows, so m_i and l_i of a row live in the tx threads of
that row and only the row max crosses threads (through shared memory). l_i is kept
as per-thread partial sums and reduced once at the end. Q is scaled by
scale * log2(e) when loaded, so the softmax uses exp2 (one MUFU instruction).
Shared memory (float32): Q_i^T (d x B_r), K_j^T (d x B_c) which P^T (B_c x B_r)
overwrites once S is in registers, V_j (B_c x d), and B_r x tx words for the row
max, each row padded by 4 words.
"""
from __future__ import annotations

import functools
import math

import numpy as np
from numba import cuda, float32

from dataclasses import dataclass

from . import _checks
from ._cuda import LN2, LOG2E, NEG_INF, SMEM_ALIGN, U, as_device, empty, kernel_jit, launch, to_caller
from ._flash_tiles import PAD, ForwardTiles
from ._tiling import outer_product_mac

@dataclass(frozen=True)
class FA2Tiles(ForwardTiles):
    """One compiled FA2 forward variant: tile sizes, threads and the register tiling they imply."""

    def smem(self) -> dict:
        """Word offsets and pitches of the shared-memory tiles (float32 words)."""
        br, bc, d = self.block_r, self.block_c, self.head_dim
        qp, kp, vp, pp = br + PAD, bc + PAD, d + PAD, br + PAD
        k_off = d * qp
        v_off = k_off + max(d * kp, bc * pp)  # K_j^T and P^T share words
        r_off = v_off + bc * vp
        return dict(qp=qp, kp=kp, vp=vp, pp=pp, q_off=0, k_off=k_off, p_off=k_off,
                    v_off=v_off, r_off=r_off, words=r_off + br * self.tx)


def smem_bytes(block_r: int, block_c: int, head_dim: int, num_threads: int) -> int:
    return FA2Tiles(block_r, block_c, head_dim, num_threads).smem_bytes()


@functools.lru_cache(maxsize=None)
def build_kernel(cfg: FA2Tiles, causal: bool):
    """Compile-time specialised FA2 forward kernel for one configuration."""
    rows, s_cols, o_cols = cfg.rows, cfg.s_cols, cfg.o_cols
    TX, TM, TN, TD = cfg.tx, rows.per_thread, s_cols.per_thread, o_cols.per_thread
    R_CH, R_ST = rows.chunk, rows.chunk * rows.threads
    S_CH, S_ST = s_cols.chunk, s_cols.chunk * s_cols.threads
    O_CH, O_ST = o_cols.chunk, o_cols.chunk * o_cols.threads
    lay = cfg.smem()
    block_r, block_c, head_dim = cfg.block_r, cfg.block_c, cfg.head_dim
    NT, D = U(cfg.num_threads), U(head_dim)
    QP, KP, VP, PP = U(lay["qp"]), U(lay["kp"]), U(lay["vp"]), U(lay["pp"])
    Q_OFF, K_OFF, P_OFF, V_OFF, R_OFF = (U(lay[k]) for k in ("q_off", "k_off", "p_off", "v_off", "r_off"))
    UTX, UR_CH, US_CH, UO_CH = U(TX), U(R_CH), U(S_CH), U(O_CH)
    Q_LOADS = block_r * head_dim // cfg.num_threads
    KV_LOADS = block_c * head_dim // cfg.num_threads
    S_WORDS, O_WORDS = TM * TN, TM * TD
    GROUP = math.gcd(4, Q_LOADS, KV_LOADS)  # global loads in flight per thread
    CAUSAL = causal
    qk_mac = outer_product_mac(rows, s_cols, head_dim)  # S += Q_i K_j^T
    pv_mac = outer_product_mac(rows, o_cols, block_c)   # O += P V_j

    @kernel_jit()
    def fa2_forward(q, k, v, o, lse, n, group, q_scale, window):
        # q, o: (B*H, N, d); k, v: (B*Hkv, N, d); lse: (B*H, N) float32
        sm = cuda.shared.array(0, float32, alignment=SMEM_ALIGN)
        t = U(cuda.threadIdx.x)
        ty, tx = t // UTX, t % UTX
        r_base, s_base, o_base = ty * UR_CH, tx * US_CH, tx * UO_CH
        i = cuda.blockIdx.x
        bh = U(cuda.blockIdx.y)
        kvh = bh // U(group)
        row0 = i * block_r
        nu = U(n)

        s = cuda.local.array(S_WORDS, float32)    # S_ij micro-tile, then P_ij
        acc = cuda.local.array(O_WORDS, float32)  # O_i micro-tile
        m = cuda.local.array(TM, float32)         # running row max (base 2)
        l = cuda.local.array(TM, float32)         # this thread's part of the row sum
        af = cuda.local.array(TM, float32)
        bf = cuda.local.array(TN, float32)
        vf = cuda.local.array(TD, float32)
        kbuf = cuda.local.array(GROUP, float32)
        vbuf = cuda.local.array(GROUP, float32)

        # Step 4: load Q_i (scaled by scale * log2 e) into shared memory as Q_i^T.
        for g in range(Q_LOADS // GROUP):
            for u in range(GROUP):
                e = U(g * GROUP + u) * NT + t
                row = U(row0) + e // D
                kbuf[u] = float32(0)
                if row < nu:
                    kbuf[u] = float32(q[bh, row, e % D]) * q_scale
            for u in range(GROUP):
                e = U(g * GROUP + u) * NT + t
                sm[Q_OFF + (e % D) * QP + e // D] = kbuf[u]
        # Step 5: O_i = 0, l_i = 0, m_i = -inf on chip.
        for a in range(TM):
            m[a] = NEG_INF
            l[a] = float32(0)
        for a in range(O_WORDS):
            acc[a] = float32(0)

        # The key tiles this query tile sees: the causal diagonal and the window bound them.
        j_hi = (n + block_c - 1) // block_c
        if CAUSAL:
            last = min(n, row0 + block_r)
            j_hi = (last + block_c - 1) // block_c
        j_lo = 0
        if window > 0:
            first = row0 + 1 - window
            if first > 0:
                j_lo = first // block_c

        for j in range(j_lo, j_hi):  # step 6
            col0 = j * block_c
            cuda.syncthreads()  # the previous tile's P and V_j are consumed
            # Step 7: load K_j (as K_j^T) and V_j into shared memory.
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
            cuda.syncthreads()

            # Step 8: S_ij = Q_i K_j^T, a TM x TN micro-tile per thread.
            for a in range(S_WORDS):
                s[a] = float32(0)
            qk_mac(sm, Q_OFF + r_base, QP, K_OFF + s_base, KP, s, af, bf)

            # Mask only tiles that cross the sequence end, the diagonal or the window edge.
            need_mask = col0 + block_c > n
            if CAUSAL and col0 + block_c - 1 > row0:
                need_mask = True
            if window > 0 and col0 + window <= row0 + block_r - 1:
                need_mask = True
            if need_mask:
                for a in range(TM):
                    row = row0 + r_base + (a // R_CH) * R_ST + a % R_CH
                    for b in range(TN):
                        col = col0 + s_base + (b // S_CH) * S_ST + b % S_CH
                        masked = col >= n
                        if CAUSAL and col > row:
                            masked = True
                        if window > 0 and col + window <= row:
                            masked = True
                        if masked:
                            s[a * TN + b] = NEG_INF

            # Step 9, first half: row max over the TX threads that share each row.
            for a in range(TM):
                mx = s[a * TN]
                for b in range(1, TN):
                    mx = max(mx, s[a * TN + b])
                r = r_base + U((a // R_CH) * R_ST + a % R_CH)
                sm[R_OFF + r * UTX + tx] = mx
            cuda.syncthreads()  # K_j^T is dead from here on: P^T may overwrite it

            # Step 9, second half: m_i, P_ij = exp(S_ij - m_i), l_i; the rescale of step 10.
            for a in range(TM):
                r = r_base + U((a // R_CH) * R_ST + a % R_CH)
                m_new = m[a]
                for x in range(TX):
                    m_new = max(m_new, sm[R_OFF + r * UTX + U(x)])
                m_use = float32(0) if m_new == NEG_INF else m_new  # a row that saw no key yet
                alpha = math.exp2(m[a] - m_use)
                m[a] = m_new
                rowsum = float32(0)
                for b in range(TN):
                    p = math.exp2(s[a * TN + b] - m_use)
                    rowsum += p
                    c = s_base + U((b // S_CH) * S_ST + b % S_CH)
                    sm[P_OFF + c * PP + r] = p
                l[a] = l[a] * alpha + rowsum
                for b in range(TD):
                    acc[a * TD + b] *= alpha
            cuda.syncthreads()

            # Step 10: O_i += P_ij V_j.
            pv_mac(sm, P_OFF + r_base, PP, V_OFF + o_base, VP, acc, af, vf)

        # Steps 12-15: reduce l_i over the row's threads, normalise, write O_i and lse_i.
        for a in range(TM):  # every read of the row-max words is behind the last barrier
            r = r_base + U((a // R_CH) * R_ST + a % R_CH)
            sm[R_OFF + r * UTX + tx] = l[a]
        cuda.syncthreads()
        for a in range(TM):
            r = r_base + U((a // R_CH) * R_ST + a % R_CH)
            row = U(row0) + r
            if row < nu:
                l_row = float32(0)
                for x in range(TX):
                    l_row += sm[R_OFF + r * UTX + U(x)]
                inv_l = float32(1) / l_row
                for b in range(TD):
                    col = o_base + U((b // O_CH) * O_ST + b % O_CH)
                    o[bh, row, col] = acc[a * TD + b] * inv_l
                if tx == U(0):
                    lse[bh, row] = m[a] * LN2 + math.log(l_row)

    return fa2_forward


def default_threads(block_r: int, head_dim: int) -> int:
    """Two warps per 32 query rows: a 4-row micro-tile for B_r = 64 with 128 threads."""
    return max(32, 2 * block_r)


def flash_attention(q, k, v, causal=False, block_r=64, block_c=64, window=None, scale=None,
                    *, num_threads=None):
    """FlashAttention-2 forward. Returns ``(o, lse)``.

    q: (batch, heads, N, d); k, v: (batch, kv_heads, N, d), float32 or float16.
    o has q's shape and dtype; lse = log sum_j exp(scale q_i . k_j) is float32
    (batch, heads, N). numpy in gives numpy out; device arrays give device arrays.
    """
    host = not _checks.is_device(q)
    B, H, N, d = _checks.attention_inputs(q, k, v)
    num_threads = default_threads(block_r, d) if num_threads is None else num_threads
    cfg = _checks.config(FA2Tiles, block_r, block_c, d, num_threads)
    if window is not None:
        window = _checks.window(window, causal)
    Hkv = k.shape[1]
    scale = _checks.scale(d, scale)

    qd, kd, vd = (as_device(x) for x in (q, k, v))
    o = empty((B, H, N, d), q.dtype, "o")
    lse = empty((B, H, N), np.float32, "lse")
    kernel = build_kernel(cfg, bool(causal))
    grid = ((N + block_r - 1) // block_r, B * H)
    launch(kernel, grid, cfg.num_threads, cfg.smem_bytes(),
           qd.reshape(B * H, N, d), kd.reshape(B * Hkv, N, d), vd.reshape(B * Hkv, N, d),
           o.reshape(B * H, N, d), lse.reshape(B * H, N),
           np.int32(N), np.int32(H // Hkv), np.float32(scale * LOG2E), np.int32(window or 0))
    return to_caller(o, host), to_caller(lse, host)
