"""Performer's kernels: FAVOR+ (Choromanski et al. 2021, "Rethinking Attention with Performers").

Positive random features (§2.3, Lemma 1): softmax's kernel exp(x^T y) is the expectation of
phi(x)^T phi(y), phi(x) = exp(w_i^T x - |x|^2 / 2) / sqrt(m), w_i ~ N(0, I_d) (orthogonal in
blocks, §2.4), applied to x = q / d^(1/4) and k / d^(1/4). Bidirectional attention (§2.2,
Figure 1): O = D^-1 (Q' ((K')^T V)), D = diag(Q' ((K')^T 1_N)): linear in N. Unidirectional
by prefix sums (§2.2 and Figure 2; the running sum of k'_j v_j^T), here over chunks of C
tokens: inside a chunk the C x C lower-triangular product, between chunks the prefix sum
of their m x d states. As costmodel/validation/approx_torch.py runs it (BH = batch x heads):

    per input x in {Q, K} (features):
      w_scale  W / d^(1/4)                 m d (tiny)
      proj     X W^T                       (BH N x d) @ (d x m)     2 N m d a head
      sq_mul, sq_sum  |x|^2                N d, N d
      stab     row max (Q) / head max (K)  N m
      off_mul, off_add                     N (tiny)
      sub, exp phi = exp(proj - offset)    N m each (exp: N m on the SFU)
    bidirectional:
      kv   (K')^T V   BH x (m x N) @ (N x d)   2 N m d;  ksum (K')^T 1  N m
      num  Q' kv      BH x (N x m) @ (m x d)   2 N m d;  den  Q' ksum   2 N m
      div  num / den  N d
    causal, chunks of C (nc = N / C):
      intra_qk   Q'_c K'_c^T   BH nc x (C x m) @ (m x C)   2 N C m;  tril  N C
      intra_av   A V_c         BH nc x (C x C) @ (C x d)   2 N C d;  intra_sum  N C
      chunk_kv   K'_c^T V_c    BH nc x (m x C) @ (C x d)   2 N m d
      kv_cumsum, kv_excl       nc m d each (the prefix sum of the states before chunk c)
      chunk_ksum, ks_cumsum, ks_excl    N m, nc m, nc m
      inter_qs   Q'_c S_c      BH nc x (C x m) @ (m x d)   2 N m d;  add_num  N d
      inter_qz   Q'_c z_c      2 N m;  add_den  N;  div  N d

Matmul FLOPs per head: bidirectional 4 N m d (features) + 4 N m d + 2 N m; causal
4 N m d + 2 N C (m + d) + 4 N m d + 2 N m: linear in N for fixed m and C.
"""

from __future__ import annotations

from simulators.kernel_graph import KernelGraph


def _features(kg: KernelGraph, x: str, is_query: bool, m: int) -> str:
    bh, n, d = kg.cfg.batch_heads, kg.cfg.seq_len, kg.cfg.head_dim
    p = x.lower()
    kg.op(f"{p}_w_scale", "elementwise", ["W"], f"{p}_Ws", m * d, cls="pointwise")
    kg.gemm(f"{p}_proj", [x, f"{p}_Ws"], f"{p}_proj_out", bh * n, m, d, 1, note="X W^T folded to one GEMM")
    kg.op(f"{p}_sq_mul", "elementwise", [x], f"{p}_x2", bh * n * d, cls="pointwise")
    kg.op(f"{p}_sq_sum", "reduction", [f"{p}_x2"], f"{p}_sq", bh * n * d, out_elements=bh * n,
          cls="sum_inner_64" if d <= 64 else "sum_inner")
    kg.op(f"{p}_stab", "reduction", [f"{p}_proj_out"], f"{p}_stab_out", bh * n * m,
          out_elements=bh * n if is_query else bh, note="row max" if is_query else "max over the head",
          cls="max_inner" if is_query else "reduce_outer")
    kg.op(f"{p}_off_mul", "elementwise", [f"{p}_sq"], f"{p}_sq2", bh * n, cls="pointwise")
    kg.op(f"{p}_off_add", "elementwise", [f"{p}_sq2", f"{p}_stab_out"], f"{p}_off", bh * n,
          cls="pointwise" if is_query else "broadcast")
    kg.op(f"{p}_sub", "elementwise", [f"{p}_proj_out", f"{p}_off"], f"{p}_shifted", bh * n * m, cls="broadcast")
    kg.op(f"{p}_exp", "elementwise", [f"{p}_shifted"], f"{p}_phi", bh * n * m, other=0.0, exp=1.0, cls="pointwise")
    return f"{p}_phi"


def graph(cfg, features: int, chunk: int = 128) -> KernelGraph:
    if features < 1:
        raise ValueError(f"features: {features!r} is not allowed; a positive number of random features r is")
    bh, n, d, m = cfg.batch_heads, cfg.seq_len, cfg.head_dim, features
    kg = KernelGraph(cfg)
    kg.param("W", m * d)
    qf, kf = _features(kg, "Q", True, m), _features(kg, "K", False, m)
    if not cfg.causal:
        kg.gemm("kv", [kf, "V"], "KV", m, d, n, bh, note="(K')^T V")
        kg.op("ksum", "reduction", [kf], "Ksum", bh * n * m, out_elements=bh * m, cls="reduce_outer")
        kg.gemm("num", [qf, "KV"], "Num", n, d, m, bh)
        kg.gemm("den", [qf, "Ksum"], "Den", n, 1, m, bh, note="Q' ksum, a batched GEMV")
        kg.op("div", "elementwise", ["Num", "Den"], "O", bh * n * d, cls="broadcast_div")
        return kg
    if chunk < 1 or n % chunk:
        raise ValueError(f"seq_len: {n} is not a multiple of the prefix-sum chunk {chunk}; "
                         f"a multiple of {chunk} is allowed")
    c, nc = chunk, n // chunk
    kg.gemm("intra_qk", [qf, kf], "A", c, c, m, bh * nc)
    kg.op("tril", "elementwise", ["A"], "A_tril", bh * n * c, cls="tril")
    kg.gemm("intra_av", ["A_tril", "V"], "Num1", c, d, c, bh * nc)
    kg.op("intra_sum", "reduction", ["A_tril"], "Den1", bh * n * c, out_elements=bh * n, cls="sum_inner")
    kg.gemm("chunk_kv", [kf, "V"], "KVc", m, d, c, bh * nc)
    kg.op("kv_cumsum", "scan", ["KVc"], "KVcs", bh * nc * m * d, cls="scan")
    kg.op("kv_excl", "elementwise", ["KVcs", "KVc"], "State", bh * nc * m * d, cls="pointwise")
    kg.op("chunk_ksum", "reduction", [kf], "Ksc", bh * n * m, out_elements=bh * nc * m, cls="reduce_outer")
    kg.op("ks_cumsum", "scan", ["Ksc"], "Kscs", bh * nc * m, cls="scan")
    kg.op("ks_excl", "elementwise", ["Kscs", "Ksc"], "Z", bh * nc * m, cls="pointwise")
    kg.gemm("inter_qs", [qf, "State"], "Num2", c, d, m, bh * nc)
    kg.op("add_num", "elementwise", ["Num1", "Num2"], "Num", bh * n * d, cls="pointwise")
    kg.gemm("inter_qz", [qf, "Z"], "Den2", c, 1, m, bh * nc)
    kg.op("add_den", "elementwise", ["Den1", "Den2"], "Den", bh * n, cls="pointwise")
    kg.op("div", "elementwise", ["Num", "Den"], "O", bh * n * d, cls="broadcast_div")
    return kg
