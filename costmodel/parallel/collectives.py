"""Collective times: alpha-beta models of ring, tree and NVLS over the fabric a group spans.

Sizes follow nccl-tests (doc/PERFORMANCE.md): ``nbytes`` is the buffer of one rank for
all-reduce, the *total* array (per-rank count x n) for all-gather and reduce-scatter, the whole
send buffer of one rank for all-to-all, and the message for send/recv. Its bus-bandwidth
factors convert algorithm bandwidth ``nbytes / t`` into the bandwidth one link must carry:

    all_reduce 2(n-1)/n    all_gather (n-1)/n    reduce_scatter (n-1)/n    all_to_all (n-1)/n    send_recv 1

so a perfect ring on links of bandwidth B takes ``t = factor * nbytes / B`` (``bus_bandwidth`` of
that time gives back B, which tests/test_collectives.py checks on constructed fabrics).

Where the group sits: ``local`` of its ``n`` members share a node, over ``nodes`` nodes. Inside
one node the link is the GPU's NVLink (``intra_node``). Across nodes each GPU drives its own NIC
(a rail-optimized node), so a ring that visits ``local`` GPUs per node crosses node boundaries
on ``local`` channels at once; the bottleneck link of the ring is then

    B = min(B_intra * eff_intra, local * B_nic * eff_inter)

(NCCL's rings and trees are built the same way: one channel per NIC, ``src/graph/``). The latency
term is NCCL's own tuning model (src/graph/tuning.cc, ``ncclTopoTuneModel``): a base latency plus
one per step, an intra-node step on NVLink and an inter-node step on the network:

    ring  all_reduce   base + 2(n - nodes)·a_intra + 2(nodes-1)·a_inter   (2(n-1) steps)
    ring  AG / RS      base + (n - nodes)·a_intra + (nodes-1)·a_inter     (n-1 steps)
    all-to-all         base + (local-1)·a_intra + (n-local)·a_inter + max(S(local-1)/n / B_intra, S(n-local)/n / B_nic)
                       (n-1 point-to-point exchanges, each rank's own NIC carrying what leaves the node)
    send/recv          base + one step + S / B (NVLink inside a node, the sender's NIC across nodes)
    tree  all_reduce   base + 2((local-1)·a_intra + log2(nodes)·a_inter)  (NCCL's double binary tree)
    nvls  all_reduce   base + 2·a_intra, bandwidth term nbytes / B_intra  (one node; NVSwitch reduces)
    hierarchical       in-node reduce-scatter, across-node ring on 1/local of the data, in-node all-gather
                       (all-reduce; AG / RS use their one phase of each), phases one after another:
                       f·S/B_intra·(local-1)/local + f·(S/local)/B_nic·(nodes-1)/nodes per phase pair

Each ring time is taken with NCCL's two protocols where the fabric gives LL's terms: Simple (the
latencies above) and LL (low latency: its own smaller base and per-step latencies, at
``ll_bandwidth_fraction`` of the bandwidth), and the faster kept, as NCCL's tuner picks LL for small
messages and Simple for large ones. The tree's bandwidth term is the ring's (both pipeline the data over the same channels); it wins
on latency only. ``algorithm="auto"`` takes the faster of ring and tree, as NCCL's tuner does. NVLS
(NVLink SHARP, NVSwitch gen 3) is modelled at its ideal, S/B, but only when asked for
(``algorithm="nvls"``): no published figure bounds what it reaches, and the machine issue 19 measures
on runs with NCCL_NVLS_ENABLE=0.
All arguments broadcast over numpy arrays.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from hardware_specs.interconnect import COLLECTIVES, ClusterSpec

Algorithm = Literal["auto", "ring", "tree", "nvls", "hierarchical"]


def bus_factor(collective: str, n):
    """nccl-tests' bus-bandwidth correction factor (doc/PERFORMANCE.md, "Summary")."""
    n = np.asarray(n, dtype=np.float64)
    if collective == "all_reduce":
        return 2 * (n - 1) / n
    if collective in ("all_gather", "reduce_scatter", "all_to_all"):
        return (n - 1) / n
    if collective == "send_recv":
        return np.ones_like(n)
    raise ValueError(f"collective: unknown {collective!r}; allowed: {', '.join(COLLECTIVES)}")


def algorithm_bandwidth(nbytes, time_s):
    """nccl-tests' algbw = S / t, in B/s."""
    return np.asarray(nbytes, dtype=np.float64) / np.asarray(time_s, dtype=np.float64)


def bus_bandwidth(collective: str, nbytes, time_s, n):
    """nccl-tests' busbw = algbw x factor(collective, n), in B/s."""
    return algorithm_bandwidth(nbytes, time_s) * bus_factor(collective, n)


