"""Paged decode attention in Triton: what vLLM's paged-attention kernel does, for the serving loop.

One query token per request attends to that request's K/V, read straight from the paged pools by
its block table (Kwon et al. 2023 §4.1: position p lives in slot p % block_size of block
table[p // block_size]), so a decode step reads each cached K/V byte once and copies nothing: the
traffic the simulator's step prices (Σ context x H_kv x d x 2 tensors x bytes per layer).

Schedule (FlashAttention-2's forward, Dao 2023 Algorithm 1, with one query row per head): one program
per (request, K/V head) holds the G = H / H_kv query heads of the group as the rows of its Q tile
(grouped-query packing: the group's K/V tile is loaded once for G heads), walks the request's keys
in tiles of BLOCK_N positions, and keeps the running max m, sum l and output accumulator of the
online softmax (steps 8-10 of Algorithm 1); the rows are divided by l at the end (step 12). The loop
bound is the request's length read on the device, so one CUDA graph per batch size serves every
context length.

``paged_decode_reference`` is the same computation in plain torch (gather, softmax, matmul), the
value the kernel is checked against; the test runs the kernel in Triton's interpreter on the CPU.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl


@triton.jit
def _paged_decode_kernel(q_ptr, k_ptr, v_ptr, tables_ptr, lens_ptr, out_ptr, scale,
                         stride_qb, stride_qh, stride_ks, stride_kh, stride_tb, stride_ob, stride_oh,
                         G: tl.constexpr, G_PAD: tl.constexpr, D: tl.constexpr, BLOCK_SIZE: tl.constexpr,
                         BLOCK_N: tl.constexpr):
    b = tl.program_id(0)
    hkv = tl.program_id(1)
    rows = tl.arange(0, G_PAD)  # query heads hkv*G + row of the group
    dims = tl.arange(0, D)
    row_ok = rows < G
    q = tl.load(q_ptr + b * stride_qb + (hkv * G + rows)[:, None] * stride_qh + dims[None, :],
                mask=row_ok[:, None], other=0.0)  # (G_PAD, D)
    length = tl.load(lens_ptr + b)
    m = tl.full((G_PAD,), float("-inf"), tl.float32)
    l = tl.zeros((G_PAD,), tl.float32)
    acc = tl.zeros((G_PAD, D), tl.float32)
    for start in range(0, length, BLOCK_N):
        pos = start + tl.arange(0, BLOCK_N)  # (BLOCK_N,) key positions of this tile
        ok = pos < length
        block = tl.load(tables_ptr + b * stride_tb + pos // BLOCK_SIZE, mask=ok, other=0)
        slot = block * BLOCK_SIZE + pos % BLOCK_SIZE  # the pool slot of each position
        kv_off = slot[:, None] * stride_ks + hkv * stride_kh + dims[None, :]
        k = tl.load(k_ptr + kv_off, mask=ok[:, None], other=0.0)  # (BLOCK_N, D)
        v = tl.load(v_ptr + kv_off, mask=ok[:, None], other=0.0)
        s = tl.dot(q, tl.trans(k)) * scale  # (G_PAD, BLOCK_N), fp32
        s = tl.where(ok[None, :], s, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, axis=1))  # Algorithm 1 step 9: running max
        alpha = tl.exp(m - m_new)
        p = tl.exp(s - m_new[:, None])
        l = l * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)  # step 10: rescale, accumulate P V
        m = m_new
    out = acc / l[:, None]  # step 12
    tl.store(out_ptr + b * stride_ob + (hkv * G + rows)[:, None] * stride_oh + dims[None, :],
             out.to(out_ptr.dtype.element_ty), mask=row_ok[:, None])


def _check_shapes(H: int, Hkv: int, d: int, block_size: int, block_n: int) -> int:
    """What both kernels take; returns the group size H / H_kv."""
    if H % Hkv:
        raise ValueError(f"heads: {H} query heads are not a multiple of {Hkv} K/V heads")
    if d & (d - 1) or d < 16:
        raise ValueError(f"head_dim: {d}; this kernel takes a power of two >= 16")
    if block_n % block_size and block_size % block_n:
        raise ValueError(f"block_n: {block_n} and block_size {block_size} must divide one another")
    return H // Hkv


def paged_decode(q: torch.Tensor, k_pool: torch.Tensor, v_pool: torch.Tensor, tables: torch.Tensor,
                 lens: torch.Tensor, block_size: int, block_n: int = 64) -> torch.Tensor:
    """q (B, H, d) of one new token per request; k_pool, v_pool (slots, H_kv, d); tables (B, blocks)
    int32 / int64 block ids; lens (B,) keys per request (>= 1). Returns (B, H, d) in q's dtype."""
    B, H, d = q.shape
    Hkv = k_pool.shape[1]
    G = _check_shapes(H, Hkv, d, block_size, block_n)
    out = torch.empty_like(q)
    _paged_decode_kernel[(B, Hkv)](
        q, k_pool, v_pool, tables, lens, out, 1.0 / math.sqrt(d),
        q.stride(0), q.stride(1), k_pool.stride(0), k_pool.stride(1), tables.stride(0), out.stride(0), out.stride(1),
        # the group's rows padded to a power of two of at least 16: tl.dot takes no smaller M
        G=G, G_PAD=max(16, triton.next_power_of_2(G)), D=d, BLOCK_SIZE=block_size, BLOCK_N=block_n)
    return out


