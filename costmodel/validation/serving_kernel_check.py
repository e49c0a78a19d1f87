"""The serving loop's Triton attention kernels on the device it serves on, before the traces: each
against its float64 reference on seeded random inputs, and its time at a serving-like call (CUDA
events), the varlen kernel's beside torch's SDPA FlashAttention on the same prefill."""

from __future__ import annotations

import numpy as np

BLOCK = 16  # the serving run's KV block (serving_run.BLOCK)


def _time(torch, fn, reps: int = 20) -> float:
    for _ in range(3):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(reps):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e-3)
    return float(np.median(times))


def check_kernel(torch, dev, dtype) -> dict:
    """The paged decode kernel on this device against its float64 reference (Llama-3-8B's heads, GQA
    8:1 ... 4:1, block 16, lengths 1 to 3,000), and its time at one serving-like batch (CUDA events)."""
    from costmodel.validation.paged_attention import paged_decode, paged_decode_reference

    g = torch.Generator().manual_seed(0)
    B, H, Hkv, d, bs = 4, 32, 8, 128, BLOCK
    lens = torch.tensor([1, 100, 1000, 3001], dtype=torch.int32)
    width = -(-3001 // bs)
    pool = 4 * width + 1
    k = torch.randn(pool * bs, Hkv, d, generator=g).to(dtype)
    v = torch.randn(pool * bs, Hkv, d, generator=g).to(dtype)
    tab = torch.randperm(pool, generator=g)[: B * width].view(B, width).to(torch.int32)
    q = torch.randn(B, H, d, generator=g).to(dtype)
    want = paged_decode_reference(q, k, v, tab, lens, bs)
    got = paged_decode(q.to(dev), k.to(dev), v.to(dev), tab.to(dev), lens.to(dev), bs).cpu().double()
    out = {"max_abs_error": float((got - want).abs().max()), "shape": [B, H, Hkv, d], "lens": lens.tolist()}
    if dev == "cuda":  # B = 128 requests of 700 keys: K and V read once, 128 x 700 x 8 x 128 x 2 x 2 bytes
        B, L = 128, 700
        nb = -(-L // bs)
        k = torch.randn(B * nb * bs, Hkv, d, device=dev, dtype=dtype)
        tab = torch.randperm(B * nb, device=dev).view(B, nb).to(torch.int32)
        lens = torch.full((B,), L, dtype=torch.int32, device=dev)
        q = torch.randn(B, H, d, device=dev, dtype=dtype)
        t = _time(torch, lambda: paged_decode(q, k, k, tab, lens, bs))
        kv_bytes = 2 * B * L * Hkv * d * k.element_size()
        out["timed"] = {"batch": B, "keys": L, "median_s": t, "kv_bytes": kv_bytes, "bandwidth_Bps": kv_bytes / t}
    return out


def check_varlen_kernel(torch, dev, dtype) -> dict:
    """The varlen kernel on a mixed step of Llama-3-8B's heads (two prompts, a chunk after 1,000 cached
    tokens, three decodes, padding rows; a tenth of the lengths on the CPU) against its float64 reference; on the GPU its time on
    4 prompts of 512 tokens (causal, GQA 4) beside SDPA FlashAttention's on the same tensors."""
    from costmodel.validation.paged_attention import (paged_varlen, paged_varlen_reference, varlen_block_q,
                                                       varlen_tiles)

    g = torch.Generator().manual_seed(1)
    H, Hkv, d, bs = 32, 8, 128, BLOCK
    qlen, ctx = [300, 77, 200, 1, 1, 1], [0, 0, 1000, 5, 700, 3000]
    if dev != "cuda":  # Triton's interpreter: a tenth of the lengths
        qlen, ctx = [30, 7, 20, 1, 1, 1], [0, 0, 100, 5, 70, 300]
    tokens = sum(qlen) + 9  # 9 padding rows
    qstart = np.cumsum([0] + qlen[:-1]).tolist()
    width = [-(-(c + n) // bs) for c, n in zip(ctx, qlen)]
    pool = sum(width) + 1
    perm = torch.randperm(pool, generator=g)
    tab = torch.zeros(len(qlen), max(width), dtype=torch.int32)
    o = 0
    for i, w in enumerate(width):
        tab[i, :w] = perm[o:o + w]
        o += w
    k = torch.randn(pool * bs, Hkv, d, generator=g).to(dtype)
    v = torch.randn(pool * bs, Hkv, d, generator=g).to(dtype)
    q = torch.randn(tokens, H, d, generator=g).to(dtype)
    bq = varlen_block_q(H, Hkv)
    seq, q0 = varlen_tiles(qlen, bq, -(-tokens // bq) + len(qlen))
    i32 = lambda x: torch.tensor(x, dtype=torch.int32, device=dev)  # noqa: E731
    got = paged_varlen(q.to(dev), k.to(dev), v.to(dev), tab.to(dev), i32(seq), i32(q0), i32(qstart), i32(qlen),
                       i32(ctx), bs, bq).cpu().double()
    want = paged_varlen_reference(q, k, v, tab, qstart, qlen, ctx, bs)
    out = {"max_abs_error": float((got - want).abs().max()), "heads": [H, Hkv, d], "qlen": qlen, "ctx": ctx,
           "block_q": bq}
    if dev == "cuda":
        import torch.nn.functional as F
        from torch.nn.attention import SDPBackend, sdpa_kernel

        B, N = 4, 512
        qlen, ctx = [N] * B, [0] * B
        nb = N // bs
        kp = torch.randn(B * nb * bs, Hkv, d, device=dev, dtype=dtype)
        vp = torch.randn(B * nb * bs, Hkv, d, device=dev, dtype=dtype)
        tab = torch.arange(B * nb, device=dev, dtype=torch.int32).view(B, nb)
        qv = torch.randn(B * N, H, d, device=dev, dtype=dtype)
        seq, q0 = varlen_tiles(qlen, bq)
        args = (i32(seq), i32(q0), i32([i * N for i in range(B)]), i32(qlen), i32(ctx))
        t_var = _time(torch, lambda: paged_varlen(qv, kp, vp, tab, *args, bs, bq))
        qs = qv.view(B, N, H, d).transpose(1, 2)
        ks, vs = (x.view(B, N, Hkv, d).transpose(1, 2) for x in (kp, vp))
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            t_fa = _time(torch, lambda: F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, enable_gqa=True))
        flops = 4 * B * H * d * N * (N + 1) / 2  # QK^T and PV over the causal half (+ diagonal)
        out["timed"] = {"prompts": B, "tokens": N, "varlen_s": t_var, "sdpa_flash_s": t_fa,
                        "varlen_flops_per_s": flops / t_var, "sdpa_flash_flops_per_s": flops / t_fa}
    return out


__all__ = ["check_kernel", "check_varlen_kernel"]