def group_span(size, stride, gpus_per_node):
    """(local, nodes): members per node and nodes spanned by ``size`` ranks ``stride`` apart.

    Ranks are numbered node by node (rank // gpus_per_node is the node). A group of ranks
    r, r + stride, ... has ``gpus_per_node // stride`` members per node while stride < gpus_per_node,
    else one.
    """
    size = np.asarray(size)
    stride = np.asarray(stride)
    local = np.where(stride < gpus_per_node, np.maximum(gpus_per_node // np.maximum(stride, 1), 1), 1)
    local = np.minimum(local, size)
    nodes = -(-size // local)
    return local, nodes


def _ring_bandwidth(cluster: ClusterSpec, collective: str, local, nodes):
    intra = cluster.intra_node.bandwidth_per_gpu_Bps * cluster.intra_node.efficiency_for(collective)
    inter = cluster.inter_node.bandwidth_per_gpu_Bps * cluster.inter_node.efficiency_for(collective)
    return np.where(nodes > 1, np.minimum(intra, local * inter), intra)


def collective_time(cluster: ClusterSpec, collective: str, nbytes, size, local=None, nodes=None,
                    algorithm: Algorithm = "auto"):
    """Seconds for one collective of ``nbytes`` (nccl-tests' S) over a group of ``size`` GPUs.

    ``local`` / ``nodes`` (members per node, nodes spanned) default to a contiguous group
    (``group_span(size, 1, gpus_per_node)``). A group of one costs 0. ``send_recv`` is one
    message between two ranks, on NVLink when ``nodes == 1`` and on the sender's NIC otherwise.
    """
    if collective not in COLLECTIVES:
        raise ValueError(f"collective: unknown {collective!r}; allowed: {', '.join(COLLECTIVES)}")
    if algorithm not in ("auto", "ring", "tree", "nvls", "hierarchical"):
        raise ValueError(f"algorithm: unknown {algorithm!r}; allowed: auto, ring, tree, nvls, hierarchical")
    S = np.asarray(nbytes, dtype=np.float64)
    n = np.asarray(size)
    if np.any(n < 1):
        raise ValueError(f"size: a group has at least 1 GPU, got {size!r}")
    if local is None or nodes is None:
        local, nodes = group_span(n, 1, cluster.gpus_per_node)
    local, nodes = np.asarray(local), np.asarray(nodes)
    intra, inter = cluster.intra_node, cluster.inter_node
    a_in, a_out = intra.latency_for(collective), inter.latency_for(collective)
    base = np.where(nodes > 1, inter.base_latency_s, intra.base_latency_s)
    B = _ring_bandwidth(cluster, collective, local, nodes)

    if collective == "send_recv":
        bw = np.where(nodes > 1, inter.bandwidth_per_gpu_Bps * inter.efficiency_for(collective),
                      intra.bandwidth_per_gpu_Bps * intra.efficiency_for(collective))
        t = base + np.where(nodes > 1, a_out, a_in) + S / bw
        return np.where(n > 1, t, 0.0)

    if collective == "all_to_all":
        # each rank keeps S/n, sends S(local-1)/n over NVLink and S(n-local)/n over its own NIC
        b_in = intra.bandwidth_per_gpu_Bps * intra.efficiency_for(collective)
        b_out = inter.bandwidth_per_gpu_Bps * inter.efficiency_for(collective)
        t_bw = np.maximum(S * (local - 1) / n / b_in, S * (n - local) / n / b_out)
        t = base + (local - 1) * a_in + (n - local) * a_out + t_bw
        return np.where(n > 1, t, 0.0)

    steps = 2 if collective == "all_reduce" else 1
    ring = base + steps * ((n - nodes) * a_in + (nodes - 1) * a_out) + bus_factor(collective, n) * S / B
    if intra.ll_latency_s is not None and inter.ll_latency_s is not None:
        ll_base = np.where(nodes > 1, inter.ll_base_latency_s or 0.0, intra.ll_base_latency_s or 0.0)
        frac = np.where(nodes > 1, min(intra.ll_bandwidth_fraction or 1.0, inter.ll_bandwidth_fraction or 1.0),
                        intra.ll_bandwidth_fraction or 1.0)
        ll = ll_base + steps * ((n - nodes) * intra.ll_latency_s + (nodes - 1) * inter.ll_latency_s) \
            + bus_factor(collective, n) * S / (B * frac)
        ring = np.minimum(ring, ll)
    candidates = {"ring": ring}
    if algorithm == "hierarchical":  # on request only: NCCL runs rings and trees, not this
        b_in = intra.bandwidth_per_gpu_Bps * intra.efficiency_for(collective)
        b_out = inter.bandwidth_per_gpu_Bps * inter.efficiency_for(collective)
        phases = 2 if collective == "all_reduce" else 1
        candidates["hierarchical"] = base + phases * (
            (local - 1) * a_in + (nodes - 1) * a_out
            + S * (local - 1) / local / b_in + (S / local) * (nodes - 1) / nodes / b_out)
    if collective == "all_reduce":
        log_nodes = np.log2(np.maximum(nodes, 1))
        candidates["tree"] = base + 2 * ((local - 1) * a_in + np.ceil(log_nodes) * a_out) + bus_factor(collective, n) * S / B
        if intra.nvls and algorithm == "nvls":
            b_in = intra.bandwidth_per_gpu_Bps * intra.efficiency_for(collective)
            candidates["nvls"] = np.where(nodes == 1, intra.base_latency_s + 2 * a_in + S / b_in, np.inf)
    if algorithm == "auto":
        t = np.minimum.reduce([np.broadcast_to(c, np.broadcast(*candidates.values()).shape) for c in candidates.values()])
    else:
        if algorithm not in candidates:
            raise ValueError(f"algorithm: {algorithm!r} does not apply to {collective} on {cluster.name}; "
                             f"allowed here: {', '.join(candidates)}")
        t = candidates[algorithm]
    return np.where(n > 1, t, 0.0)


__all__ = ["algorithm_bandwidth", "bus_bandwidth", "bus_factor", "collective_time", "group_span"]
