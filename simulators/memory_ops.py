"""Memory-bound kernel time (elementwise ops, reductions, copies) from a bandwidth-vs-bytes curve.

A kernel that moves n bytes (read + written) takes

    time_s = latency_s + n / bandwidth_Bps

so its achieved bandwidth n / time_s climbs from ~0 (a few KB: the fixed latency of
ramping up a grid and draining it binds) to ``bandwidth_Bps`` (hundreds of MB). This is
Hockney's (r_inf, n_1/2) model of a vector pipeline (Hockney & Jesshope, "Parallel
Computers 2", 1988, §1.3.3: t = (n + n_1/2) / r_inf, with n_1/2 = latency_s · bandwidth_Bps
the bytes at which half the asymptotic bandwidth is reached). Both parameters are fitted
per GPU (``hardware_specs/op_timing.py``); a spec without a fit gets stated defaults.

``launched_time`` adds what launching costs: eager PyTorch spends ``host_per_kernel_s`` of
CPU time per kernel, which hides behind GPU work only when the GPU work is longer; a CUDA
graph spaces its kernels ``graph_per_kernel_s`` apart and costs ``graph_launch_s`` per replay.
"""

from __future__ import annotations

import numpy as np

from hardware_specs.op_timing import memory_ops_model


def memory_op_time(spec, n_bytes, kernels=1, family: str = "vectorized"):
    """GPU seconds of ``kernels`` memory-bound kernels of ``family`` moving ``n_bytes`` in total.

    Each kernel moves n_bytes / kernels; one that moves no more than ``l2_resident_bytes`` runs at
    the L2 bandwidth (its operands were just written by the kernel before it and are still in
    L2). A family with its own fit (``MemoryOpsModel.families``) uses its curve; any other, the
    generic one. Arrays broadcast.
    """
    mem = memory_ops_model(spec)
    n_bytes = np.asarray(n_bytes, dtype=np.float64)
    if np.any(n_bytes < 0):
        raise ValueError(f"memory_op_time: n_bytes must be >= 0, got {n_bytes.min()}")
    fam = mem.families.get(family)
    lat, bw = (fam.latency_s, fam.bandwidth_Bps) if fam else (mem.latency_s, mem.bandwidth_Bps)
    l2 = (fam.l2_bandwidth_Bps if fam else None) or mem.l2_bandwidth_Bps
    per = n_bytes / max(kernels, 1)
    if mem.l2_resident_bytes is not None and l2 is not None:
        bw = np.where(per <= mem.l2_resident_bytes, l2, bw)
    t = kernels * lat + n_bytes / bw
    if fam is not None and len(fam.table_bytes) >= 2:
        xb, ys = np.log(fam.table_bytes), np.log(fam.table_s)
        lp = np.log(np.maximum(per, 1.0))
        inside = (lp >= xb[0]) & (lp <= xb[-1])
        t = np.where(inside, kernels * np.exp(np.interp(lp, xb, ys)), t)
    return t


def forward_softmax_kernel(L: int, element_bytes: int) -> str:
    """``warp`` (softmax_warp_forward, a warp a row) while L <= 2048 and L * element_bytes <= 8192, else
    ``block`` (a block a row): torch's forward choice (aten/src/ATen/native/cuda/SoftMax.cu, host_softmax,
    torch 2.11 as Nsight Compute shows it: softmax_warp_forward<.., 11> at L 1280-2048, cunn_SoftMaxForwardReg
    from 2304)."""
    return "warp" if L <= 2048 and L * element_bytes <= 8192 else "block"


def precision_class(element_bytes: int) -> str:
    """``fp32`` (4-byte elements and wider) or ``bf16`` (any 16-bit dtype): the key of per-dtype fits."""
    return "fp32" if element_bytes >= 4 else "bf16"


