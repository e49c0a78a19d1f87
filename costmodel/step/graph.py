"""The step as a networkx DAG of op instances, and its schedule on the GPU (for timelines and traces).

``step_graph(result)`` expands a ``StepResult``'s rows (per-layer ops counted once) into one node
per op instance, ``L3.qkv`` for layer 3's QKV projection, in launch order. Edges: each op feeds
the next; a residual add also depends on its block's input (the skip connection); the backward
of an op depends on its forward (autograd saves it). Node attributes: name, layer, part, kernels,
flops, hbm_bytes, gpu_s (one instance's GPU time), host_s (its eager issue cost), bound.

``schedule(graph, launch)`` places every node on a GPU timeline the way
``costmodel.step.predict`` times the step: eager, node i is issued when the host has spent
host_s on the nodes before it and starts when both it is issued and the GPU is free; a CUDA
graph replays its nodes back to back after one launch.
"""

from __future__ import annotations

import networkx as nx
import numpy as np


def _scalar(x) -> float:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim:
        raise ValueError("step_graph: the step was predicted over arrays; give scalar batch and seq_len")
    return float(a)


def step_graph(result) -> nx.DiGraph:
    """One node per op instance of ``result`` (a scalar StepResult), in launch order."""
    from costmodel.models import load_model

    cfg = load_model(result.model)
    g = nx.DiGraph()
    order = []
    rows = result.ops
    for part in ("fwd", "bwd", "optimizer"):
        part_rows = [r for r in rows if r.part == part]
        pre = [r for r in part_rows if r.layer is None and _before_layers(r, part_rows)]
        layer = [r for r in part_rows if r.layer is not None]
        post = [r for r in part_rows if r.layer is None and not _before_layers(r, part_rows)]
        layers = range(cfg.n_layers) if part != "bwd" else range(cfg.n_layers - 1, -1, -1)
        seq = [(r, None) for r in pre] + [(r, l) for l in layers for r in layer] + [(r, None) for r in post]
        for r, l in seq:
            n = r.count // (cfg.n_layers if r.layer is not None else 1)
            key = f"{part}:{'' if l is None else f'L{l}.'}{r.name}"
            g.add_node(key, name=r.name, layer=l, part=part, kernels=int(np.asarray(r.kernels) // max(r.count, 1) * n),
                       flops=_scalar(r.flops) / r.count * n, hbm_bytes=_scalar(r.bytes["hbm"]) / r.count * n,
                       gpu_s=_scalar(r.time_s) / r.count * n, host_s=r.host_s * n, bound=str(r.bound))
            if order:
                g.add_edge(order[-1], key, kind="next")
            order.append(key)
            if r.name.endswith("residual") and part == "fwd" and l is not None:
                block_in = f"fwd:L{l}.attn_norm" if r.name == "attn_residual" else f"fwd:L{l}.attn_residual"
                if block_in in g:
                    g.add_edge(block_in, key, kind="skip")
    for key in order:
        if key.startswith("bwd:") and not key.startswith("bwd:recompute"):
            fwd_key = "fwd:" + key[4:].rsplit(".", 1)[0]
            if fwd_key in g:
                g.add_edge(fwd_key, key, kind="saved")
    g.graph["order"] = order
    return g


def _before_layers(row, part_rows) -> bool:
    first = next((i for i, r in enumerate(part_rows) if r.layer is not None), len(part_rows))
    return part_rows.index(row) < first


def schedule(g: nx.DiGraph, launch: str, graph_launch_s: float = 0.0, graph_per_kernel_s: float = 0.0) -> list[dict]:
    """[{node, start_s, end_s, issue_s}] on the GPU timeline (module docstring); in a CUDA graph each
    kernel is followed by ``graph_per_kernel_s`` of idle (``costmodel/step/launch.py``)."""
    out, host_t, gpu_t = [], 0.0, graph_launch_s if launch == "graph" else 0.0
    for key in g.graph["order"]:
        a = g.nodes[key]
        if launch == "eager":
            host_t += a["host_s"]
            start = max(host_t, gpu_t)
        else:
            start = gpu_t
        gpu_t = start + a["gpu_s"] + (graph_per_kernel_s * a["kernels"] if launch == "graph" else 0.0)
        out.append({"node": key, "start_s": start, "end_s": gpu_t, "issue_s": host_t if launch == "eager" else 0.0,
                    **{k: a[k] for k in ("name", "layer", "part", "kernels", "bound")}})
    return out


__all__ = ["schedule", "step_graph"]
