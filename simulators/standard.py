"""Standard (materialising) attention as a graph of kernels, and fusion as node contraction.

Nodes are kernels, edges are tensors: a kernel reads every tensor on its in-edges from
HBM and writes every tensor on its out-edges to HBM (the FlashAttention paper's model
of standard attention, Dao et al. 2022, §2.2 Algorithm 0 and Figure 2 left). Q, K, V
and dO come from the ``inputs`` node, O, dQ, dK, dV go to ``outputs``. Contracting a
set of nodes into one fused kernel removes the edges between them: a tensor that only
flows inside the set never leaves the chip; one that is also read outside (P, saved for
the backward pass) is still written.

Unfused graph (``standard``): forward QK^T -> scale -> mask (causal or window) ->
softmax -> dropout (writes P_drop and the 1-byte mask it saves) -> PV; backward
dV = P_drop^T dO, dP_drop = dO V^T, dropout backward, softmax backward
dS = P o (dP - rowsum(dP o P)), dQ = dS K, dK = dS^T Q (the 1/sqrt(d) of the backward
is folded into the dQ, dK matmuls' alpha, as cuBLAS does).

Presets: ``standard-fused`` contracts {scale, mask, softmax, dropout} and {dropout
backward, softmax backward}; ``standard-3kernel`` is kernels/standard.py: (a) S =
QK^T * scale with the causal mask, (b) P = softmax(S), (c) O = PV, with S and P in
fp32 by default, no dropout, nothing skipped for the mask.

Bytes are tensor-level: each tensor a kernel reads crosses HBM once for that kernel
(a tiled matmul's operand re-reads are assumed to hit L2), so global bytes = DRAM bytes.
"""

from __future__ import annotations

import math

import networkx as nx

from simulators.counting import ELEMENTWISE_EXP, ELEMENTWISE_FLOPS

_KIND_RANK = {"gemm": 2, "rowwise": 1, "elementwise": 0}


def attention_graph(cfg, inter_bytes: int, mask_bytes: int = 1, gemm_tile: tuple[int, int] = (64, 64),
                    elementwise_block: int = 1024) -> nx.DiGraph:
    """The unfused forward + backward kernel graph of ``cfg`` (an AttentionConfig)."""
    b, h, hk, n, l, d, e = cfg.batch, cfg.heads, cfg.kv_heads, cfg.seq_len, cfg.kv_len, cfg.head_dim, cfg.element_bytes
    bh = b * h
    scores = bh * n * l  # elements of S, P, dP, dS: (B, H, N, L)
    masked = cfg.causal or cfg.window is not None
    drop = cfg.dropout > 0
    tensors = {
        "Q": bh * n * d * e, "O": bh * n * d * e, "dO": bh * n * d * e, "dQ": bh * n * d * e,
        "K": b * hk * l * d * e, "V": b * hk * l * d * e, "dK": b * hk * l * d * e, "dV": b * hk * l * d * e,
        "S": scores * inter_bytes, "S_scaled": scores * inter_bytes, "S_masked": scores * inter_bytes,
        "P": scores * inter_bytes, "P_drop": scores * inter_bytes, "dropout_mask": scores * mask_bytes,
        "dP_drop": scores * inter_bytes, "dP": scores * inter_bytes, "dS": scores * inter_bytes,
    }
    g = nx.DiGraph(tensors=tensors)
    bm, bn = gemm_tile

    def gemm_grid(rows, cols):
        return (math.ceil(cols / bn), math.ceil(rows / bm), bh)

    def add(name, kind, pass_, reads, writes, matmul=0.0, per_element=None):
        other = float(scores * ELEMENTWISE_FLOPS.get(per_element, 0)) if per_element else 0.0
        exp = float(scores * ELEMENTWISE_EXP.get(per_element, 0)) if per_element else 0.0
        if kind == "gemm":
            grid = gemm_grid(*_gemm_out[name])
        elif kind == "rowwise":
            grid = (n, bh)  # one block per row of S
        else:
            grid = (math.ceil(scores / elementwise_block),)
        g.add_node(name, kind=kind, pass_=pass_, reads=tuple(reads), writes=tuple(writes), grid=grid,
                   matmul_flops=float(matmul), other_flops=other, exp_ops=exp, members=(name,), order=len(g))

    _gemm_out = {"qk_matmul": (n, l), "pv_matmul": (n, d), "dv_matmul": (l, d), "dp_matmul": (n, l),
                 "dq_matmul": (n, d), "dk_matmul": (l, d)}
    mm = 2.0 * scores * d  # one N x L x d product per head
    s_in = "S_scaled"
    add("qk_matmul", "gemm", "fwd", ["Q", "K"], ["S"], matmul=mm)
    add("scale", "elementwise", "fwd", ["S"], ["S_scaled"], per_element="scale")
    if masked:
        add("mask", "elementwise", "fwd", ["S_scaled"], ["S_masked"], per_element="mask")
        s_in = "S_masked"
    add("softmax", "rowwise", "fwd", [s_in], ["P"], per_element="softmax")
    p_used = "P"
    if drop:
        add("dropout", "elementwise", "fwd", ["P"], ["P_drop", "dropout_mask"], per_element="dropout")
        p_used = "P_drop"
    add("pv_matmul", "gemm", "fwd", [p_used, "V"], ["O"], matmul=mm)
    add("dv_matmul", "gemm", "bwd", [p_used, "dO"], ["dV"], matmul=mm)
    dp_out = "dP_drop" if drop else "dP"
    add("dp_matmul", "gemm", "bwd", ["dO", "V"], [dp_out], matmul=mm)
    if drop:
        add("dropout_bwd", "elementwise", "bwd", ["dP_drop", "dropout_mask"], ["dP"], per_element="dropout_bwd")
    add("softmax_bwd", "elementwise", "bwd", ["P", "dP"], ["dS"], per_element="softmax_bwd")
    add("dq_matmul", "gemm", "bwd", ["dS", "K"], ["dQ"], matmul=mm)
    add("dk_matmul", "gemm", "bwd", ["dS", "Q"], ["dK"], matmul=mm)
    connect(g)
    return g