def softmax_reg_count(L: int, element_bytes: int) -> int | None:
    """reg_cnt of torch's cunn_SoftMaxForwardReg for rows of L elements, or None where torch runs another
    softmax kernel (the warp kernel, ``forward_softmax_kernel``; above it a block of min(L, 1024) threads
    rounded up to a warp, and the register variant while potential_register_count = ceil(L / block) < 10,
    else the shared-memory or plain variant)."""
    if forward_softmax_kernel(L, element_bytes) == "warp":
        return None
    block = min(1024, -(-L // 32) * 32)
    c = -(-L // block)
    return c if c < 10 else None


def softmax_block_time(spec, rows, L: int, element_bytes: int, model=None):
    """GPU seconds of one cunn_SoftMaxForwardReg launch over ``rows`` rows of ``L`` elements, or None where
    torch runs another kernel or the spec has no ``memory_ops.softmax_block`` fit: waves of
    SMs x blocks_per_sm rows, each wave a block's time (``SoftmaxBlockModel``)."""
    c = softmax_reg_count(L, element_bytes)
    sm = model or memory_ops_model(spec).softmax_block
    if c is None or sm is None:
        return None
    bps = 2 if c <= sm.two_block_max_reg_cnt else 1
    waves = np.ceil(np.asarray(rows, dtype=np.float64) / (spec.sm_count * bps))
    rate = sm.sm_element_rate_per_s if bps == 2 else sm.one_block_element_rate_per_s
    return waves * (sm.latency_s + bps * L / rate)


def softmax_masked_s(spec, masked_elements, kernel: str, element_bytes: int):
    """GPU seconds torch's softmax ``kernel`` (``warp`` | ``block``) spends beyond its unmasked time on
    ``masked_elements`` -inf entries of its input: masked / rate (``memory_ops.softmax_masked``, fitted per
    kernel and dtype); 0 where the spec has no fit or none for that kernel and dtype."""
    if kernel not in ("warp", "block"):
        raise ValueError(f"softmax_masked_s: kernel {kernel!r} is not 'warp' or 'block'")
    sm = memory_ops_model(spec).softmax_masked
    rate = sm.masked_element_rate_per_s.get(f"{kernel}_{precision_class(element_bytes)}") if sm else None
    masked = np.asarray(masked_elements, dtype=np.float64)
    return masked / rate if rate else 0.0 * masked


def half_bandwidth_bytes(spec) -> float:
    """n_1/2: the kernel size at which half the asymptotic bandwidth is reached (Hockney)."""
    mem = memory_ops_model(spec)
    return mem.latency_s * mem.bandwidth_Bps


def eager_time(gpu_s, host_s):
    """Wall time of kernels issued in order by a host that spends ``host_s[i]`` on kernel i.

    Kernel i is issued at I_i = host_s[0] + ... + host_s[i] and starts at max(I_i, end of
    kernel i-1), so the last one ends at max_i (I_i + gpu_s[i] + ... + gpu_s[-1]): the GPU
    waits on the host wherever kernels are shorter than their launch. The kernel axis is the
    last one; other axes broadcast.
    """
    gpu_s = np.asarray(gpu_s, dtype=np.float64)
    host_s = np.broadcast_to(np.asarray(host_s, dtype=np.float64), gpu_s.shape)
    issue = np.cumsum(host_s, axis=-1)
    tail = np.flip(np.cumsum(np.flip(gpu_s, axis=-1), axis=-1), axis=-1)
    return np.max(issue + tail, axis=-1)


def graph_time(spec, gpu_s, kernels):
    """A CUDA-graph replay: launch once, then the kernels back to back ``graph_per_kernel_s`` apart."""
    launch = memory_ops_model(spec).launch
    return launch.graph_launch_s + np.sum(gpu_s, axis=-1) + launch.graph_per_kernel_s * np.sum(kernels, axis=-1)


__all__ = ["eager_time", "forward_softmax_kernel", "graph_time", "half_bandwidth_bytes", "memory_op_time",
           "precision_class", "softmax_block_time", "softmax_masked_s", "softmax_reg_count"]
