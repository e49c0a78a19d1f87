"""An implementation's kernels for one call: its catalog entry turned into the simulator's KernelCounts.

Fused implementations reuse the flash simulator (``simulators.flash``: tiles, grid, occupancy, the
L2 wave model for DRAM bytes) with the implementation's own tiles, warps, registers and launch rules;
graph implementations are whole-tensor kernels whose bytes are the tensors they read and write.
Each kernel comes back with a *role* that says which fitted parameters time it (params.py).
"""

from __future__ import annotations

import heapq
import math

from simulators.config import AttentionConfig, ScheduleConfig, make_config
from simulators.counting import ELEMENTWISE_EXP, ELEMENTWISE_FLOPS
from simulators.flash import flash_kernels
from simulators.implementations import FusedPass, Implementation
from simulators.implementations.params import WARPS_TO_SATURATE
from simulators.l2 import blocks_per_sm
from simulators.memory_ops import forward_softmax_kernel
from simulators.results import KernelCount
from simulators.timing import block_share

MAX_SPLITS = 128  # FA2's cap on split-KV blocks per (batch, head, m-block) ([FA2T] flash_api.cpp)


def fa2_num_splits(batch_heads_mblocks: int, sm_slots: int, n_blocks: int, max_splits: int = MAX_SPLITS) -> int:
    """FlashAttention-2's split-KV count ([FA2T] num_splits_heuristic, called with 2 x SMs as sm_slots).

    Stated in words: no split if the grid almost fills the slots (>= 80 %); else, among split counts
    1..min(max_splits, slots, n_blocks) that change the blocks per split (``ceil(n / s)`` differs
    from ``ceil(n / (s - 1))``), the wave efficiency of s is w / ceil(w) with w = B H m s / slots;
    the smallest eligible s within 85 % of the best efficiency wins.
    """
    if batch_heads_mblocks >= 0.8 * sm_slots:
        return 1
    top = min(max_splits, sm_slots, n_blocks)

    def eligible(s):
        return s == 1 or math.ceil(n_blocks / s) != math.ceil(n_blocks / (s - 1))

    eff = {}
    for s in range(1, top + 1):
        if eligible(s):
            waves = batch_heads_mblocks * s / sm_slots
            eff[s] = waves / math.ceil(waves)
    best = max(eff.values())
    return next(s for s in sorted(eff) if eff[s] >= 0.85 * best)


def pow2_splits(batch_heads: int, sm_slots: int, sm_count: int, n_blocks: int) -> int:
    """cuDNN's decode split count as Nsight Compute showed it on the H200 (no source is public): none
    when B*H_kv blocks reach 80 % of the SMs, else the largest power of two s with B*H_kv*s <= slots."""
    if batch_heads >= 0.8 * sm_count:
        return 1
    s = 1
    while batch_heads * s * 2 <= sm_slots and s * 2 <= n_blocks:
        s *= 2
    return s


