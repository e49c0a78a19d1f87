"""The kernels of FlashAttention-1, FlashAttention-2 and Flash-Decoding, counted by either path.

For one AttentionConfig this picks tiles and grids, sizes each kernel's shared memory
and occupancy, counts it with the closed form (closed.py, banded masks) or the
enumeration (walk.py; any tile mask), and turns the moments into FLOPs and smem
bytes (counting.py). The small helper kernels of the backward pass and Flash-Decoding's
reduction touch every tile once (no reuse to model: DRAM = global bytes) and are
counted directly, the same way in both paths, their loads coalesced (the backward's
preprocess reads each row with one warp since 2026-12-02; with one row a thread it moved
6.6x its bytes on the H200).
"""

from __future__ import annotations

import math

import numpy as np

from hardware_specs.dtypes import dtype_bytes
from hardware_specs.kernel_launch import decode_launch
from simulators import closed, walk as enum, walk_backward
from simulators import counting as F
from simulators.config import flash_block_sizes
from simulators.l2 import blocks_per_sm
from simulators.mask import band_of, band_tile_classes
from simulators.problem import STAT_BYTES, FlashProblem
from simulators.results import KernelCount

SCHEDULES = {
    "flash2_fwd": "grid (T_r, B*H): blockIdx.x = query tile i (fastest), blockIdx.y = batch*head; "
                  "Q_i once, loop j over non-empty K/V tiles (K_j, V_j), O_i and lse_i written once",
    "flash1_fwd": "grid (B*H,): one block per batch*head; loop j over K/V tiles (outer), i over query tiles "
                  "(inner); each visit loads Q_i and the running O_i, l_i, m_i and stores them",
    "flash1_bwd": "grid (B*H,): one block per batch*head; dQ zeroed in HBM; loop j (K_j, V_j), i (Q_i, O_i, "
                  "dO_i, dQ_i, l_i, m_i in; dQ_i out); dK_j, dV_j out per j",
    "flash2_bwd": "grid (T_c, B*H): blockIdx.x = key tile j (fastest); K_j, V_j once, loop i over non-empty "
                  "query tiles (Q_i, dO_i, lse_i, D_i in; dQ_i atomic add, fp32); dK_j, dV_j out once",
    "decode": "grid (S, B*H): blockIdx.x = split s (fastest); q once, the K/V tiles of split s "
              "(ceil(T_c/S) tiles), O and lse (S = 1) or fp32 partial O_s, lse_s out",
}


def staged_bytes(cfg, sch) -> int:
    """Bytes of an element staged in shared memory: ``smem_dtype``, else the input dtype on tensor
    cores and fp32 on SIMT lanes (our Numba kernels convert on load)."""
    return int(dtype_bytes(sch.smem_dtype or (cfg.dtype if sch.tensor_cores else "fp32")))


def tile_footprint_bytes(kernel: str, br: int, bc: int, d: int, s: int, fa1_io: str = "kernel") -> int:
    """Shared memory one block of ``kernel`` holds: its staged tiles (s bytes an element) and row stats."""
    if kernel == "flash2_fwd":
        return (br * d + 2 * bc * d) * s
    if kernel == "flash1_fwd":
        return (2 * br * d + 2 * bc * d) * s + 2 * br * STAT_BYTES if fa1_io == "paper" else (br * d + 2 * bc * d) * s
    if kernel == "flash2_bwd":
        return (2 * bc * d + 2 * br * d) * s + 2 * br * STAT_BYTES
    if kernel == "flash1_bwd":
        return (2 * bc * d + 4 * br * d) * s + 2 * br * STAT_BYTES
    raise ValueError(f"kernel: {kernel!r} has no tile footprint")


