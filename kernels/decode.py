"""Decode attention: one new query token per sequence against a KV cache of length L.

q: (batch, heads, 1, d), the forward's layout with N = 1; k_cache, v_cache:
(batch, kv_heads, L, d) with heads a multiple of kv_heads (GQA; MQA is kv_heads = 1).
Returns (o (batch, heads, 1, d) in q's dtype, lse (batch, heads, 1) float32).

Two schedules, one kernel body (the callers, which check, allocate and launch, are in
``decode_step``):

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

Either schedule serves R = ``heads_per_block`` query heads a block, all of one kv head
(grid (S, B*H / R)): R = 1 by default; R = the GQA group (H / Hkv) reads each K/V row
once for the whole group (from HBM, and once through L2), where R = 1 has each of the
group's query heads read it (the re-reads come from L2 when they fit).

Inside a block of ``num_threads`` threads (``DEFAULT_THREADS``, 256, by default; whole warps):

    words: the cache is read in 4-byte words, one fp32 element or two fp16 ones
        (pk = 1 or 2 elements a word; fp16 pairs are unpacked in registers).
    key groups: ``lanes`` neighbouring lanes, 8 (4 groups per warp), or more when R d
        passes 256 (16 or 32: a lane holds at most 32 values of q, over the R heads),
        G = num_threads / lanes of them. Lane x of a group owns words x + lanes j
        (j < d / (lanes pk)) of every row its group reads, i.e. head dimensions
        pk (x + lanes j) + e (e < pk), of q, K, V and of its output accumulators: one
        warp load (one j) reads 32 contiguous bytes (8 lanes), a whole sector, of each
        of 4 consecutive key rows.
    tiles: T = G * n keys, n = max(1, 32 / (R w)) keys per group (w = d / (lanes pk)
        words a lane reads of a row), so that a lane holds 32 / R words of K and as
        many of V per tile, in registers (R = 1, fp32: T = 64 at d = 128, 128 at d = 64,
        256 at d = 32 with 256 threads; fp16: twice that). In the tile at key c0, group
        g takes keys c0 + g + G c (c < n).

    load q (scaled by scale * log2 e) and K of the first tile into registers
    for each tile (no shared memory, no barrier):
        1. issue the loads of V of this tile             (in flight during 2 and 3)
        2. scores: each lane's partial dot products over its d / lanes dimensions,
           for each of the R query heads, summed over the group's lanes by butterfly
           shuffles (xor 1, 2, 4, ...), so every lane of the group holds its R n
           scores; keys at or past the end of the block's range score -inf
        3. issue the loads of K of the next tile          (in flight during 4 and
           the next tile's 1 and 2)
        4. online softmax per group and query head: m_new = max(m, scores), alpha = 2^(m - m_new),
           p = 2^(s - m_new), l = alpha l + sum p, acc = alpha acc + sum p v.
           The 8 lanes of a group each evaluate the group's exp2s (8 per key): the
           special-function unit is otherwise idle next to the 2 d / 8 FMAs per key
           and lane, and handing one lane's p to the others would cost shuffles.
    merge the G groups once per query head, through shared memory (2 barriers): group g writes
        m_g, l_g and o_g = acc; with M = max_g m_g and w_g = 2^(m_g - M),
        o = sum_g w_g o_g / sum_g w_g l_g and lse = M ln 2 + ln sum_g w_g l_g.

    shared memory (float32 words), per query head: m_g, l_g, w_g (3 G), then o_g at a
        pitch of d + 8 (G (d + 8)): 17.4 KB at d = 128 with 256 threads, 9.6 KB at d = 64
        (R = 1); 35.6 and 38.4 KB with R = 4.
        Registers, not shared memory, bound the blocks per multiprocessor: the
        kernel is compiled for at most 128 a thread, so two blocks of 256 threads
        (16 warps) share one. sm_90 builds use 102 to 128, without spills except
        8 to 16 bytes with fp16 at d = 32 and 64 (ptxas 13.5; none on the H200's 13.0).

HBM traffic per query head: the kv head's K and V once (with R = 1 the query heads of a
group each read it: GQA re-reads come from L2 when they fit), q once, o and lse once; plus,
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

from ._cuda import LN2, NEG_INF, SIMULATOR, SMEM_ALIGN, U, kernel_jit, sm_count
from ._launch import DECODE
from ._tiling import device_fn

# The launch numbers the simulator models too, stated once (hardware_specs/kernel_launch.yaml,
# each with its reason; read here as data by kernels/_launch.py).
LANES = DECODE["lanes_per_key"]          # lanes per key (at least): one 32-byte sector of a key row per warp load
LANE_WORDS = DECODE["lane_words"]        # 4-byte words of K (and of V) a lane holds per tile, over the R heads
MAX_REGISTERS = DECODE["max_registers"]  # registers a thread: two blocks of the default threads fit an SM
DEFAULT_THREADS = DECODE["threads"]
# The kernel's own (not in the launch file): the simulator models one query head a block, R = 1.
QUERY_VALUES = 32  # values of q (and of the accumulator) a lane holds, over the query heads of a block
FULL_WARP = U(0xFFFFFFFF)


@dataclass(frozen=True)
class DecodeTiles:
    """One decode launch's geometry: the key groups, the words a lane loads, the tile of
    keys and the shared-memory layout (module docstring), from the head size, the
    threads, the cache's element size and the query heads a block serves."""

    head_dim: int
    num_threads: int
    itemsize: int = 4  # bytes per cache element: 4 (fp32) or 2 (fp16, loaded as pairs in 4-byte words)
    rows: int = 1      # R: query heads per block, all of one kv head (1, or the GQA group: K/V read once)

    @property
    def pack(self) -> int:  # cache elements per 4-byte word
        return 4 // self.itemsize

    @property
    def lanes(self) -> int:  # lanes per key group: more when R query heads share the block
        return min(32, max(LANES, self.head_dim * self.rows // QUERY_VALUES))

    @property
    def groups(self) -> int:  # G: key groups of `lanes` lanes
        return self.num_threads // self.lanes

    @property
    def words_per_lane(self) -> int:  # 4-byte words of one key row a lane loads
        return self.head_dim // (self.lanes * self.pack)

    @property
    def dims_per_lane(self) -> int:  # head dimensions of q, K, V and o a lane holds
        return self.words_per_lane * self.pack

    @property
    def keys_per_group(self) -> int:  # n: keys a group scores per tile
        return max(1, LANE_WORDS // self.rows // self.words_per_lane)

    @property
    def keys_per_tile(self) -> int:  # T
        return self.groups * self.keys_per_group

    def smem(self) -> dict:
        ng, d = self.groups, self.head_dim
        op = d + 8  # pitch of o_g: with fp32, the 4 groups of a warp write banks 8 g + x
        head = 3 * ng + ng * op  # one query head's m_g, l_g, w_g, o_g; head h at h * head
        lay = dict(op=op, head=head, m_off=0, l_off=ng, w_off=2 * ng, o_off=3 * ng)
        lay["r_off"] = words = self.rows * head
        if SIMULATOR:  # the stand-in for the shuffles (see the module docstring)
            words += self.num_threads * self.rows * self.keys_per_group
        lay["words"] = words
        return lay

    def smem_bytes(self) -> int:
        return 4 * self.smem()["words"]

    def check(self) -> None:
        t = self.num_threads
        if t % 32 or not 32 <= t <= 1024:
            raise ValueError(f"num_threads={t} must be a multiple of 32 from 32 to 1024 "
                             "(whole warps: the group sums are warp shuffles)")
        if self.rows < 1:
            raise ValueError(f"heads_per_block={self.rows} must be at least 1")
        if self.itemsize not in (2, 4) or self.head_dim % (self.lanes * self.pack):
            raise ValueError(f"head_dim={self.head_dim} with {self.itemsize}-byte elements must be a "
                             f"multiple of {self.lanes * self.pack}")
        if self.rows * self.dims_per_lane > QUERY_VALUES:
            raise ValueError(f"heads_per_block={self.rows} at head_dim={self.head_dim} needs "
                             f"{self.rows * self.dims_per_lane} query values a lane; at most {QUERY_VALUES} "
                             "fit the registers (serve fewer query heads a block)")


def default_threads(head_dim: int) -> int:
    return DEFAULT_THREADS


def _group_sum(cfg: DecodeTiles):
    """Device function ``group_sum(sm, t, s)``: s[i] summed over the lanes of thread t's
    key group, in place, for i < R n; every lane gets the sums. All threads of the block
    must call it (the simulator's version has barriers)."""
    n, lanes = cfg.rows * cfg.keys_per_group, cfg.lanes
    if not SIMULATOR:
        steps = lanes.bit_length() - 1

        @device_fn
        def group_sum(sm, t, s):
            for c in range(n):
                val = s[c]
                for i in range(steps):  # butterfly: lanes x and x ^ 2^i swap partial sums
                    val += cuda.shfl_xor_sync(FULL_WARP, val, U(1) << U(i))
                s[c] = val

        return group_sum

    R_OFF, N, UL = U(cfg.smem()["r_off"]), U(n), U(lanes)

    @device_fn
    def group_sum(sm, t, s):
        for c in range(n):
            sm[R_OFF + t * N + U(c)] = s[c]
        cuda.syncthreads()
        first = (t - t % UL) * N
        for c in range(n):
            tot = float32(0)
            for i in range(lanes):
                tot += sm[R_OFF + first + U(i) * N + U(c)]
            s[c] = tot
        cuda.syncthreads()

    return group_sum


@functools.lru_cache(maxsize=None)
def build_kernel(cfg: DecodeTiles, final: bool):
    """``final``: write o and lse (one split); else write the split's partials."""
    d, NT, PK, R = cfg.head_dim, cfg.num_threads, cfg.pack, cfg.rows
    WG, NK, NG, T = cfg.words_per_lane, cfg.keys_per_group, cfg.groups, cfg.keys_per_tile
    DG = cfg.dims_per_lane
    QV, SV = R * DG, R * NK  # values of q (and of acc), scores, per lane
    KW = NK * WG  # words of K (and of V) per lane per tile
    WORD = float32 if PK == 1 else uint32  # how the cache is loaded: fp16 pairs as one word
    ELEM = np.float32 if PK == 1 else np.float16
    lay = cfg.smem()
    UL, UNG, D, OP, UPK, UR = U(cfg.lanes), U(NG), U(d), U(lay["op"]), U(PK), U(R)
    HEAD = U(lay["head"])
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
        q0 = U(cuda.blockIdx.y) * UR  # this block's query heads q0 + h, h < R: one kv head's
        kvh = q0 // U(group)
        start = split_id * chunk
        stop = min(length, start + chunk)
        end = U(stop)

        # Lane x holds word x + lanes j of a row, i.e. head dimensions PK (x + lanes j) + e, e < PK;
        # value h DG + j PK + e of qf and acc (query head h), element (c WG + j) PK + e of kh and vh.
        qf = cuda.local.array(QV, float32)   # q * scale * log2 e
        acc = cuda.local.array(QV, float32)  # o, unnormalised
        m = cuda.local.array(R, float32)         # running max of the group's scores, per query head
        l = cuda.local.array(R, float32)         # running sum of 2^(s - m)
        kb = cuda.local.array(KW, WORD)      # K words of the group's keys c at c * WG + j
        vb = cuda.local.array(KW, WORD)      # V likewise
        kh = kb.view(ELEM)                   # the same registers, as cache elements
        vh = vb.view(ELEM)
        s = cuda.local.array(SV, float32)  # the group's scores of this tile, s[h NK + c]
        for h in range(R):
            for j in range(WG):
                for e in range(PK):
                    qf[h * DG + j * PK + e] = float32(q[q0 + U(h), UPK * (x + UL * U(j)) + U(e)]) * q_scale
                    acc[h * DG + j * PK + e] = float32(0)
            m[h] = NEG_INF
            l[h] = float32(0)
        for c in range(NK):  # K of the first tile
            key = U(start) + U(c * NG) + g
            for j in range(WG):
                kb[c * WG + j] = WORD(0)
            if key < end:
                for j in range(WG):
                    kb[c * WG + j] = k[kvh, key, x + UL * U(j)]

        for c0 in range(start, stop, T):
            # 1. V of this tile, in flight while the scores are computed.
            for c in range(NK):
                key = U(c0) + U(c * NG) + g
                for j in range(WG):
                    vb[c * WG + j] = WORD(0)
                if key < end:
                    for j in range(WG):
                        vb[c * WG + j] = v[kvh, key, x + UL * U(j)]
            # 2. Scores (base 2) of every query head: partial dot products, summed over the group's lanes.
            for h in range(R):
                for c in range(NK):
                    dot = float32(0)
                    for i in range(DG):
                        dot += qf[h * DG + i] * float32(kh[c * DG + i])
                    s[h * NK + c] = dot
            group_sum(sm, t, s)
            # 3. K of the next tile, in flight during the softmax and the next V loads.
            for c in range(NK):
                key = U(c0 + T) + U(c * NG) + g
                for j in range(WG):
                    kb[c * WG + j] = WORD(0)
                if key < end:
                    for j in range(WG):
                        kb[c * WG + j] = k[kvh, key, x + UL * U(j)]
            # 4. Online softmax over the group's keys, per query head; acc = alpha acc + sum p v.
            for h in range(R):
                m_new = m[h]
                for c in range(NK):
                    if U(c0) + U(c * NG) + g >= end:
                        s[h * NK + c] = NEG_INF
                    m_new = max(m_new, s[h * NK + c])
                if m_new > NEG_INF:  # the group has seen a key (else alpha would be NaN)
                    alpha = math.exp2(m[h] - m_new)
                    l[h] *= alpha
                    for i in range(DG):
                        acc[h * DG + i] *= alpha
                    for c in range(NK):
                        p = math.exp2(s[h * NK + c] - m_new)
                        l[h] += p
                        for i in range(DG):
                            acc[h * DG + i] += p * float32(vh[c * DG + i])
                    m[h] = m_new

        # Merge the groups, per query head h: w_g = 2^(m_g - M), o = sum w_g o_g / sum w_g l_g.
        for h in range(R):
            base = U(h) * HEAD
            for j in range(WG):
                for e in range(PK):
                    sm[base + O_OFF + g * OP + UPK * (x + UL * U(j)) + U(e)] = acc[h * DG + j * PK + e]
            if x == U(0):
                sm[base + M_OFF + g] = m[h]
                sm[base + L_OFF + g] = l[h]
        cuda.syncthreads()
        if t < UR * UNG:  # thread t weighs group t % G of query head t // G
            base = (t // UNG) * HEAD
            m_all = NEG_INF
            for i in range(NG):
                m_all = max(m_all, sm[base + M_OFF + U(i)])
            w = float32(0)  # a group without keys (m_g = -inf) weighs nothing
            if sm[base + M_OFF + t % UNG] > NEG_INF:
                w = math.exp2(sm[base + M_OFF + t % UNG] - m_all)
            sm[base + W_OFF + t % UNG] = w
        cuda.syncthreads()
        for h in range(R):
            base = U(h) * HEAD
            row = q0 + U(h)
            m_all = NEG_INF
            for i in range(NG):
                m_all = max(m_all, sm[base + M_OFF + U(i)])
            l_all = float32(0)
            for i in range(NG):
                l_all += sm[base + W_OFF + U(i)] * sm[base + L_OFF + U(i)]
            for r in range(COL_STEPS):
                col = t + U(r * NT)
                if col < D:
                    o_sum = float32(0)
                    for i in range(NG):
                        o_sum += sm[base + W_OFF + U(i)] * sm[base + O_OFF + U(i) * OP + col]
                    if FINAL:
                        o[row, col] = o_sum / l_all
                        if col == U(0):
                            lse[row] = m_all * LN2 + math.log(l_all)
                    else:
                        sid = U(split_id)
                        if l_all > float32(0):
                            o[row, sid, col] = o_sum / l_all
                            if col == U(0):
                                lse[row, sid] = m_all * LN2 + math.log(l_all)
                        else:  # an empty split
                            o[row, sid, col] = float32(0)
                            if col == U(0):
                                lse[row, sid] = NEG_INF

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
