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


def paged_decode(q: torch.Tensor, k_pool: torch.Tensor, v_pool: torch.Tensor, tables: torch.Tensor,
                 lens: torch.Tensor, block_size: int, block_n: int = 64) -> torch.Tensor:
    """q (B, H, d) of one new token per request; k_pool, v_pool (slots, H_kv, d); tables (B, blocks)
    int32 / int64 block ids; lens (B,) keys per request (>= 1). Returns (B, H, d) in q's dtype."""
    B, H, d = q.shape
    Hkv = k_pool.shape[1]
    if H % Hkv:
        raise ValueError(f"heads: {H} query heads are not a multiple of {Hkv} K/V heads")
    if d & (d - 1) or d < 16:
        raise ValueError(f"head_dim: {d}; this kernel takes a power of two >= 16")
    if block_n % block_size and block_size % block_n:
        raise ValueError(f"block_n: {block_n} and block_size {block_size} must divide one another")
    G = H // Hkv
    out = torch.empty_like(q)
    _paged_decode_kernel[(B, Hkv)](
        q, k_pool, v_pool, tables, lens, out, 1.0 / math.sqrt(d),
        q.stride(0), q.stride(1), k_pool.stride(0), k_pool.stride(1), tables.stride(0), out.stride(0), out.stride(1),
        # the group's rows padded to a power of two of at least 16: tl.dot takes no smaller M
        G=G, G_PAD=max(16, triton.next_power_of_2(G)), D=d, BLOCK_SIZE=block_size, BLOCK_N=block_n)
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


__all__ = ["paged_decode", "paged_decode_reference"]