def connect(g: nx.DiGraph, inputs=("Q", "K", "V", "dO"), outputs=("O", "dQ", "dK", "dV")) -> None:
    """Edges from each tensor's producer (or ``inputs``) to each of its readers (or ``outputs``)."""
    kernels = [v for v in g.nodes if v not in ("inputs", "outputs")]
    g.add_node("inputs", kind="io")
    g.add_node("outputs", kind="io")
    producer = {t: "inputs" for t in inputs}
    for v in kernels:
        for t in g.nodes[v]["writes"]:
            producer[t] = v
    readers: dict[str, list[str]] = {}
    for v in kernels:
        for t in g.nodes[v]["reads"]:
            readers.setdefault(t, []).append(v)
    for t in outputs:
        readers.setdefault(t, []).append("outputs")
    for t, src in producer.items():
        for dst in readers.get(t, []):
            if g.has_edge(src, dst):
                g.edges[src, dst]["tensors"] = g.edges[src, dst]["tensors"] | {t}
            else:
                g.add_edge(src, dst, tensors=frozenset({t}))


def fuse(g: nx.DiGraph, members: list[str], name: str) -> nx.DiGraph:
    """Contract ``members`` into one kernel ``name``: internal edges (tensors kept on chip) vanish."""
    members = [m for m in members if m in g]
    if len(members) < 2:
        return g
    passes = {g.nodes[m]["pass_"] for m in members}
    if len(passes) != 1:
        raise ValueError(f"cannot fuse {members}: they belong to different passes {sorted(passes)}")
    out = g.copy()
    lead = max(members, key=lambda m: _KIND_RANK[g.nodes[m]["kind"]])
    out.add_node(name, kind=g.nodes[lead]["kind"], pass_=passes.pop(), grid=g.nodes[lead]["grid"],
                 order=min(g.nodes[m]["order"] for m in members),
                 members=tuple(x for m in members for x in g.nodes[m]["members"]),
                 **{k: sum(g.nodes[m][k] for m in members) for k in ("matmul_flops", "other_flops", "exp_ops")})
    inside = set(members)
    for u, v, data in g.edges(data=True):
        if u in inside and v in inside:
            continue
        src, dst = (name if u in inside else u), (name if v in inside else v)
        if src == name or dst == name:
            prev = out.edges[src, dst]["tensors"] if out.has_edge(src, dst) else frozenset()
            out.add_edge(src, dst, tensors=prev | data["tensors"])
    out.remove_nodes_from(members)
    if not nx.is_directed_acyclic_graph(out):
        raise ValueError(f"fusing {members} would make a cycle: a member feeds another through an outside kernel")
    return out


def preset_graph(preset: str, cfg, inter_bytes: int, mask_bytes: int = 1, gemm_tile=(64, 64),
                 elementwise_block: int = 1024) -> nx.DiGraph:
    """The kernel graph of a named preset: standard, standard-fused or standard-3kernel."""
    g = attention_graph(cfg, inter_bytes, mask_bytes, gemm_tile, elementwise_block)
    if preset == "standard":
        return g
    if preset == "standard-fused":
        g = fuse(g, ["scale", "mask", "softmax", "dropout"], "fused_softmax")
        return fuse(g, ["dropout_bwd", "softmax_bwd"], "fused_softmax_bwd")
    if preset == "standard-3kernel":
        if cfg.dropout > 0:
            raise ValueError("dropout: standard-3kernel (kernels/standard.py) has no dropout; 0 is allowed")
        return fuse(g, ["qk_matmul", "scale", "mask"], "qk_scale_mask")
    raise ValueError(f"impl: {preset!r} is not a standard-attention preset")


def kernel_traffic(g: nx.DiGraph, node: str) -> tuple[int, int, tuple[str, ...], tuple[str, ...]]:
    """(read bytes, write bytes, tensors read, tensors written) of one kernel node."""
    tensors = g.graph["tensors"]
    reads = sorted(set().union(*[d["tensors"] for _, _, d in g.in_edges(node, data=True)]))
    writes = sorted(set().union(*[d["tensors"] for _, _, d in g.out_edges(node, data=True)]))
    return sum(tensors[t] for t in reads), sum(tensors[t] for t in writes), tuple(reads), tuple(writes)


def kernels_in_pass(g: nx.DiGraph, pass_: str) -> list[str]:
    """Kernel nodes of ``pass_`` ("fwd", "bwd", "fwd+bwd") in launch order (topological, ties by build order)."""
    wanted = {"fwd": {"fwd"}, "bwd": {"bwd"}, "fwd+bwd": {"fwd", "bwd"}}[pass_]
    order = nx.lexicographical_topological_sort(
        g, key=lambda v: g.nodes[v].get("order", -1 if v == "inputs" else 1 << 30))
    return [v for v in order if g.nodes[v].get("pass_") in wanted]
