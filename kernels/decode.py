"""Decode attention: one new query token per sequence against a KV cache of length L.

q: (batch, heads, 1, d), the forward's layout with N = 1; k_cache, v_cache:
(batch, kv_heads, L, d) with heads a multiple of kv_heads (GQA; MQA is kv_heads = 1).
Returns (o (batch, heads, 1, d) in q's dtype, lse (batch, heads, 1) float32).

Two schedules, one kernel body:

decode_attention: grid (1, B*H), one block per (batch, query head) loops over the
    whole cache in tiles of ``num_threads`` keys and writes o and lse once. With few
    sequences the grid cannot fill the GPU: B*H blocks for 132 multiprocessors.

flash_decoding (Flash-Decoding, Dao et al. 2023): grid (num_splits, B*H),
    blockIdx.x = split s. Block (s, bh) handles keys [s * chunk, min(L, (s+1) * chunk))
    with chunk = ceil(L / num_splits) rounded up to whole tiles, and writes a
    partial o_s (d float32, normalised) and lse_s (float32) to HBM. A second kernel,
    grid (B*H,), d threads, reads the num_splits partials of its (batch, head),
    and writes o = sum_s w_s o_s / sum_s w_s with w_s = exp(lse_s - max lse), and
    lse = max lse + log sum_s w_s.
    Default num_splits: enough blocks for two waves over the multiprocessors,
    ceil(2 * SMs / (B*H)), but no more splits than tiles of keys (each split gets
    at least one tile), and 1 if B*H already gives two waves.

Per tile, a block loads ``T = num_threads`` keys and values (T x d each, coalesced,
once from HBM) into shared memory; thread t scores key t against q (held in
shared memory, scaled by scale * log2 e); the tile max is reduced across the block;
P goes to shared memory; thread t accumulates output column t mod d over every
(T / d)-th key, with its own slice of the row sum. HBM traffic per query head: the
kv head's K and V once (query heads of one group each read it: GQA re-reads come
from L2 when they fit), q once, o and lse once; plus, for flash_decoding,
num_splits * (d + 1) float32 words written and read back.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from numba import cuda, float32

from . import _checks
from ._cuda import (LN2, LOG2E, NEG_INF, SMEM_ALIGN, U, as_device, empty, kernel_jit, launch, sm_count,
                    to_caller)
from ._tiling import segment_max


@dataclass(frozen=True)
class Config:
    head_dim: int
    num_threads: int  # also the keys per tile

    def smem(self) -> dict:
        t, d = self.num_threads, self.head_dim
        kp = d + 1  # odd pitch: thread t reads row t of K without bank conflicts
        k_off = 0
        v_off = k_off + t * kp
        q_off = v_off + t * d
        p_off = q_off + d
        r_off = p_off + t
        return dict(kp=kp, k_off=k_off, v_off=v_off, q_off=q_off, p_off=p_off, r_off=r_off,
                    words=r_off + t + (t // d) * (d + 1))

    def smem_bytes(self) -> int:
        return 4 * self.smem()["words"]

    def check(self) -> None:
        t = self.num_threads
        if t % self.head_dim or t & (t - 1):
            raise ValueError(f"num_threads={t} must be a power of two and a multiple of "
                             f"head_dim={self.head_dim}")


def default_threads(head_dim: int) -> int:
    return max(128, head_dim)


@functools.lru_cache(maxsize=None)
def build_kernel(cfg: Config, final: bool):
    """``final``: write o and lse (one split); else write the split's partials."""
    T, d = cfg.num_threads, cfg.head_dim
    lay = cfg.smem()
    NT, D, KP = U(T), U(d), U(lay["kp"])
    K_OFF, V_OFF, Q_OFF, P_OFF, R_OFF = (U(lay[x]) for x in ("k_off", "v_off", "q_off", "p_off", "r_off"))
    O_OFF = R_OFF + NT            # per-slice partial o and l after the loop
    SLICES = T // d
    USL = U(SLICES)
    LOADS = T * d // T            # keys * d / threads = d per thread per tile
    GROUP = math.gcd(32, LOADS)
    FINAL = final

    @kernel_jit()
    def decode(q, k, v, o, lse, length, chunk, group, q_scale):
        # q: (B*H, d); k, v: (B*Hkv, L, d); o: (B*H, d) or (B*H, S, d); lse: (B*H,) or (B*H, S)
        sm = cuda.shared.array(0, float32, alignment=SMEM_ALIGN)
        t = U(cuda.threadIdx.x)
        split_id = cuda.blockIdx.x
        bh = U(cuda.blockIdx.y)
        kvh = bh // U(group)
        x, sl = t % D, t // D  # output column and key slice of this thread
        start = split_id * chunk
        stop = min(length, start + chunk)
        lu = U(length)

        kbuf = cuda.local.array(GROUP, float32)
        vbuf = cuda.local.array(GROUP, float32)
        if t < D:
            sm[Q_OFF + t] = float32(q[bh, t]) * q_scale
        m = NEG_INF
        l_part = float32(0)
        o_part = float32(0)
        for c0 in range(start, stop, T):
            cuda.syncthreads()  # q is stored; the previous tile is consumed
            # K, V tile: T keys x d, coalesced; GROUP loads in flight per thread.
            for g in range(LOADS // GROUP):
                for u in range(GROUP):
                    e = U(g * GROUP + u) * NT + t
                    key = U(c0) + e // D
                    kbuf[u] = float32(0)
                    vbuf[u] = float32(0)
                    if key < lu:
                        kbuf[u] = float32(k[kvh, key, e % D])
                        vbuf[u] = float32(v[kvh, key, e % D])
                for u in range(GROUP):
                    e = U(g * GROUP + u) * NT + t
                    c, xx = e // D, e % D
                    sm[K_OFF + c * KP + xx] = kbuf[u]
                    sm[V_OFF + c * D + xx] = vbuf[u]
            cuda.syncthreads()
            # Thread t scores key c0 + t.
            s = float32(0)
            for kk in range(d):
                s += sm[Q_OFF + U(kk)] * sm[K_OFF + t * KP + U(kk)]
            if U(c0) + t >= U(stop):
                s = NEG_INF
            m_new = max(m, segment_max(sm, R_OFF, t, NT, s))
            alpha = math.exp2(m - m_new)  # m_new is finite: every tile holds a key
            m = m_new
            sm[P_OFF + t] = math.exp2(s - m_new)
            cuda.syncthreads()
            acc = float32(0)
            psum = float32(0)
            for c in range(0, T, SLICES):
                p = sm[P_OFF + U(c) + sl]
                psum += p
                acc += p * sm[V_OFF + (U(c) + sl) * D + x]
            o_part = o_part * alpha + acc
            l_part = l_part * alpha + psum

        # Combine the key slices: slice sl's o_part and l_part through shared memory.
        cuda.syncthreads()
        sm[O_OFF + sl * (D + U(1)) + x] = o_part
        if x == U(0):
            sm[O_OFF + sl * (D + U(1)) + D] = l_part
        cuda.syncthreads()
        if t < D:
            o_sum = float32(0)
            l_sum = float32(0)
            for j in range(SLICES):
                o_sum += sm[O_OFF + U(j) * (D + U(1)) + t]
                l_sum += sm[O_OFF + U(j) * (D + U(1)) + D]
            if FINAL:
                o[bh, t] = o_sum / l_sum
                if t == U(0):
                    lse[bh] = m * LN2 + math.log(l_sum)
            else:
                sid = U(split_id)
                if l_sum > float32(0):
                    o[bh, sid, t] = o_sum / l_sum
                    if t == U(0):
                        lse[bh, sid] = m * LN2 + math.log(l_sum)
                else:  # an empty split
                    o[bh, sid, t] = float32(0)
                    if t == U(0):
                        lse[bh, sid] = NEG_INF

    return decode


@functools.lru_cache(maxsize=None)
def build_combine(num_splits: int):
    S = num_splits

    @kernel_jit()
    def combine(o_part, lse_part, o, lse):
        # o_part: (B*H, S, d) float32; lse_part: (B*H, S); o: (B*H, d); lse: (B*H,)
        x = U(cuda.threadIdx.x)
        bh = U(cuda.blockIdx.x)
        mx = NEG_INF
        for s in range(S):
            mx = max(mx, lse_part[bh, U(s)])
        wsum = float32(0)
        acc = float32(0)
        for s in range(S):
            w = math.exp(lse_part[bh, U(s)] - mx)
            wsum += w
            acc += w * o_part[bh, U(s), x]
        o[bh, x] = acc / wsum
        if x == U(0):
            lse[bh] = mx + math.log(wsum)

    return combine


def default_num_splits(batch_heads: int, length: int, keys_per_tile: int) -> int:
    """Blocks for two waves over the multiprocessors, at least one key tile per split."""
    want = -(-2 * sm_count() // batch_heads)
    tiles = -(-length // keys_per_tile)
    return max(1, min(want, tiles))


def _decode_inputs(q, k_cache, v_cache, num_threads, scale):
    for name, x in (("q", q), ("k_cache", k_cache), ("v_cache", v_cache)):
        _checks._array(name, x)
        if x.ndim != 4:
            raise ValueError(f"{name} must have 4 dimensions, got shape {x.shape}")
    if q.shape[2] != 1:
        raise ValueError(f"q must have shape (batch, heads, 1, head_dim) for decoding, got {q.shape}")
    B, H, _, d = q.shape
    Bk, Hkv, L, dk = k_cache.shape
    if k_cache.shape != v_cache.shape:
        raise ValueError(f"k_cache {k_cache.shape} and v_cache {v_cache.shape} must have the same shape")
    if (Bk, dk) != (B, d):
        raise ValueError(f"k_cache shape {k_cache.shape} does not match q shape {q.shape}: "
                         "batch and head_dim must agree")
    if H % Hkv:
        raise ValueError(f"q has {H} heads and the cache {Hkv}: heads must be a multiple of kv_heads")
    dts = {np.dtype(_checks._dtype(n, x)) for n, x in (("q", q), ("k_cache", k_cache), ("v_cache", v_cache))}
    if len(dts) != 1:
        raise TypeError(f"q, k_cache, v_cache must share one dtype, got {sorted(map(str, dts))}")
    for name, x in (("q", q), ("k_cache", k_cache), ("v_cache", v_cache)):
        _checks._contiguous(name, x)
    _checks._head_dim("q", d)
    cfg = Config(d, _checks.positive_int("num_threads", default_threads(d) if num_threads is None
                                          else num_threads))
    try:
        cfg.check()
    except ValueError as err:
        raise ValueError(f"decode: {err}") from None
    return B, H, Hkv, L, d, cfg, _checks.scale(d, scale)


def _run(q, k_cache, v_cache, num_splits, num_threads, scale):
    host = not _checks.is_device(q)
    B, H, Hkv, L, d, cfg, scale = _decode_inputs(q, k_cache, v_cache, num_threads, scale)
    T = cfg.num_threads
    if num_splits is None:
        num_splits = default_num_splits(B * H, L, T)
    num_splits = _checks.positive_int("num_splits", num_splits)
    chunk = -(-(-(-L // num_splits)) // T) * T  # ceil(L / S) rounded up to whole tiles

    qd, kd, vd = (as_device(x) for x in (q, k_cache, v_cache))
    o = empty((B, H, 1, d), q.dtype, "o")
    lse = empty((B, H, 1), np.float32, "lse")
    args = (qd.reshape(B * H, d), kd.reshape(B * Hkv, L, d), vd.reshape(B * Hkv, L, d))
    tail = (np.int32(L), np.int32(chunk), np.int32(H // Hkv), np.float32(scale * LOG2E))
    if num_splits == 1:
        launch(build_kernel(cfg, True), (1, B * H), T, cfg.smem_bytes(),
               *args, o.reshape(B * H, d), lse.reshape(B * H), *tail)
    else:
        o_part = empty((B * H, num_splits, d), np.float32, "o_part")
        lse_part = empty((B * H, num_splits), np.float32, "lse_part")
        launch(build_kernel(cfg, False), (num_splits, B * H), T, cfg.smem_bytes(),
               *args, o_part, lse_part, *tail)
        launch(build_combine(num_splits), (B * H,), d, 0,
               o_part, lse_part, o.reshape(B * H, d), lse.reshape(B * H))
    return to_caller(o, host), to_caller(lse, host)


def decode_attention(q, k_cache, v_cache, scale=None, *, num_threads=None):
    """One block per (batch, head) over the whole cache. Returns ``(o, lse)``."""
    return _run(q, k_cache, v_cache, 1, num_threads, scale)


def flash_decoding(q, k_cache, v_cache, num_splits=None, scale=None, *, num_threads=None):
    """Split-KV decoding (partials per split, then a log-sum-exp combine). Returns ``(o, lse)``."""
    return _run(q, k_cache, v_cache, num_splits, num_threads, scale)