def causal_block_tiles(n: int, l_: int, br: int, bc: int, pass_: str) -> list[int]:
    """Tiles each block of one head computes under the bottom-right causal mask, in launch order:
    forward, a block per query block (FA2's grid (m_blocks, B, H), blockIdx.x fastest), the key tiles its
    rows see; backward, a block per key block ([FA2T] seqk_parallel: grid (n_blocks, B, H)), the query
    tiles that see it."""
    off, key_blocks, q_blocks = l_ - n, math.ceil(l_ / bc), math.ceil(n / br)
    if pass_ == "fwd":
        return [max(0, min(key_blocks, (min(n, r0 + br) - 1 + off) // bc + 1)) for r0 in range(0, n, br)]
    # key block j is seen by query block m when its last row's horizon reaches the block's first key
    return [sum(1 for m in range(q_blocks) if min(n, (m + 1) * br) - 1 + off >= j * bc) for j in range(key_blocks)]


LIST_LIMIT = 200_000  # blocks above which the greedy schedule is not walked (tail: half the longest block)


def tile_imbalance(head_tiles: list[int], heads: int, sms: int, per_sm: int = 1, share: float = 1.0) -> float:
    """Greedy list schedule of ``heads`` copies of one head's block works over ``sms`` x ``per_sm`` slots:
    the kernel's end over that of the same number of blocks of the mean work. 1 for equal blocks.

    While blocks remain, every slot is busy and each block advances at its SM's rate / ``per_sm`` (k
    co-resident blocks share the SM); the next block in launch order goes to the slot that frees first,
    as the GPU's block scheduler hands out a grid (slot j on SM j mod P: the first P blocks spread one an
    SM). Once the last block is placed, an SM's remaining blocks share its rate: m of them draw
    min(1, m c) of it, c = ``share``, what one block can draw (timing term 3: warps / warps to saturate),
    so a lone tail block runs up to 1 / (k c) times faster than in the full SM (with c = 1 / k, none).
    Above LIST_LIMIT blocks the tail is taken as half the longest block over the mean load of a slot, a
    low estimate: the walk gives 0.59-0.64 of the longest block at 8k-33k causal blocks (B1 H32 N32768 to
    B16 H32 N8192), an imbalance of 1.003-1.006 there."""
    works = [w for w in head_tiles if w > 0]
    if not works or max(works) == min(works):
        return 1.0
    b, total = heads * len(works), heads * sum(works)
    mean = total / b
    slots = sms * per_sm
    if b > LIST_LIMIT:
        return max(1.0, (total / slots + 0.5 * max(works)) / (math.ceil(b / slots) * mean))
    return _schedule_end([w for _ in range(heads) for w in works], sms, per_sm, share) / _schedule_end(
        [mean] * b, sms, per_sm, share)


def _schedule_end(blocks: list[float], sms: int, per_sm: int, share: float) -> float:
    """End of the list schedule of tile_imbalance, in units of one block-tile at a full SM's rate / k."""
    slots = sms * per_sm
    heap = [(0.0, j) for j in range(min(slots, len(blocks)))]
    finish = [0.0] * len(heap)
    t_last = 0.0
    for w in blocks:
        t_last, j = heapq.heappop(heap)
        finish[j] = t_last + w
        heapq.heappush(heap, (finish[j], j))
    full = min(1.0, per_sm * share) / per_sm  # a block's rate while its SM holds k blocks

    def speed(m):  # a block's rate with m on its SM, relative to ``full``
        return min(1.0, m * share) / m / full

    end = t_last
    for sm in range(min(sms, len(finish))):
        left = sorted(max(0.0, finish[j] - t_last) for j in range(sm, len(finish), sms))
        t, done = t_last, 0.0
        for i, r in enumerate(left):  # processor sharing: the least work left ends first
            t += (r - done) / speed(len(left) - i)
            done = r
        end = max(end, t)
    return end


def _sched(spec, tile, regs, stages, persistent, **extra) -> ScheduleConfig:
    br, bc, warps = tile
    return make_config(ScheduleConfig, block_r=br, block_c=bc, threads_per_block=32 * warps, regs_per_thread=regs,
                       max_blocks_per_sm=1 if persistent else None, tensor_cores=True, **extra)


def _tag(k: KernelCount, name: str, family: str, inflight: float, pad: float = 1.0) -> KernelCount:
    k.name, k.instruction, k.inflight_bytes_per_block, k.pad_rows = name, family, inflight, pad
    return k


def _gmem_output(k: KernelCount, cfg: AttentionConfig, tile) -> None:
    """[MEFF]'s forward for head_dim > kKeysPerBlock: the fp32 output accumulator lives in global
    memory: each query block reads and writes its B_r x d slice once per key tile (L2 traffic), and
    the accumulator crosses DRAM once each way (written back, read for the final bf16 output)."""
    br, bc, _ = tile
    acc = cfg.batch_heads * cfg.seq_len * cfg.head_dim * 4
    key_tiles = math.ceil(cfg.kv_len / bc) * (0.5 if cfg.causal else 1.0)
    k.global_read_bytes += int(acc * key_tiles)
    k.global_write_bytes += int(acc * key_tiles)
    k.hbm_read_bytes += acc
    k.hbm_write_bytes += acc


def _absorb_helpers(k: KernelCount, cfg: AttentionConfig, absent: list[str]) -> None:
    """A backward kernel that does its helpers' work itself moves their DRAM traffic into it: without a
    preprocess it reads O to form D = rowsum(dO o O) ([MEFF] kKernelComputesDelta); without a cast kernel
    the last key split of each query block writes dQ in the input dtype ([MEFF] GradQTempStorage counter).
    [NCU] memory-efficient backward, B32 H32 N512 d64 (impls-raw-3.json): read 482 MB, wrote 317 MB + the
    dirty share, against Q, K, V, O, dO and the fp32 dQ accumulator read (469 MB) and dK, dV, the
    accumulator and the bf16 dQ written (336 MB)."""
    n_elems = cfg.batch_heads * cfg.seq_len * cfg.head_dim
    extra_r = n_elems * cfg.element_bytes if "bwd_preprocess" in absent else 0
    extra_w = n_elems * cfg.element_bytes if "bwd_cast_dq" in absent else 0
    k.global_read_bytes += extra_r
    k.hbm_read_bytes += extra_r
    k.global_write_bytes += extra_w
    k.hbm_write_bytes += extra_w


def _compulsory_bwd(k: KernelCount, cfg: AttentionConfig) -> KernelCount:
    """The backward kernel's DRAM bytes with every operand crossing DRAM once: reads Q, K, V, dO (input
    dtype), LSE and D (fp32 a row) and the fp32 dQ accumulator; writes dK, dV (one a query head: the GQA
    group is reduced by a later kernel) and the dQ accumulator. [NCU] cuDNN 9.19 bprop on the calibration
    grid's 16 fwd+bwd calls (2026-12-02, impls-raw-3.json): reads within 1 % of this at every N, d, causal
    and GQA; writes 8-9 % under it (dirty lines still in L2 when the kernel ends)."""
    b, h, hk, n, l_, d, e = (cfg.batch, cfg.heads, cfg.kv_heads, cfg.seq_len, cfg.kv_len, cfg.head_dim,
                             cfg.element_bytes)
    q, kv, dkv, rows = b * h * n * d * e, b * hk * l_ * d * e, b * h * l_ * d * e, b * h * n * 4
    acc = b * h * n * d * 4
    read, write = 2 * q + 2 * kv + 2 * rows + acc, 2 * dkv + acc
    k.hbm_read_bytes, k.hbm_write_bytes = int(read), int(write)
    return k


def _fused(spec, impl: Implementation, cfg: AttentionConfig, pass_: str) -> list[tuple[KernelCount, str]]:
    d, e = cfg.head_dim, cfg.element_bytes
    out: list[tuple[KernelCount, str]] = []
    if pass_ in ("fwd", "fwd+bwd"):
        dec: FusedPass | None = impl.decode
        packed = dec is not None and dec.pack_gqa and cfg.seq_len == 1 and cfg.group > 1
        run = cfg
        if packed:  # [FA2T] seqlenq_ngroups_swapped: (B, H_kv, group, d) queries, one block per K/V head
            run = make_config(AttentionConfig, batch=cfg.batch, heads=cfg.kv_heads, kv_heads=cfg.kv_heads,
                              seq_len=cfg.group * cfg.seq_len, kv_len=cfg.kv_len, head_dim=d, dtype=cfg.dtype,
                              causal=cfg.causal)
        splits = 1
        if dec is not None and dec.splits in ("fa2", "pow2"):
            br_s, bc_s, _ = dec.tile(d)
            n_blocks = math.ceil(run.kv_len / bc_s)
            if dec.splits == "fa2":
                splits = fa2_num_splits(run.batch_heads * math.ceil(run.seq_len / br_s), 2 * spec.sm_count, n_blocks)
            else:
                splits = pow2_splits(run.batch_heads, 2 * spec.sm_count, spec.sm_count, n_blocks)
        if splits > 1 and run.seq_len <= 128:
            br_s, bc_s, warps = dec.tile(d)
            sch = _sched(spec, (run.seq_len, bc_s, warps), dec.regs, dec.stages, False, splits=splits,
                         smem_per_block_bytes=dec.smem_bytes(d) or (br_s * d + 2 * bc_s * d) * e)
            counts, _ = flash_kernels(spec, run, sch, "flash-decoding", "fwd", "closed")
            family = dec.instruction or impl.instruction
            pad = math.ceil(run.seq_len / br_s) * br_s / run.seq_len
            out.append((_tag(counts[0], dec.kernel, family, 2 * bc_s * d * e * dec.stages, pad), "decode"))
            for k in counts[1:]:
                out.append((_tag(k, dec.combine or k.name, "simt", 0.0), "helper"))
        else:
            # a decode (one query position; packed, its group's rows) runs the decode entry's kernel
            fp = impl.decode if (cfg.seq_len == 1 and impl.decode is not None) else impl.fwd
            fp = impl.fwd if fp.splits == "fa2" else fp  # FA2 with one split runs its ordinary forward kernel
            tile = fp.tile(d)
            smem = fp.smem_bytes(d)
            sch = _sched(spec, tile, fp.regs, fp.stages, fp.is_persistent(impl),
                         **({"smem_per_block_bytes": smem} if smem else {}))
            counts, _ = flash_kernels(spec, run, sch, "flash2", "fwd", "closed")
            k = counts[0]
            if fp.gmem_output_above is not None and d > fp.gmem_output_above:
                _gmem_output(k, run, tile)
            pad = math.ceil(run.seq_len / tile[0]) * tile[0] / run.seq_len
            family = fp.instruction or impl.instruction
            if not packed:  # a packed group's rows are one query position: its blocks are equal
                _causal_imbalance(spec, impl, k, run, tile, "fwd", family)
            own = fp is impl.decode and fp.kernel != impl.fwd.kernel  # a decode kernel of its own (cuDNN's sm80)
            out.append((_tag(k, fp.kernel, family, 2 * tile[1] * d * e * fp.stages, pad), "decode" if own else "fwd"))
    if pass_ in ("bwd", "fwd+bwd"):
        bp = impl.bwd
        tile = bp.tile(d)
        sch = _sched(spec, tile, bp.regs, bp.stages, bp.is_persistent(impl))
        counts, _ = flash_kernels(spec, cfg, sch, "flash2", "bwd", "closed")
        out += [(_copy(spec, cfg, t), "copy") for t in bp.copies_before]
        for k in counts:
            if k.name in bp.no_helpers:
                continue
            if k.name == "flash2_bwd":
                if bp.dram == "compulsory":
                    k = _compulsory_bwd(k, cfg)
                _absorb_helpers(k, cfg, bp.no_helpers)
                family = bp.instruction or impl.instruction
                _causal_imbalance(spec, impl, k, cfg, tile, "bwd", family)
                out.append((_tag(k, bp.kernel, family, 2 * tile[0] * d * e * bp.stages), "bwd"))
            else:
                out.append((_tag(k, k.name, "simt", 0.0), "helper"))
        out += [(_copy(spec, cfg, t), "copy") for t in bp.copies_after]
    return out


def _causal_imbalance(spec, impl: Implementation, k: KernelCount, cfg: AttentionConfig, tile, pass_: str,
                      family: str) -> None:
    """A causal kernel's list-schedule tail (tile_imbalance) on ``k``, its blocks drawing the share of an SM
    their warps can issue on instruction ``family``; a persistent kernel hands out its tiles itself and is
    taken as balanced."""
    if cfg.causal and not impl.persistent:
        share = block_share(k.threads_per_block, WARPS_TO_SATURATE.get(family))
        k.imbalance = tile_imbalance(causal_block_tiles(cfg.seq_len, cfg.kv_len, tile[0], tile[1], pass_),
                                     cfg.batch_heads, spec.sm_count, k.blocks_per_sm, share)


# a copied tensor -> the tensor whose size it has (_tensor_elements): gradients have their input's size
_COPIED = {"o": "o", "do": "o", "dq": "q", "dk": "k", "dv": "v"}


def _copy(spec, cfg: AttentionConfig, tensor: str) -> KernelCount:
    """One of torch's strided copies around a fused backward: TensorIterator's non-vectorized
    ``elementwise_kernel<128, 4>`` direct_copy ([NCU]: 128 threads, 4 elements a thread), the tensor read
    and written once; o, do and dq have Q's size, dk and dv K's (per K/V head)."""
    elems = _tensor_elements(cfg)[_COPIED[tensor]]
    nbytes = elems * cfg.element_bytes
    return KernelCount(name=f"copy_{tensor}", grid=(max(1, math.ceil(elems / 512)),),
                       schedule=f"strided copy of {tensor}: read and written once", matmul_flops=0.0,
                       other_flops=0.0, exp_ops=0.0, global_read_bytes=nbytes, global_write_bytes=nbytes,
                       hbm_read_bytes=nbytes, hbm_write_bytes=nbytes, smem_bytes=0.0, smem_per_block_bytes=0,
                       threads_per_block=128, blocks_per_sm=blocks_per_sm(spec, 0, 128, 64, None, "copy"),
                       instruction="simt")


def _tensor_elements(cfg: AttentionConfig) -> dict[str, int]:
    b, h, hk, n, l_, d = cfg.batch, cfg.heads, cfg.kv_heads, cfg.seq_len, cfg.kv_len, cfg.head_dim
    qo, kv, kx, s = b * h * n * d, b * hk * l_ * d, b * h * l_ * d, b * h * n * l_
    return {"q": qo, "o": qo, "k": kv, "v": kv, "kx": kx, "vx": kx, "s": s, "s2": s, "m": s}


def _graph(spec, impl: Implementation, cfg: AttentionConfig, pass_: str) -> list[tuple[KernelCount, str]]:
    sizes = _tensor_elements(cfg)
    masked = cfg.causal or cfg.window is not None

    def nbytes(tensors: dict[str, str]) -> int:
        return sum(sizes[t] * {"input": cfg.element_bytes, "fp32": 4, "bool": 1}[dt] for t, dt in tensors.items())

    steps = []
    if pass_ in ("fwd", "fwd+bwd"):
        steps += [(s, "fwd") for s in impl.fwd]
    if pass_ in ("bwd", "fwd+bwd"):
        steps += [(s, "bwd") for s in impl.bwd]
    out = []
    scores = sizes["s"]
    for step, role in steps:
        if (step.gqa_only and cfg.group == 1) or (step.causal_only and not masked):
            continue
        read, write = nbytes(step.reads), nbytes(step.writes)
        matmul = 2.0 * cfg.batch_heads * cfg.seq_len * cfg.kv_len * cfg.head_dim if step.kind == "gemm" else 0.0
        if step.kind == "gemm":
            grid = (cfg.batch_heads * math.ceil(cfg.seq_len / 128) * math.ceil(
                (cfg.kv_len if step.flops == "qk" else cfg.head_dim) / 128),)
            threads, family = 128, ("simt" if step.unit == "fp32" else impl.instruction)
        else:
            elems = max(sizes[t] for t in {**step.reads, **step.writes})
            grid, threads, family = (max(1, math.ceil(elems / 512)),), 128, "simt"
        other = float(scores * ELEMENTWISE_FLOPS.get("softmax", 0)) if step.exp else 0.0
        exp = float(scores * ELEMENTWISE_EXP.get("softmax", 0)) if step.exp else 0.0
        bpsm = blocks_per_sm(spec, 0, threads, 64, None, step.name)
        k = KernelCount(name=step.name, grid=grid, schedule=f"{step.kind}: reads {', '.join(step.reads)}; "
                        f"writes {', '.join(step.writes) or 'nothing'}", matmul_flops=matmul, other_flops=other,
                        exp_ops=exp, global_read_bytes=read, global_write_bytes=write, hbm_read_bytes=read,
                        hbm_write_bytes=write, smem_bytes=0.0, smem_per_block_bytes=0, threads_per_block=threads,
                        blocks_per_sm=bpsm, instruction=family, launches=step.launches)
        # torch's softmax: a warp a row while the row fits, else a block a row (aten/src/ATen/native/cuda/
        # SoftMax.cu, host_softmax / host_softmax_backward): forward as memory_ops.forward_softmax_kernel,
        # backward while L <= 1024 and 4 KiB; the two run at different rates
        e = step.read_element_bytes(cfg.element_bytes)
        warp_rows = (forward_softmax_kernel(cfg.kv_len, e) == "warp" if role == "fwd"
                     else cfg.kv_len <= 1024 and cfg.kv_len * e <= 4096)
        # the fp32 product with one query row is a batched GEMV (gemv.py)
        gemm = "gemv" if step.unit == "fp32" and cfg.seq_len == 1 else "gemm"
        kind = {"gemm": gemm, "rowwise": "rowwise" if warp_rows else "rowblock"}.get(
            step.kind, "broadcast" if step.path == "broadcast" else "elementwise")
        out.append((k, f"{kind}_{role}"))
    return out


def kernels(spec, impl: Implementation, cfg: AttentionConfig, pass_: str) -> list[tuple[KernelCount, str]]:
    """(kernel, role) pairs of one call; role: fwd | decode (a decode kernel other than the forward's) | bwd |
    helper | copy, or for graph steps KIND_PASS with KIND
    gemm | gemv | elementwise | broadcast | rowwise | rowblock and PASS fwd | bwd."""
    if cfg.group > 1 and not impl.gqa:
        raise ValueError(f"kv_heads: {impl.name} has no grouped-query attention (torch: 'No available kernel' "
                         f"with enable_gqa); kv_heads = heads ({cfg.heads}) is allowed")
    if cfg.dropout > 0:
        raise ValueError(f"dropout: {impl.name} is modelled without dropout; 0 is allowed")
    if impl.kind == "fused":
        return _fused(spec, impl, cfg, pass_)
    return _graph(spec, impl, cfg, pass_)

