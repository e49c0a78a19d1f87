"""Linformer's kernels (Wang et al. 2020, "Linformer: Self-Attention with Linear Complexity").

§4, Eq. 7: head = softmax(Q (E K)^T / sqrt(d)) (F V), E and F in R^{k x N} projecting the
N keys and values onto k rows; with headwise sharing (§4, "Parameter sharing") one E and
one F serve every head. As costmodel/validation/approx_torch.py runs it (BH = batch x heads, e bytes
per element):

    proj_k  K' = E K      BH x (k x N) @ (N x d)    2 k N d FLOPs a head
    proj_v  V' = F V      the same
    qk      S = Q K'^T    BH x (N x d) @ (d x k)    2 N k d
    scale   S / sqrt(d)   N k elements a head
    softmax P             N k (4 FLOPs + 1 exp each, counting.py's softmax)
    pv      O = P V'      BH x (N x k) @ (k x d)    2 N k d

Matmul FLOPs: 4 N k d for the two attention products plus 4 k N d for the projections,
8 N k d a head: linear in N for a fixed k (the paper's O(nk), §4). No causal form: E
mixes all positions, so a causal call is refused.
"""

from __future__ import annotations

from simulators.kernel_graph import KernelGraph
from simulators.counting import ELEMENTWISE_EXP, ELEMENTWISE_FLOPS


def graph(cfg, proj_len: int) -> KernelGraph:
    if cfg.causal:
        raise ValueError("causal: linformer has no causal form (its projection E mixes every position); "
                         "causal=False is allowed")
    if proj_len < 1:
        raise ValueError(f"proj_len: {proj_len!r} is not allowed; a positive number of projected rows k is")
    bh, n, d, k = cfg.batch_heads, cfg.seq_len, cfg.head_dim, proj_len
    kg = KernelGraph(cfg)
    kg.param("E", k * n)
    kg.param("F", k * n)
    kg.gemm("proj_k", ["E", "K"], "Kp", k, d, n, bh, note="E K, E broadcast over batch x heads")
    kg.gemm("proj_v", ["F", "V"], "Vp", k, d, n, bh, note="F V")
    kg.gemm("qk", ["Q", "Kp"], "S", n, k, d, bh)
    kg.op("scale", "elementwise", ["S"], "S_scaled", bh * n * k, other=ELEMENTWISE_FLOPS["scale"], cls="pointwise")
    kg.op("softmax", "rowwise", ["S_scaled"], "P", bh * n * k, other=ELEMENTWISE_FLOPS["softmax"],
          exp=ELEMENTWISE_EXP["softmax"], cls="softmax")
    kg.gemm("pv", ["P", "Vp"], "O", n, d, k, bh)
    return kg