@triton.jit
def _paged_varlen_kernel(q_ptr, k_ptr, v_ptr, tables_ptr, tile_seq_ptr, tile_q0_ptr, qstart_ptr, qlen_ptr, ctx_ptr,
                         out_ptr, scale, stride_qt, stride_qh, stride_ks, stride_kh, stride_tb, stride_ot, stride_oh,
                         G: tl.constexpr, G_PAD: tl.constexpr, BLOCK_Q: tl.constexpr, D: tl.constexpr,
                         BLOCK_SIZE: tl.constexpr, BLOCK_N: tl.constexpr):
    tile = tl.program_id(0)
    hkv = tl.program_id(1)
    s = tl.load(tile_seq_ptr + tile)
    if s >= 0:  # a padded tile (the grid is fixed for a CUDA graph) does nothing
        q0 = tl.load(tile_q0_ptr + tile)  # the tile's first query within its request's new tokens
        qs, qn, ctx = tl.load(qstart_ptr + s), tl.load(qlen_ptr + s), tl.load(ctx_ptr + s)
        rows = tl.arange(0, BLOCK_Q * G_PAD)
        qi = q0 + rows // G_PAD  # the row's query (new token) and head of the group
        head = rows % G_PAD
        ok_row = (qi < qn) & (head < G)
        dims = tl.arange(0, D)
        q = tl.load(q_ptr + (qs + qi)[:, None] * stride_qt + (hkv * G + head)[:, None] * stride_qh + dims[None, :],
                    mask=ok_row[:, None], other=0.0)  # (BLOCK_M, D)
        see = ctx + qi  # causal from the bottom right: query qi (position ctx + qi) sees keys <= ctx + qi
        n_keys = ctx + tl.minimum(q0 + BLOCK_Q, qn)  # keys the tile's last query sees, + 1
        m = tl.full((BLOCK_Q * G_PAD,), -1.0e30, tl.float32)  # finite: rows that see no key stay NaN-free
        l = tl.zeros((BLOCK_Q * G_PAD,), tl.float32)
        acc = tl.zeros((BLOCK_Q * G_PAD, D), tl.float32)
        for start in range(0, n_keys, BLOCK_N):
            pos = start + tl.arange(0, BLOCK_N)
            ok = pos < n_keys
            block = tl.load(tables_ptr + s * stride_tb + pos // BLOCK_SIZE, mask=ok, other=0)
            kv_off = (block * BLOCK_SIZE + pos % BLOCK_SIZE)[:, None] * stride_ks + hkv * stride_kh + dims[None, :]
            k = tl.load(k_ptr + kv_off, mask=ok[:, None], other=0.0)
            v = tl.load(v_ptr + kv_off, mask=ok[:, None], other=0.0)
            sc = tl.dot(q, tl.trans(k)) * scale
            sc = tl.where(ok[None, :] & (pos[None, :] <= see[:, None]), sc, float("-inf"))
            m_new = tl.maximum(m, tl.max(sc, axis=1))  # Algorithm 1 steps 9-10, as in the decode kernel
            alpha = tl.exp(m - m_new)
            p = tl.exp(sc - m_new[:, None])
            l = l * alpha + tl.sum(p, axis=1)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
            m = m_new
        out = acc / l[:, None]
        tl.store(out_ptr + (qs + qi)[:, None] * stride_ot + (hkv * G + head)[:, None] * stride_oh + dims[None, :],
                 out.to(out_ptr.dtype.element_ty), mask=ok_row[:, None])


def varlen_block_q(heads: int, kv_heads: int, rows: int = 64) -> int:
    """Query tokens per tile of ``paged_varlen``: ``rows`` Q-tile rows (tokens x the group's heads,
    padded to a power of two), as vLLM's unified attention sets BLOCK_Q = BLOCK_M / queries per K/V head."""
    return max(1, rows // max(1, triton.next_power_of_2(heads // kv_heads)))


def varlen_tiles(qlen, block_q: int, max_tiles: int | None = None):
    """The (request, first query) of every query tile of a step whose requests bring ``qlen`` new
    tokens each, padded with (-1, 0) to ``max_tiles``: host-side, so the kernel needs no search."""
    seq, q0 = [], []
    for i, n in enumerate(qlen):
        for j in range(0, int(n), block_q):
            seq.append(i)
            q0.append(j)
    if max_tiles is not None:
        if len(seq) > max_tiles:
            raise ValueError(f"tiles: {len(seq)} query tiles exceed the grid's {max_tiles}")
        pad = max_tiles - len(seq)
        seq, q0 = seq + [-1] * pad, q0 + [0] * pad
    return seq, q0


def paged_varlen(q, k_pool, v_pool, tables, tile_seq, tile_q0, qstart, qlen, ctx, block_size: int, block_q: int,
                 block_n: int = 32, out=None) -> torch.Tensor:
    """Attention of every new token of a step over its own request's pages: q (T, H, d), request i's
    ``qlen[i]`` tokens from row ``qstart[i]``, after ``ctx[i]`` cached ones (its keys: ctx + qlen,
    causal from the bottom right; its K/V already written to the pools); tables (R, blocks); the tile
    map from ``varlen_tiles``. A decode is a request of one new token. Rows no tile covers are left
    as they are in ``out`` (q's padding). Returns (T, H, d). ``block_n`` keys a tile: a tile choice,
    not tuned (32 x 128 bf16 K and V tiles beside a 64-row Q tile keep the registers of four warps)."""
    T, H, d = q.shape
    Hkv = k_pool.shape[1]
    G = _check_shapes(H, Hkv, d, block_size, block_n)
    out = torch.zeros_like(q) if out is None else out
    _paged_varlen_kernel[(tile_seq.shape[0], Hkv)](
        q, k_pool, v_pool, tables, tile_seq, tile_q0, qstart, qlen, ctx, out, 1.0 / math.sqrt(d),
        q.stride(0), q.stride(1), k_pool.stride(0), k_pool.stride(1), tables.stride(0), out.stride(0), out.stride(1),
        G=G, G_PAD=triton.next_power_of_2(G), BLOCK_Q=block_q, D=d, BLOCK_SIZE=block_size, BLOCK_N=block_n)
    return out


def paged_varlen_reference(q, k_pool, v_pool, tables, qstart, qlen, ctx, block_size: int) -> torch.Tensor:
    """``paged_varlen`` by gather and masked softmax, request by request, in float64 (uncovered rows 0)."""
    T, H, d = q.shape
    G = H // k_pool.shape[1]
    out = torch.zeros(q.shape, dtype=torch.float64)
    for i in range(len(qlen)):
        n, c, s = int(qlen[i]), int(ctx[i]), int(qstart[i])
        p = torch.arange(c + n)
        slots = tables[i, p // block_size].long() * block_size + p % block_size
        k = k_pool[slots].double().repeat_interleave(G, dim=1)  # (c + n, H, d)
        v = v_pool[slots].double().repeat_interleave(G, dim=1)
        sc = torch.einsum("qhd,khd->hqk", q[s:s + n].double(), k) / math.sqrt(d)
        sc = sc.masked_fill(p[None, None, :] > (c + torch.arange(n))[None, :, None], float("-inf"))
        out[s:s + n] = torch.einsum("hqk,khd->qhd", torch.softmax(sc, dim=-1), v)
    return out


def paged_decode_reference(q, k_pool, v_pool, tables, lens, block_size: int) -> torch.Tensor:
    """The same attention by gather and softmax, request by request, in float64."""
    B, H, d = q.shape
    G = H // k_pool.shape[1]
    out = torch.empty(q.shape, dtype=torch.float64)
    for b in range(B):
        n = int(lens[b])
        p = torch.arange(n)
        slots = tables[b, p // block_size].long() * block_size + p % block_size
        k = k_pool[slots].double().repeat_interleave(G, dim=1)  # (n, H, d)
        v = v_pool[slots].double().repeat_interleave(G, dim=1)
        s = torch.einsum("hd,nhd->hn", q[b].double(), k) / math.sqrt(d)
        out[b] = torch.einsum("hn,nhd->hd", torch.softmax(s, dim=-1), v)
    return out


__all__ = ["paged_decode", "paged_decode_reference", "paged_varlen", "paged_varlen_reference", "varlen_block_q",
           "varlen_tiles"]
