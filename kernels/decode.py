"""Decode attention: one new query token per sequence against a KV cache of length L.

q: (batch, heads, 1, d), the forward's layout with N = 1; k_cache, v_cache:
(batch, kv_heads, L, d) with heads a multiple of kv_heads (GQA; MQA is kv_heads = 1).
Returns (o (batch, heads, 1, d) in q's dtype, lse (batch, heads, 1) float32).

Two schedules, one kernel body:

decode_attention: grid (1, B*H), one block per (batch, query head) loops over the
    whole cache in tiles of T keys and writes o and lse once. With few sequences the
    grid cannot fill the GPU: B*H blocks for 132 multiprocessors.

flash_decoding (Flash-Decoding, Dao et al. 2023): grid (num_splits, B*H),
    blockIdx.x = split s. Block (s, bh) handles keys [s * chunk, min(L, (s+1) * chunk))
    with chunk = ceil(L / num_splits) rounded up to whole tiles of T keys, and writes a
    partial o_s (d float32, normalised) and lse_s (float32) to HBM. A second kernel,
    grid (B*H,), d threads, reads the num_splits partials of its (batch, head),
    and writes o = sum_s w_s o_s / sum_s w_s with w_s = exp(lse_s - max lse), and
    lse = max lse + log sum_s w_s.
    Default num_splits: enough blocks for two waves over the multiprocessors,
    ceil(2 * SMs / (B*H)), but no more splits than tiles of keys (each split gets
    at least one tile), and 1 if B*H already gives two waves.

Inside a block of ``num_threads`` threads (256 by default, whole warps):

    words: the cache is read in 4-byte words, one fp32 element or two fp16 ones
        (pk = 1 or 2 elements a word; fp16 pairs are unpacked in registers).
    key groups: 8 neighbouring lanes (4 groups per warp), G = num_threads / 8 of them.
        Lane x of a group owns words x + 8 j (j < d / (8 pk)) of every row its group
        reads, i.e. head dimensions pk (x + 8 j) + e (e < pk), of q, K, V and of its
        output accumulator: one warp load (one j) reads 32 contiguous bytes, a whole
        sector, of each of 4 consecutive key rows.
    tiles: T = G * n keys, n = 256 pk / d keys per group, so that a lane holds 32
        words of K and 32 of V per tile, in registers (fp32: T = 64 at d = 128, 128 at
        d = 64, 256 at d = 32 with 256 threads; fp16: twice that). In the tile at key
        c0, group g takes keys c0 + g + G c (c < n).

    load q (scaled by scale * log2 e) and K of the first tile into registers
    for each tile (no shared memory, no barrier):
        1. issue the loads of V of this tile             (in flight during 2 and 3)
        2. scores: each lane's partial dot products over its d / 8 dimensions,
           summed over the group's 8 lanes by 3 butterfly shuffles (xor 1, 2, 4),
           so every lane of the group holds its n scores; keys at or past the end
           of the block's range score -inf
        3. issue the loads of K of the next tile          (in flight during 4 and
           the next tile's 1 and 2)
        4. online softmax per group: m_new = max(m, scores), alpha = 2^(m - m_new),
           p = 2^(s - m_new), l = alpha l + sum p, acc = alpha acc + sum p v.
           The 8 lanes of a group each evaluate the group's exp2s (8 per key): the
           special-function unit is otherwise idle next to the 2 d / 8 FMAs per key
           and lane, and handing one lane's p to the others would cost shuffles.
    merge the G groups once, through shared memory (2 barriers): group g writes
        m_g, l_g and o_g = acc; with M = max_g m_g and w_g = 2^(m_g - M),
        o = sum_g w_g o_g / sum_g w_g l_g and lse = M ln 2 + ln sum_g w_g l_g.

    shared memory (float32 words): m_g, l_g, w_g (3 G), then o_g at a pitch of
        d + 8 (G (d + 8)): 17.4 KB at d = 128 with 256 threads, 9.6 KB at d = 64.
        Registers, not shared memory, bound the blocks per multiprocessor: the
        kernel is compiled for at most 128 a thread, so two blocks of 256 threads
        (16 warps) share one. sm_90 builds use 102 to 128, without spills except
        8 to 16 bytes with fp16 at d = 32 and 64 (ptxas 13.5; none on the H200's 13.0).

HBM traffic per query head: the kv head's K and V once (query heads of one group
each read it: GQA re-reads come from L2 when they fit), q once, o and lse once; plus,
for flash_decoding, num_splits * (d + 1) float32 words written and read back.

numba's CUDA simulator has no warp shuffles: there the group sum of step 2 goes
through num_threads * n more words of shared memory, with two barriers per tile.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from numba import cuda, float32, uint32

from . import _checks
from ._cuda import (LN2, LOG2E, NEG_INF, SIMULATOR, SMEM_ALIGN, U, as_device, empty, kernel_jit, launch,
                    sm_count, to_caller)
from ._tiling import device_fn

LANES = 8         # lanes per key: 8 four-byte words = one 32-byte sector of a key row per warp load
LANE_WORDS = 32   # 4-byte words of K (and of V) a lane holds per tile: sets the keys per group
MAX_REGISTERS = 128  # 16 warps per multiprocessor fit (fp16 at d = 64 would take 130: 8 warps)
FULL_WARP = U(0xFFFFFFFF)


@dataclass(frozen=True)
class Config:
    head_dim: int
    num_threads: int
    itemsize: int = 4  # bytes per cache element: 4 (fp32) or 2 (fp16, loaded as pairs in 4-byte words)

    @property
    def pack(self) -> int:  # cache elements per 4-byte word
        return 4 // self.itemsize

    @property
    def groups(self) -> int:  # G: key groups of LANES lanes
        return self.num_threads // LANES

    @property
    def words_per_lane(self) -> int:  # 4-byte words of one key row a lane loads
        return self.head_dim // (LANES * self.pack)

    @property
    def keys_per_group(self) -> int:  # n: keys a group scores per tile
        return max(1, LANE_WORDS // self.words_per_lane)

    @property
    def keys_per_tile(self) -> int:  # T
        return self.groups * self.keys_per_group

    def smem(self) -> dict:
        ng, d = self.groups, self.head_dim
        op = d + 8  # pitch of o_g: with fp32, the 4 groups of a warp write banks 8 g + x
        lay = dict(op=op, m_off=0, l_off=ng, w_off=2 * ng, o_off=3 * ng)
        lay["r_off"] = words = lay["o_off"] + ng * op
        if SIMULATOR:  # the stand-in for the shuffles (see the module docstring)
            words += self.num_threads * self.keys_per_group
        lay["words"] = words
        return lay

    def smem_bytes(self) -> int:
        return 4 * self.smem()["words"]

    def check(self) -> None:
        t = self.num_threads
        if t % 32 or not 32 <= t <= 1024:
            raise ValueError(f"num_threads={t} must be a multiple of 32 from 32 to 1024 "
                             "(whole warps: the group sums are warp shuffles)")
        if self.itemsize not in (2, 4) or self.head_dim % (LANES * self.pack):
            raise ValueError(f"head_dim={self.head_dim} with {self.itemsize}-byte elements must be a "
                             f"multiple of {LANES * self.pack}")


def default_threads(head_dim: int) -> int:
    return 256


def _group_sum(cfg: Config):
    """Device function ``group_sum(sm, t, s)``: s[c] summed over the LANES lanes of
    thread t's key group, in place, for c < keys_per_group; every lane gets the sums.
    All threads of the block must call it (the simulator's version has barriers)."""
    n = cfg.keys_per_group
    if not SIMULATOR:
        steps = LANES.bit_length() - 1

        @device_fn
        def group_sum(sm, t, s):
            for c in range(n):
                val = s[c]
                for i in range(steps):  # butterfly: lanes x and x ^ 2^i swap partial sums
                    val += cuda.shfl_xor_sync(FULL_WARP, val, U(1) << U(i))
                s[c] = val

        return group_sum

    R_OFF, N, UL = U(cfg.smem()["r_off"]), U(n), U(LANES)

    @device_fn
    def group_sum(sm, t, s):
        for c in range(n):
            sm[R_OFF + t * N + U(c)] = s[c]
        cuda.syncthreads()
        first = (t - t % UL) * N
        for c in range(n):
            tot = float32(0)
            for i in range(LANES):
                tot += sm[R_OFF + first + U(i) * N + U(c)]
            s[c] = tot
        cuda.syncthreads()

    return group_sum


@functools.lru_cache(maxsize=None)
def build_kernel(cfg: Config, final: bool):
    """``final``: write o and lse (one split); else write the split's partials."""
    d, NT, PK = cfg.head_dim, cfg.num_threads, cfg.pack
    WG, NK, NG, T = cfg.words_per_lane, cfg.keys_per_group, cfg.groups, cfg.keys_per_tile
    DG = WG * PK  # head dimensions per lane
    KW = NK * WG  # words of K (and of V) per lane per tile
    WORD = float32 if PK == 1 else uint32  # how the cache is loaded: fp16 pairs as one word
    ELEM = np.float32 if PK == 1 else np.float16
    lay = cfg.smem()
    UL, UNG, D, OP, UPK = U(LANES), U(NG), U(d), U(lay["op"]), U(PK)
    M_OFF, L_OFF, W_OFF, O_OFF = (U(lay[x]) for x in ("m_off", "l_off", "w_off", "o_off"))
    COL_STEPS = -(-d // NT)  # output columns per thread in the merge
    FINAL = final
    group_sum = _group_sum(cfg)

    @kernel_jit(MAX_REGISTERS)
    def decode(q, k, v, o, lse, length, chunk, group, q_scale):
        # q: (B*H, d); k, v: (B*Hkv, L, d / PK) words; o: (B*H, d) or (B*H, S, d); lse: (B*H,) or (B*H, S)
        sm = cuda.shared.array(0, float32, alignment=SMEM_ALIGN)
        t = U(cuda.threadIdx.x)
        g, x = t // UL, t % UL  # key group, lane within it
        split_id = cuda.blockIdx.x
        bh = U(cuda.blockIdx.y)
        kvh = bh // U(group)
        start = split_id * chunk
        stop = min(length, start + chunk)
        end = U(stop)

        # Lane x holds word x + 8 j of a row, i.e. head dimensions PK (x + 8 j) + e, e < PK;
        # value i = j * PK + e of qf and acc, element (c * WG + j) * PK + e of kh and vh.
        qf = cuda.local.array(DG, float32)   # q * scale * log2 e
        acc = cuda.local.array(DG, float32)  # o, unnormalised
        kb = cuda.local.array(KW, WORD)      # K words of the group's keys c at c * WG + j
        vb = cuda.local.array(KW, WORD)      # V likewise
        kh = kb.view(ELEM)                   # the same registers, as cache elements
        vh = vb.view(ELEM)
        s = cuda.local.array(NK, float32)    # the group's scores of this tile
        for j in range(WG):
            for e in range(PK):
                qf[j * PK + e] = float32(q[bh, UPK * (x + U(j * LANES)) + U(e)]) * q_scale
                acc[j * PK + e] = float32(0)
        m = NEG_INF
        l = float32(0)
        for c in range(NK):  # K of the first tile
            key = U(start) + U(c * NG) + g
            for j in range(WG):
                kb[c * WG + j] = WORD(0)
            if key < end:
                for j in range(WG):
                    kb[c * WG + j] = k[kvh, key, x + U(j * LANES)]

        for c0 in range(start, stop, T):
            # 1. V of this tile, in flight while the scores are computed.
            for c in range(NK):
                key = U(c0) + U(c * NG) + g
                for j in range(WG):
                    vb[c * WG + j] = WORD(0)
                if key < end:
                    for j in range(WG):
                        vb[c * WG + j] = v[kvh, key, x + U(j * LANES)]
            # 2. Scores (base 2): partial dot products, summed over the group's lanes.
            for c in range(NK):
                dot = float32(0)
                for i in range(DG):
                    dot += qf[i] * float32(kh[c * DG + i])
                s[c] = dot
            group_sum(sm, t, s)
            # 3. K of the next tile, in flight during the softmax and the next V loads.
            for c in range(NK):
                key = U(c0 + T) + U(c * NG) + g
                for j in range(WG):
                    kb[c * WG + j] = WORD(0)
                if key < end:
                    for j in range(WG):
                        kb[c * WG + j] = k[kvh, key, x + U(j * LANES)]
            # 4. Online softmax over the group's keys; acc = alpha acc + sum p v.
            m_new = m
            for c in range(NK):
                if U(c0) + U(c * NG) + g >= end:
                    s[c] = NEG_INF
                m_new = max(m_new, s[c])
            if m_new > NEG_INF:  # the group has seen a key (else alpha would be NaN)
                alpha = math.exp2(m - m_new)
                l *= alpha
                for i in range(DG):
                    acc[i] *= alpha
                for c in range(NK):
                    p = math.exp2(s[c] - m_new)
                    l += p
                    for i in range(DG):
                        acc[i] += p * float32(vh[c * DG + i])
                m = m_new

        # Merge the groups: w_g = 2^(m_g - M), o = sum w_g o_g / sum w_g l_g.
        for j in range(WG):
            for e in range(PK):
                sm[O_OFF + g * OP + UPK * (x + U(j * LANES)) + U(e)] = acc[j * PK + e]
        if x == U(0):
            sm[M_OFF + g] = m
            sm[L_OFF + g] = l
        cuda.syncthreads()
        m_all = NEG_INF
        for i in range(NG):
            m_all = max(m_all, sm[M_OFF + U(i)])
        if t < UNG:
            w = float32(0)  # a group without keys (m_g = -inf) weighs nothing
            if sm[M_OFF + t] > NEG_INF:
                w = math.exp2(sm[M_OFF + t] - m_all)
            sm[W_OFF + t] = w
        cuda.syncthreads()
        l_all = float32(0)
        for i in range(NG):
            l_all += sm[W_OFF + U(i)] * sm[L_OFF + U(i)]
        for r in range(COL_STEPS):
            col = t + U(r * NT)
            if col < D:
                o_sum = float32(0)
                for i in range(NG):
                    o_sum += sm[W_OFF + U(i)] * sm[O_OFF + U(i) * OP + col]
                if FINAL:
                    o[bh, col] = o_sum / l_all
                    if col == U(0):
                        lse[bh] = m_all * LN2 + math.log(l_all)
                else:
                    sid = U(split_id)
                    if l_all > float32(0):
                        o[bh, sid, col] = o_sum / l_all
                        if col == U(0):
                            lse[bh, sid] = m_all * LN2 + math.log(l_all)
                    else:  # an empty split
                        o[bh, sid, col] = float32(0)
                        if col == U(0):
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
    if L < 1:
        raise ValueError(f"k_cache {k_cache.shape} holds no keys: the cache length must be at least 1")
    if H % Hkv:
        raise ValueError(f"q has {H} heads and the cache {Hkv}: heads must be a multiple of kv_heads")
    dts = {np.dtype(_checks._dtype(n, x)) for n, x in (("q", q), ("k_cache", k_cache), ("v_cache", v_cache))}
    if len(dts) != 1:
        raise TypeError(f"q, k_cache, v_cache must share one dtype, got {sorted(map(str, dts))}")
    for name, x in (("q", q), ("k_cache", k_cache), ("v_cache", v_cache)):
        _checks._contiguous(name, x)
    _checks._head_dim("q", d)
    cfg = Config(d, _checks.positive_int("num_threads", default_threads(d) if num_threads is None
                                          else num_threads), np.dtype(q.dtype).itemsize)
    try:
        cfg.check()
    except ValueError as err:
        raise ValueError(f"decode: {err}") from None
    return B, H, Hkv, L, d, cfg, _checks.scale(d, scale)


def _run(q, k_cache, v_cache, num_splits, num_threads, scale):
    host = not _checks.is_device(q)
    B, H, Hkv, L, d, cfg, scale = _decode_inputs(q, k_cache, v_cache, num_threads, scale)
    T = cfg.keys_per_tile
    if num_splits is None:
        num_splits = default_num_splits(B * H, L, T)
    num_splits = _checks.positive_int("num_splits", num_splits)
    chunk = -(-(-(-L // num_splits)) // T) * T  # ceil(L / S) rounded up to whole tiles

    qd, kd, vd = (as_device(x) for x in (q, k_cache, v_cache))
    o = empty((B, H, 1, d), q.dtype, "o")
    lse = empty((B, H, 1), np.float32, "lse")
    word = np.float32 if cfg.pack == 1 else np.uint32  # fp16 caches are read as pairs, one word each
    args = (qd.reshape(B * H, d), kd.reshape(B * Hkv, L, d).view(word), vd.reshape(B * Hkv, L, d).view(word))
    tail = (np.int32(L), np.int32(chunk), np.int32(H // Hkv), np.float32(scale * LOG2E))
    if num_splits == 1:
        launch(build_kernel(cfg, True), (1, B * H), cfg.num_threads, cfg.smem_bytes(),
               *args, o.reshape(B * H, d), lse.reshape(B * H), *tail)
    else:
        o_part = empty((B * H, num_splits, d), np.float32, "o_part")
        lse_part = empty((B * H, num_splits), np.float32, "lse_part")
        launch(build_kernel(cfg, False), (num_splits, B * H), cfg.num_threads, cfg.smem_bytes(),
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
