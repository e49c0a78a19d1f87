"""Reformer's kernels: LSH attention (Kitaev et al. 2020, "Reformer: The Efficient Transformer", §2).

Shared QK: keys are the queries normalised, k_j = q_j / |q_j| (§2 "Shared-QK Transformer").
Angular LSH per round: h(x) = argmax([xR; -xR]), R in R^{d x n_b/2} random (§2 "Hashing
attention", after Andoni et al. 2015). Sort the positions by (bucket, position); cut the
order into chunks of m = ``bucket_size``; each chunk attends to itself and the chunk
before (§2, the chunked P~ set and Figure 2), pairs in different buckets masked, a token's
score with itself masked to -1e5 (used only when nothing else is, §2 "Causal masking for
shared-QK"); n_r rounds combined by the softmax of their log-sum-exps (§2 "Multi-round
LSH attention"). With n_b = N / m buckets, as costmodel/validation/approx_torch.py runs it
(rows = batch x heads x n_r, e bytes per element):

    hash       X [R, -R]                 (BH N x d) @ (d x n_r n_b)   2 N d n_r n_b a head
    argmax     bucket per round          N n_r n_b compares
    keys       bucket x N + position     int32, transposed to (rows, N)
    sort       torch.sort of each row    N log2 N compares a row (the paper's O(N log N));
               bytes: sort_bytes_per_element below
    gather     rows of X and V in sorted order (a head's rounds run back to back: X, V read once)
    normalize  the keys' rows            N d
    look back  roll + cat (two slice copies) of K, V, positions, buckets (chunk c beside chunk c - 1)
    qk, pv     per chunk (m x d) @ (d x 2m) and (m x 2m) @ (2m x d)   4 N m d each, a row
    masks      other bucket (, future), itself: compares and fills over N 2m scores
    softmax    max, subtract, exp, sum, divide over N 2m; lse = max + log sum
    unsort     inverse permutation by scatter; gather of O and lse
    rounds     softmax over the n_r lse's; weighted sum of the n_r outputs

Hashing costs N^2 d n_r / m per head (n_b grows with N): the method's FLOPs are linear in
N only in the attention itself (4 N m d x 2 per row); the sort is N log N.
"""

from __future__ import annotations

import math

from simulators.kernel_graph import BOOL, INT32, INT64, KernelGraph
from simulators.counting import ELEMENTWISE_FLOPS

SMALL_SORT_MAX = 4096  # PyTorch Sort.h should_use_small_sort: rows of <= 4096 sort in one shared-memory kernel
SEGMENTED_RADIX_BITS = 6  # CUB DeviceSegmentedRadixSort's digit for keys wider than a byte (an assumption)
ONESWEEP_RADIX_BITS = 8  # CUB DeviceRadixSort onesweep digit (an assumption)


def sort_traffic(segments: int, length: int, key_bytes: int = INT32, index_bytes: int = INT64) -> tuple[float, int]:
    """(bytes moved per element, kernels) of ``torch.sort`` of ``segments`` rows of ``length`` keys.

    PyTorch 2.x (aten/src/ATen/native/cuda/Sort.cpp, Sort.cu, SortStable.cu):
    * length <= 4096: keys copied into the output, indices filled, one in-place block sort
      (sortKeyValueInplace): (k + k) + i + 2 (k + i) bytes, 3 kernels.
    * >= 128 segments: fill of the initial indices, then CUB's segmented radix sort:
      ceil(8k / 6) passes, each reading and writing keys and values: i + passes 2 (k + i), 1 + passes kernels.
    * fewer segments: "segmented sort by full sort": fill (index, segment) pairs (8 B), a global
      radix sort of the keys with those pairs (onesweep, 8-bit digits: a histogram read of the keys and
      ceil(8k / 8) passes), a radix sort of the 64-bit pairs on the ceil(log2 segments) segment bits,
      and a post-process gather (reads the pairs and the keys, writes keys and indices).
    """
    k, i = key_bytes, index_bytes
    if length <= SMALL_SORT_MAX:
        return float(2 * k + i + 2 * (k + i)), 3
    if segments >= 128:
        passes = math.ceil(8 * k / SEGMENTED_RADIX_BITS)
        return float(i + passes * 2 * (k + i)), 1 + passes
    passes = math.ceil(8 * k / ONESWEEP_RADIX_BITS)
    seg_passes = math.ceil(max(1, math.ceil(math.log2(max(segments, 2)))) / ONESWEEP_RADIX_BITS)
    return float(8 + k + passes * 2 * (k + 8) + seg_passes * 2 * 8 + (8 + k) + (k + i)), 3 + passes + seg_passes


