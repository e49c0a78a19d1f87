"""Launch and host cost of a step, in one place: how kernels' GPU times become a wall time.

    CUDA graph   graph_launch_s + Σ kernel GPU time + graph_per_kernel_s · kernels
                 (``simulators.memory_ops.graph_time``): the idle between a graph's kernels that the
                 op models, timed as R copies of one kernel, do not hold.
    eager        the host issues the kernels in order (``simulators.memory_ops.eager_time``'s rule):
                 kernel i starts at max(its issue time, the end of kernel i-1). The host's cost of
                 one op is its micro-loop cost (a cuBLAS call, an SDPA call, each kernel at its
                 family's cost), plus, in an inference forward, ``host_per_block_s`` per transformer
                 block spread over the block's ops (the block's nn.Module calls and kernel-less
                 views, splits and transposes); a training step's op costs
                 ``host_per_kernel_autograd_s`` a kernel (autograd, fused AdamW).

The fitted numbers are the GPU host's (``hardware_specs/op_timing.py``, ``LaunchModel``): micro-loops
for the per-op costs, the step-level calibration run of synthetic decoders for graph_per_kernel_s,
host_per_block_s and host_per_kernel_autograd_s (``costmodel/validation/step_calib_fit.py``).
"""

from __future__ import annotations

import numpy as np

from hardware_specs.op_timing import memory_ops_model
from simulators.memory_ops import graph_time


def op_host_s(spec, op, train: bool) -> float:
    """CPU seconds eager PyTorch spends issuing one instance of ``op`` (micro-loop costs; the
    per-block share is added by ``eager_step_time``)."""
    launch = memory_ops_model(spec).launch
    if train and launch.host_per_kernel_autograd_s is not None:
        return launch.host_per_kernel_autograd_s * op.kernels
    if op.kind == "gemm":
        return launch.host_per_library_call_s or launch.host_per_kernel_s
    if op.kind == "attention":
        return launch.host_attention_s or launch.host_per_library_call_s or launch.host_per_kernel_s
    return sum(k * launch.host_by_family.get(f, launch.host_per_kernel_s) for f, k, _ in op.parts)


def block_host_s(spec, train: bool) -> float:
    """Host seconds per transformer block of an eager inference forward beyond its ops' own (0 in training,
    whose per-kernel autograd cost was fitted on whole steps)."""
    launch = memory_ops_model(spec).launch
    if train and launch.host_per_kernel_autograd_s is not None:
        return 0.0
    return launch.host_per_block_s or 0.0


def eager_segments_time(segments):
    """Eager wall time over segments [(gpu_s list, host_s list, repeat)] (memory_ops.eager_time's
    rule, with a segment of r identical repeats in closed form: its kernels' max of issue + tail
    grows by (r - 1) · max(host per repeat, GPU per repeat))."""
    total_host = [sum(hs) * r for g, hs, r in segments]
    total_gpu = [sum(g) * r for g, hs, r in segments]
    best = None
    for i, (g, hs, r) in enumerate(segments):
        if not g:
            continue
        before = sum(total_host[:i])
        after = sum(total_gpu[i + 1:])
        H, G = sum(hs), sum(g)
        h_cum, local, suffix = 0.0, None, G
        for gj, hj in zip(g, hs):
            h_cum = h_cum + hj
            v = h_cum + suffix
            local = v if local is None else np.maximum(local, v)
            suffix = suffix - gj
        val = before + after + local + (r - 1) * np.maximum(H, G)
        best = val if best is None else np.maximum(best, val)
    return best


def layer_hosts(spec, ops, train: bool, layer: bool) -> list:
    """Host seconds of each op of a segment; a layer segment's ops share the block's extra host cost."""
    hosts = [op_host_s(spec, op, train) for op in ops]
    extra = block_host_s(spec, train) if layer and ops else 0.0
    return [h + extra / len(ops) for h in hosts]


def graph_step_time(spec, gpu_s, kernels):
    """A step replayed as one CUDA graph: its kernels' GPU time and count."""
    return graph_time(spec, np.asarray(gpu_s)[..., None], np.asarray([kernels]))


__all__ = ["block_host_s", "eager_segments_time", "graph_step_time", "layer_hosts", "op_host_s"]