def resolve_blocks(spec, cfg, sch, s_bytes: int, kernels: tuple[str, ...] = ()) -> tuple[int, int]:
    """(B_r, B_c): as given, else the FlashAttention rule with M = sram_bytes (default: the
    spec's shared memory per block) in staged elements.

    The rule sizes four tiles (Dao et al. 2022, Alg. 1 line 1); a backward kernel stages more
    (Alg. 4: K, V, Q, O, dO, dQ tiles), so defaults are halved until every one of ``kernels``
    fits one block's shared memory, as a real launch must. Tiles the caller gives are kept as given.
    """
    if sch.block_r is not None and sch.block_c is not None:
        return sch.block_r, sch.block_c
    m_bytes = sch.sram_bytes or spec.smem_per_block_max_bytes
    br, bc = flash_block_sizes(cfg.head_dim, m_bytes // s_bytes)
    br, bc = sch.block_r or br, sch.block_c or bc
    limit = min(m_bytes, spec.smem_per_block_max_bytes)
    while any(tile_footprint_bytes(k, br, bc, cfg.head_dim, s_bytes, sch.fa1_io) > limit for k in kernels):
        if sch.block_r is None and br > 1 and (br >= bc or sch.block_c is not None):
            br = max(1, br // 2)
        elif sch.block_c is None and bc > 1:
            bc = max(1, bc // 2)
        else:
            break
    return br, bc


# kernels/decode.py's schedule: threads in key groups of lanes, each lane holding words of K
# (and of V) per tile, under a register cap; the numbers are the kernel's own, read from
# hardware_specs/kernel_launch.yaml (256 threads, 8 lanes, 32 words, 128 registers).
_DECODE = decode_launch()
DECODE_THREADS, DECODE_LANES = _DECODE.threads, _DECODE.lanes_per_key
DECODE_LANE_WORDS, DECODE_REGS = _DECODE.lane_words, _DECODE.max_registers


def decode_keys_per_tile(d: int, element_bytes: float, threads: int) -> int:
    """T = G n: G = threads / 8 key groups, n = max(1, 32 / words a lane reads of one key row),
    a row being d elements packed 4 // element_bytes to a 4-byte word (kernels/decode.py)."""
    pack = max(1, int(4 // element_bytes))
    words_per_lane = d / (DECODE_LANES * pack)
    if words_per_lane < 1 or words_per_lane != int(words_per_lane):
        return max(128, d)  # a head_dim the kernel does not take: the old 128-key tile
    return threads // DECODE_LANES * max(1, DECODE_LANE_WORDS // int(words_per_lane))


def default_splits(spec, batch_heads: int, t_c: int) -> int:
    """kernels/decode.py: enough blocks for two waves of one block per SM, at most one split per tile."""
    if batch_heads >= 2 * spec.sm_count:
        return 1
    return max(1, min(math.ceil(2 * spec.sm_count / batch_heads), t_c))


def _count(name, grid, kind, m, p, sch, footprint, threads, bpsm, fa1_io="kernel") -> KernelCount:
    fl = F.tile_flops(kind, m, p.d, p.dropout, fa1_io)
    smem = float(m[F.STAGED]) + p.s * F.smem_read_elements(kind, m, p.d, sch.register_tile)
    schedule = SCHEDULES[name]
    if sch.grid_order == "heads-fastest" and name in ("flash2_fwd", "flash2_bwd", "decode"):
        schedule = "launched heads-fastest (blockIdx.x = batch*head, blockIdx.y = the tile): " + schedule
    return KernelCount(name=name, grid=grid, schedule=schedule,
                       matmul_flops=fl["matmul"], other_flops=fl["other"], exp_ops=fl["exp"],
                       global_read_bytes=int(m[F.G_READ]), global_write_bytes=int(m[F.G_WRITE]),
                       hbm_read_bytes=int(m[F.H_READ]), hbm_write_bytes=int(m[F.H_WRITE]), smem_bytes=smem,
                       smem_per_block_bytes=footprint, threads_per_block=threads, blocks_per_sm=bpsm)


def _own_kernel(spec, sch, name, grid, schedule, read, write, other=0.0, exp=0.0, threads=256) -> KernelCount:
    bpsm = blocks_per_sm(spec, 0, threads, sch.regs_per_thread, sch.max_blocks_per_sm, name)
    return KernelCount(name=name, grid=grid, schedule=schedule, matmul_flops=0.0, other_flops=float(other),
                       exp_ops=float(exp), global_read_bytes=int(read), global_write_bytes=int(write),
                       hbm_read_bytes=int(read), hbm_write_bytes=int(write), smem_bytes=0.0,
                       smem_per_block_bytes=0, threads_per_block=threads, blocks_per_sm=bpsm)


def _occupancy(spec, sch, footprint, threads, what):
    footprint = sch.smem_per_block_bytes or footprint
    return footprint, blocks_per_sm(spec, footprint, threads, sch.regs_per_thread, sch.max_blocks_per_sm, what)


# What one simulation may cost before it is refused up front (measured on 2 cores: the closed form
# holds ~3 KB per row or column tile, 2^18 of them ~0.8 GB and ~7 s; the walk visits ~8 M tiles/s).
MAX_CLOSED_TILES = 2**18  # row tiles T_r and column tiles T_c, each
MAX_WALKED_TILES = 2**27  # T_r x T_c x mask classes walked by path="enumerate"


def _within_budget(p: FlashProblem, path: str, classes) -> None:
    """Refuse, before any allocation, a tiling too fine for the stated budget, naming the knobs."""
    if max(p.t_r, p.t_c) > MAX_CLOSED_TILES:
        raise ValueError(f"block-r/block-c: B_r={p.br}, B_c={p.bc} cut N={p.n_q}, L={p.n_k} into {p.t_r} x {p.t_c} "
                         f"tiles; at most {MAX_CLOSED_TILES} row or column tiles are simulated: larger tiles or a "
                         "shorter sequence are accepted")
    walked = p.t_r * p.t_c * (1 if classes is None else int(np.shape(classes)[0]))
    if path == "enumerate" and walked > MAX_WALKED_TILES:
        raise ValueError(f"path: enumerate would walk {walked:,} tiles (B_r={p.br}, B_c={p.bc}); at most "
                         f"{MAX_WALKED_TILES:,} are walked: path='closed', larger tiles or a shorter sequence are "
                         "accepted")


def flash_kernels(spec, cfg, sch, impl: str, pass_: str, path: str, classes: np.ndarray | None = None
                  ) -> tuple[list[KernelCount], dict]:
    """Kernels of impl "flash1", "flash2" or "flash-decoding" for ``pass_``; ``classes`` (H_m, T_r, T_c)
    replaces the band of ``cfg`` (sparse patterns; enumeration only)."""
    e, a = cfg.element_bytes, int(dtype_bytes(sch.accum_dtype))
    s = staged_bytes(cfg, sch)
    d, bh, g = cfg.head_dim, cfg.batch_heads, cfg.group
    capacity = int(spec.l2_bytes * sch.l2_fraction)
    band = band_of(cfg)
    if impl == "flash-decoding":
        br, bc = cfg.seq_len, sch.block_c or decode_keys_per_tile(d, e, sch.threads_per_block or DECODE_THREADS)
    else:
        kernels = ([f"{impl}_fwd"] if pass_ in ("fwd", "fwd+bwd") else []) + (
            [f"{impl}_bwd"] if pass_ in ("bwd", "fwd+bwd") else [])
        br, bc = resolve_blocks(spec, cfg, sch, s, tuple(kernels))
    p = FlashProblem(cfg.seq_len, cfg.kv_len, d, br, bc, cfg.batch, cfg.heads, g, e, s, a, band, cfg.dropout > 0,
                     sch.skip_masked_tiles)
    tiles = f"B_r={br}, B_c={bc}"
    _within_budget(p, path if classes is None else "enumerate", classes)
    if path == "enumerate" and classes is None:
        classes = band_tile_classes(p.n_q, p.n_k, band.left, band.right, br, bc)[None]
        if not p.skip:
            classes = np.maximum(classes, 1).astype(np.int8)  # masked-out tiles computed and masked
    if classes is not None:
        path = "enumerate"
    info = {"block_r": br, "block_c": bc, "t_r": p.t_r, "t_c": p.t_c, "l2_capacity_bytes": capacity}
    fast = sch.grid_order == "tiles-fastest"

    def grid(n_tiles: int) -> tuple[int, int]:  # (blockIdx.x extent, blockIdx.y extent)
        return (n_tiles, bh) if fast else (bh, n_tiles)

    def slots_of(bpsm):
        return spec.sm_count * bpsm

    out: list[KernelCount] = []
    if impl == "flash-decoding":
        if pass_ != "fwd":
            raise ValueError(f"pass: {pass_!r} is not allowed for flash-decoding (inference only); fwd is")
        if cfg.seq_len > 128:
            raise ValueError(f"seq_len: {cfg.seq_len} query tokens is not allowed for flash-decoding; "
                             f"at most 128 new tokens per sequence are (use flash2 for prefill)")
        splits = sch.splits or default_splits(spec, bh, p.t_c)
        if splits > p.t_c:
            raise ValueError(f"splits: {splits} exceeds the {p.t_c} key tiles of kv_len={cfg.kv_len} "
                             f"(B_c={bc}); at most {p.t_c} is allowed")
        info["splits"] = splits
        threads = sch.threads_per_block or DECODE_THREADS
        groups = threads // DECODE_LANES
        # the kernel's own register cap unless the caller set regs_per_thread
        regs = DECODE_REGS if "regs_per_thread" not in sch.model_fields_set else sch.regs_per_thread
        fp = sch.smem_per_block_bytes or 4 * (3 * groups + groups * (d + 8))  # m_g, l_g, w_g, o_g (pitch d + 8)
        bpsm = blocks_per_sm(spec, fp, threads, regs, sch.max_blocks_per_sm, f"head_dim: {d} with {tiles} (decode)")
        if path == "enumerate":
            m = enum.decode(classes, p.n_q, p.n_k, bc, d, e, s, cfg.batch, cfg.heads, g, splits,
                            sch.page_size or 0, slots_of(bpsm), capacity, fast)
        else:
            m = closed.decode(p, splits, sch.page_size, slots_of(bpsm), capacity, fast)
        k = _count("decode", grid(splits), "decode", m, p, sch, fp, threads, bpsm)
        # q, K and V live in registers (kernels/decode.py); shared memory only carries the merge
        # of the G groups: G (d + 3) words written and read once per block.
        k.smem_bytes = float(splits * bh * 2 * 4 * groups * (d + 3))
        out.append(k)
        if splits > 1:
            fl = F.decode_combine_flops(splits, p.n_q, d)
            out.append(_own_kernel(
                spec, sch, "decode_combine", (bh,),
                "grid (B*H,): reads the S partial O_s, lse_s of its (batch, head), writes O and lse",
                read=bh * splits * p.n_q * (d + 1) * 4, write=bh * p.n_q * (d * e + STAT_BYTES),
                other=bh * fl["other"], exp=bh * fl["exp"], threads=d))
        if sch.page_size is not None:
            pages = -(-cfg.kv_len // sch.page_size)
            info["kv_cache_bytes_paged"] = 2 * cfg.batch_kv_heads * pages * sch.page_size * d * e
            info["kv_cache_bytes_contiguous"] = 2 * cfg.batch_kv_heads * cfg.kv_len * d * e
        return out, info

    if pass_ in ("fwd", "fwd+bwd"):
        if impl == "flash2":
            threads = sch.threads_per_block or max(32, 2 * br)
            fp, bpsm = _occupancy(spec, sch, tile_footprint_bytes("flash2_fwd", br, bc, d, s), threads,
                                  f"block-r/block-c: {tiles} at head_dim: {d} (flash2_fwd)")
            if path == "enumerate":
                m = enum.fa2_fwd(classes, p.n_q, p.n_k, br, bc, d, e, s, cfg.batch, cfg.heads, g, slots_of(bpsm),
                                 capacity, fast)
            else:
                m = closed.fa2_fwd(p, slots_of(bpsm), capacity, fast)
            out.append(_count("flash2_fwd", grid(p.t_r), "fa2_fwd", m, p, sch, fp, threads, bpsm))
        else:
            threads = sch.threads_per_block or 128
            paper = sch.fa1_io == "paper"
            fp, bpsm = _occupancy(spec, sch, tile_footprint_bytes("flash1_fwd", br, bc, d, s, sch.fa1_io), threads,
                                  f"block-r/block-c: {tiles} at head_dim: {d} (flash1_fwd)")
            if path == "enumerate":
                m = enum.fa1_fwd(classes, p.n_q, p.n_k, br, bc, d, e, s, cfg.batch, cfg.heads, g, slots_of(bpsm),
                                 capacity, paper)
            else:
                m = closed.fa1_fwd(p, slots_of(bpsm), capacity, sch.fa1_io)
            out.append(_count("flash1_fwd", (bh,), "fa1_fwd", m, p, sch, fp, threads, bpsm, sch.fa1_io))

    if pass_ in ("bwd", "fwd+bwd"):
        threads = sch.threads_per_block or (128 if d <= 64 else 256)
        n_elems = bh * cfg.seq_len * d
        if impl == "flash2":
            out.append(_own_kernel(spec, sch, "bwd_fill_dq", (math.ceil(n_elems / 256),),
                                   "grid (ceil(B*H*N*d / 256),): zero the fp32 dQ accumulator",
                                   read=0, write=n_elems * a))
            out.append(_own_kernel(spec, sch, "bwd_preprocess", (math.ceil(cfg.seq_len / 16), bh),
                                   "grid (ceil(N / 16), B*H): one warp per row, 4 rows a warp, D = rowsum(dO o O)",
                                   read=2 * n_elems * e, write=bh * cfg.seq_len * STAT_BYTES,
                                   other=2 * n_elems, threads=128))
            fp, bpsm = _occupancy(spec, sch, tile_footprint_bytes("flash2_bwd", br, bc, d, s), threads,
                                  f"block-r/block-c: {tiles} at head_dim: {d} (flash2_bwd)")
            if path == "enumerate":
                m = walk_backward.fa2_bwd(classes, p.n_q, p.n_k, br, bc, d, e, s, a, cfg.batch, cfg.heads, g,
                                 slots_of(bpsm), capacity, fast)
            else:
                m = closed.fa2_bwd(p, slots_of(bpsm), capacity, fast)
            out.append(_count("flash2_bwd", grid(p.t_c), "fa2_bwd", m, p, sch, fp, threads, bpsm))
        else:
            fp, bpsm = _occupancy(spec, sch, tile_footprint_bytes("flash1_bwd", br, bc, d, s), threads,
                                  f"block-r/block-c: {tiles} at head_dim: {d} (flash1_bwd)")
            if path == "enumerate":
                m = walk_backward.fa1_bwd(classes, p.n_q, p.n_k, br, bc, d, e, s, a, cfg.batch, cfg.heads, g,
                                 slots_of(bpsm), capacity)
            else:
                m = closed.fa1_bwd(p, slots_of(bpsm), capacity)
            out.append(_count("flash1_bwd", (bh,), "fa1_bwd", m, p, sch, fp, threads, bpsm))
        if sch.accum_dtype != cfg.dtype:
            out.append(_own_kernel(spec, sch, "bwd_cast_dq", (math.ceil(n_elems / 256),),
                                   f"grid (ceil(B*H*N*d / 256),): dQ accumulator ({sch.accum_dtype}) -> {cfg.dtype}",
                                   read=n_elems * a, write=n_elems * e))
        if g > 1:
            kv_elems = cfg.batch_kv_heads * cfg.kv_len * d
            out.append(_own_kernel(spec, sch, "bwd_reduce_dkv", (p.t_c, cfg.batch_kv_heads),
                                   "grid (T_c, B*H_kv): sum the per-query-head dK_j, dV_j of each GQA group",
                                   read=2 * g * kv_elems * e, write=2 * kv_elems * e,
                                   other=2 * (g - 1) * kv_elems, threads=128))
    return out, info