def graph(cfg, hash_rounds: int, bucket_size: int) -> KernelGraph:
    bh, n, d, e = cfg.batch_heads, cfg.seq_len, cfg.head_dim, cfg.element_bytes
    if hash_rounds < 1:
        raise ValueError(f"hash_rounds: {hash_rounds!r} is not allowed; a positive number of rounds is")
    if bucket_size < 1 or n % bucket_size or (n // bucket_size) % 2:
        raise ValueError(f"bucket_size: {bucket_size} must divide seq_len={n} into an even number of buckets "
                         "(the hash argmax([xR; -xR]) has n_b = seq_len / bucket_size outputs)")
    if n * (n // bucket_size) >= 2**31:
        raise ValueError(f"seq_len: {n} with bucket_size {bucket_size} overflows the int32 sort key bucket x N + i")
    r, nb, m = hash_rounds, n // bucket_size, bucket_size
    rows = bh * r  # sorted rows
    el = rows * n  # sorted elements
    scores = el * 2 * m  # (rows, n_b, m, 2m)
    kg = KernelGraph(cfg)
    kg.param("R", d * r * nb // 2)
    kg.op("arange", "elementwise", [], "Pos", n, out_bytes=INT64, other=0.0, cls="pointwise")
    kg.op("rot_neg", "elementwise", ["R"], "R_neg", d * r * nb // 2, cls="pointwise")
    kg.op("rot_cat", "copy", ["R", "R_neg"], "R2", d * r * nb, other=0.0, cls="slice_copy")
    kg.gemm("hash", ["Q", "R2"], "Rot", bh * n, r * nb, d, 1, note="X [R, -R] folded to one GEMM")
    kg.op("argmax", "reduction", ["Rot"], "Bucket", bh * n * r * nb, out_elements=el, out_bytes=INT64,
          cls="argmax_inner")
    kg.op("keys_t", "copy", ["Bucket"], "Keys_t", el, out_bytes=INT32, other=0.0, note="transpose + int32 cast",
          cls="slice_copy")
    kg.op("pos_i32", "elementwise", ["Pos"], "Pos32", n, out_bytes=INT32, other=0.0, cls="pointwise")
    kg.op("keys_pos", "elementwise", ["Keys_t", "Pos32"], "Keys", el, out_bytes=INT32, other=2.0, cls="broadcast")
    per_el, launches = sort_traffic(rows, n)
    kg.op("sort", "sort", ["Keys"], [("SKeys", el, INT32), ("Idx", el, INT64)], el,
          other=math.log2(n), reread_bytes=int(per_el * el) - el * (INT32 + INT32 + INT64),
          note=f"torch.sort, {rows} rows of {n}: {per_el:.0f} B/element over {launches} kernels", cls="sort",
          launches=launches)
    for x, out in (("Q", "SQ"), ("V", "SV")):  # the rounds of one head run back to back: X is read once (L2)
        kg.op(f"gather_{x.lower()}", "gather", [x, "Idx"], out, el * d, other=0.0, cls="gather",
              note=f"rows of {x} in sorted order, every round")
    kg.op("norm", "reduction", ["SQ"], "Nrm", el * d, out_elements=el, other=2.0, cls="norm_inner")
    kg.op("clamp", "elementwise", ["Nrm"], "Nrm_c", el, cls="pointwise")
    kg.op("div_norm", "elementwise", ["SQ", "Nrm_c"], "SK", el * d, cls="broadcast_div")

    def look_one_back(x: str, src: str, width: int, nbytes: int) -> None:
        """torch.cat([t, t.roll(1, chunk axis)], dim=4): a roll, then one copy per input into its slice."""
        kg.op(f"roll_{x}", "copy", [src], f"{src}_prev", el * width, out_bytes=nbytes, other=0.0, cls="roll")
        kg.op(f"cat_{x}", "copy", [src], f"{src}_2a", el * width, out_bytes=nbytes, other=0.0, cls="slice_copy",
              note="first half of the cat")
        kg.op(f"cat_{x}_prev", "copy", [f"{src}_prev"], f"{src}_2b", el * width, out_bytes=nbytes, other=0.0,
              cls="slice_copy", note="second half of the cat")

    def both(src: str) -> list[str]:  # the two halves of one cat buffer
        return [f"{src}_2a", f"{src}_2b"]

    look_one_back("k", "SK", d, e)
    look_one_back("v", "SV", d, e)
    kg.gemm("qk", ["SQ", *both("SK")], "Dots", m, 2 * m, d, rows * nb)
    kg.op("scale", "elementwise", ["Dots"], "Dots_s", scores, other=ELEMENTWISE_FLOPS["scale"], cls="pointwise")
    look_one_back("pos", "Idx", 1, INT64)
    kg.op("bucket_of", "elementwise", ["SKeys"], "Bq", el, out_bytes=INT32, cls="pointwise")
    look_one_back("bkt", "Bq", 1, INT32)
    kg.op("bucket_mask", "elementwise", ["Bq", *both("Bq")], "Mask", scores, out_bytes=BOOL, cls="compare")
    mask = "Mask"
    if cfg.causal:
        kg.op("causal_cmp", "elementwise", ["Idx", *both("Idx")], "Future", scores, out_bytes=BOOL, cls="compare")
        kg.op("mask_or", "elementwise", ["Mask", "Future"], "Mask2", scores, out_bytes=BOOL, cls="pointwise")
        mask = "Mask2"
    kg.op("mask_fill", "elementwise", ["Dots_s", mask], "Dots_m", scores, cls="pointwise")
    kg.op("self_cmp", "elementwise", ["Idx", *both("Idx")], "Self", scores, out_bytes=BOOL, cls="compare")
    kg.op("self_fill", "elementwise", ["Dots_m", "Self"], "Dots_f", scores, cls="pointwise")
    kg.op("row_max", "reduction", ["Dots_f"], "Mx", scores, out_elements=el, cls="max_inner")
    kg.op("sub_max", "elementwise", ["Dots_f", "Mx"], "Dm", scores, cls="broadcast")
    kg.op("exp", "elementwise", ["Dm"], "Ex", scores, other=0.0, exp=1.0, cls="pointwise")
    kg.op("row_sum", "reduction", ["Ex"], "Sm", scores, out_elements=el, cls="sum_inner")
    kg.op("normalize", "elementwise", ["Ex", "Sm"], "P", scores, cls="broadcast_div")
    kg.gemm("pv", ["P", *both("SV")], "BO", m, d, 2 * m, rows * nb)
    kg.op("log", "elementwise", ["Sm"], "Lg", el, other=0.0, exp=1.0, cls="pointwise")
    kg.op("lse_add", "elementwise", ["Mx", "Lg"], "Lse", el, cls="pointwise")
    kg.op("undo", "scatter", ["Idx", "Pos"], "Undo", el, out_bytes=INT64, other=0.0, cls="gather")
    kg.op("unsort_o", "gather", ["BO", "Undo"], "O_r", el * d, other=0.0, cls="gather")
    kg.op("unsort_lse", "gather", ["Lse", "Undo"], "Z", el, other=0.0, cls="gather")
    kg.op("round_softmax", "rowwise", ["Z"], "Wt", el, other=ELEMENTWISE_FLOPS["softmax"], exp=1.0, cls="softmax_outer")
    kg.op("round_mul", "elementwise", ["O_r", "Wt"], "OW", el * d, cls="broadcast")
    kg.op("round_sum", "reduction", ["OW"], "O", el * d, out_elements=bh * n * d, cls="reduce_outer")
    return kg
