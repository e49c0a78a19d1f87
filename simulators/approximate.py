"""Approximate attention (Linformer, Performer, Reformer) as eager PyTorch runs it: a graph of kernels, timed.

Each method's module (``linformer``, ``performer``, ``reformer``) lists the kernels its plain
PyTorch program (``costmodel/validation/approx_torch.py``) launches, one node per kernel, in the
convention of ``simulators/standard.py``: nodes are kernels, edges are tensors, a kernel
reads every tensor on its in-edges from DRAM and writes every tensor on its out-edges
(tensor-level bytes; a GEMM's operand re-reads hit L2). A node may add ``reread_bytes``
for traffic the tensor-level rule misses (a gather that reads its source once per hash
round; a radix sort's passes). This module builds those graphs, counts them into
``KernelCount`` values, times them and returns an ``AttentionResult``.

Time of one kernel (GPU time): ``latency_s`` per launch plus the longer of its tensor-level
bytes at the sustained bandwidth of its kernel family (``kernel_graph.KERNEL_CLASSES``) and its output
elements at the family's time per output (GEMMs: or their FLOPs at the tensor peak), the
families' two ceilings fitted from Nsight Compute
durations on the GPU (``hardware_specs/eager_ops.py``, ``costmodel/validation/approx_fit.py``). A
broadcast subtraction, a reduction over a 64-wide last dimension, a gather or a roll move
their bytes at a third to a fifth of copy speed: eager PyTorch's cost is in which kernels it
launches, not only in how many bytes they move.

The call's time is eager PyTorch's: the larger of (a) the host-bound sequence, kernel i issued
after the host has spent ``host_per_op_s`` on each op up to i and started when both it is
issued and kernel i - 1 has ended (``eager_time``), and (b) the GPU-bound one, the kernels'
sum plus ``call_overhead_s`` and ``gap_per_kernel_s`` per launch (both fitted). ``gpu_time_s``
is the kernels' sum, what a timer behind a queue that is already full sees.

Memory footprint: tensors live from the kernel that writes them to the last kernel that
reads them (inputs, parameters and the output throughout): ``extra["memory"]``.
"""

from __future__ import annotations


import networkx as nx
import numpy as np

from simulators import standard
from simulators.kernel_graph import INPUTS
from simulators.results import AttentionResult, KernelCount, totals
from hardware_specs.roofline import matmul_unit
from simulators.timing import time_kernel

APPROX_IMPLS = ("linformer", "performer", "reformer")

ASSUMPTIONS = {
    "kernels": "one node per CUDA kernel of the plain PyTorch program (costmodel/validation/approx_torch.py), eager, unfused",
    "flops": "2 per multiply-accumulate on tensor cores (matmul_flops); 1 per element for each other arithmetic "
             "or compare op (other_flops); exp/log counted apart (exp_ops); a sort counts N log2 N compares",
    "hbm_bytes": "tensor-level: each kernel reads its input tensors and writes its outputs once (GEMM operand "
                 "re-reads hit L2); plus stated re-reads (gathers across hash rounds, radix-sort passes)",
    "time_s": "eager PyTorch: kernels issued host_per_op_s apart, each starting when issued and after the one "
              "before it; a kernel's GPU time = latency + bytes / its family's fitted bandwidth (GEMMs: or FLOPs "
              "at the tensor peak) (hardware_specs/eager_ops.py)",
    "memory": "peak of the bytes of live tensors in launch order (forward only, no autograd saves)",
}


def counts(g: nx.DiGraph) -> list[KernelCount]:
    """KernelCount per kernel node, in launch order (tensor-level bytes plus each node's re-reads)."""
    out = []
    for node in standard.kernels_in_pass(g, "fwd"):
        a = g.nodes[node]
        read, write, reads, writes = standard.kernel_traffic(g, node)
        read += a["reread_bytes"]
        threads = 128 if a["kind"] == "gemm" else 256
        out.append(KernelCount(
            name=node, grid=a["grid"], schedule=f"{a['kind']}: {a['note']}; reads {', '.join(reads)}; "
                                                f"writes {', '.join(writes)}",
            matmul_flops=a["matmul_flops"], other_flops=a["other_flops"], exp_ops=a["exp_ops"],
            global_read_bytes=read, global_write_bytes=write, hbm_read_bytes=read, hbm_write_bytes=write,
            smem_bytes=0.0, smem_per_block_bytes=0, threads_per_block=threads, blocks_per_sm=1))
    return out


def peak_memory(g: nx.DiGraph) -> dict:
    """Peak live bytes in launch order: a tensor lives from its writer to its last reader."""
    tensors = g.graph["tensors"]
    order = standard.kernels_in_pass(g, "fwd")
    last_use = {}
    for i, node in enumerate(order):
        for t in g.nodes[node]["reads"]:
            last_use[t] = i
    pinned = set(INPUTS) | {t for t in tensors if t not in last_use and t not in
                            {w for n in order for w in g.nodes[n]["writes"]}} | {"O"}
    pinned |= {t for _, _, d in g.out_edges("inputs", data=True) for t in d["tensors"]}
    live = {t for t in pinned if t in tensors and t != "O"}
    peak, peak_at = sum(tensors[t] for t in live), "start"
    for i, node in enumerate(order):
        live |= set(g.nodes[node]["writes"])
        now = sum(tensors[t] for t in live)
        if now > peak:
            peak, peak_at = now, node
        live -= {t for t in list(live) if last_use.get(t, -1) <= i and t not in pinned and t != "O"}
    largest = max(tensors, key=tensors.get)
    return {"peak_bytes": int(peak), "peak_at": peak_at, "inputs_bytes": int(sum(tensors[t] for t in pinned
                                                                                if t in tensors and t != "O")),
            "largest_tensor": largest, "largest_tensor_bytes": int(tensors[largest])}


def kernel_gpu_time(spec, ops, node: dict, kc: KernelCount, dtype: str) -> tuple[float, dict[str, float]]:
    """GPU seconds of one kernel node: latency per launch + the longer of its bytes at its family's
    bandwidth and its output elements at the family's time per output (a reduction's rows, a mask's
    elements); GEMMs: or their FLOPs at the tensor peak; (time, per-term times)."""
    nbytes = kc.hbm_read_bytes + kc.hbm_write_bytes
    fam = ops.families.get(node["cls"])
    if fam is None:
        raise ValueError(f"gpu: the eager-ops fit for {spec.name} has no family {node['cls']!r}")
    times = {"latency": ops.latency_s * node["launches"],
             node["cls"]: max(nbytes / fam.bandwidth_Bps, node["out_elements"] * fam.per_output_s)}
    if node["kind"] == "gemm":
        times["tensor"] = kc.matmul_flops / spec.peak_flops_per_s[matmul_unit(dtype, True)]
    return times["latency"] + max(v for k, v in times.items() if k != "latency"), times


def eager_time(gpu_s, host_s: float) -> float:
    """Wall time of kernels issued in order by a host spending ``host_s`` on each: kernel i is issued at
    (i + 1) host_s and starts then or when kernel i - 1 ends, whichever is later."""
    gpu_s = np.asarray(gpu_s, dtype=np.float64)
    if gpu_s.size == 0:
        return 0.0
    issue = host_s * np.arange(1, gpu_s.size + 1)
    tail = np.cumsum(gpu_s[::-1])[::-1]
    return float(np.max(issue + tail))


def time_kernels(spec, kcs: list[KernelCount], g: nx.DiGraph, dtype: str):
    """(KernelResults with GPU times, the eager wall time of the sequence, the fit used)."""
    from hardware_specs.eager_ops import eager_ops

    ops = eager_ops(spec)
    results, gpu = [], []
    for kc in kcs:
        r = time_kernel(spec, kc, dtype, True)  # the roofline's fields: grid, waves, bytes
        t, times = kernel_gpu_time(spec, ops, g.nodes[kc.name], kc, dtype)
        gpu.append(t)
        bound = max((k for k in times if k != "latency"), key=times.get)
        results.append(r.model_copy(update={"times_s": times, "bound": bound, "time_s": t, "launch_s": 0.0}))
    launches = sum(g.nodes[k.name]["launches"] for k in kcs)
    queued = ops.call_overhead_s + sum(gpu) + ops.gap_per_kernel_s * launches  # the GPU never waits on the host
    return results, max(eager_time(gpu, ops.host_per_op_s), queued), ops


METHOD_PARAMS = {"linformer": ("proj_len",), "performer": ("features", "chunk"),
                 "reformer": ("hash_rounds", "bucket_size")}


def method_params(impl: str, schedule: dict) -> dict:
    """The method's parameters out of simulate_attention's keyword arguments; a schedule knob set
    away from its default is an error (it does not apply to an eager PyTorch program)."""
    from simulators.config import ScheduleConfig

    out = {}
    for key, value in schedule.items():
        if key in METHOD_PARAMS[impl]:
            out[key] = value
        elif key in ScheduleConfig.model_fields:
            default = ScheduleConfig.model_fields[key].default
            if value is not None and value != default and not (key == "tensor_cores" and value):
                raise ValueError(f"{key.replace('_', '-')}: {value!r} does not apply to {impl} (an eager PyTorch "
                                 f"program, not a tiled kernel); leave it unset")
        else:
            allowed = ", ".join(METHOD_PARAMS[impl])
            raise ValueError(f"{key}: not a parameter of {impl}; allowed: {allowed}")
    return out


def simulate_approximate(spec, impl: str, cfg, pass_: str = "fwd", proj_len: int = 256, features: int = 256,
                         chunk: int = 128, hash_rounds: int = 4, bucket_size: int = 64) -> AttentionResult:
    """Build, count and time ``impl``'s kernels for ``cfg`` (an AttentionConfig) on ``spec``.

    Defaults: Linformer k = 256 (the paper's largest k, §5 Table/Figure 3), Performer m = 256 features
    (d log d rounded up for d = 64) with 128-token prefix-sum chunks, Reformer 4 hash rounds of
    64-token buckets (§5 uses 1 to 8 rounds; 64 is the common chunk length).
    """
    from simulators import linformer, performer, reformer

    if pass_ != "fwd":
        raise ValueError(f"pass: {pass_!r} is not modelled for {impl}; 'fwd' is (backward runs through autograd "
                         "in costmodel/validation/approx_torch.py but its kernels are not simulated)")
    if cfg.kv_heads != cfg.heads or cfg.kv_len != cfg.seq_len:
        raise ValueError(f"kv_heads / kv_len: {impl} is modelled for self-attention with kv_heads = heads and "
                         f"kv_len = seq_len; got kv_heads={cfg.kv_heads}, kv_len={cfg.kv_len}")
    if cfg.window is not None or cfg.dropout:
        raise ValueError(f"window / dropout: {impl} has neither; leave them unset")
    if impl == "linformer":
        kg, params = linformer.graph(cfg, proj_len), {"proj_len": proj_len}
    elif impl == "performer":
        kg, params = performer.graph(cfg, features, chunk), {"features": features, "chunk": chunk}
    elif impl == "reformer":
        kg, params = reformer.graph(cfg, hash_rounds, bucket_size), {"hash_rounds": hash_rounds,
                                                                     "bucket_size": bucket_size}
    else:
        raise ValueError(f"impl: {impl!r} is not allowed; one of {', '.join(APPROX_IMPLS)} is")
    g = kg.finish()
    kernels, wall, ops = time_kernels(spec, counts(g), g, cfg.dtype)
    tot = totals(kernels)
    tot["time_s"] = wall
    extra = {"memory": peak_memory(g), "params": params, "host_per_kernel_s": ops.host_per_op_s,
             "eager_ops": ops.assumed or f"fitted on {ops.spec} ({ops.measured.date if ops.measured else '?'})",
             "launches": sum(g.nodes[k.name]["launches"] for k in kernels)}
    return AttentionResult(gpu=spec.name, impl=impl, pass_=pass_, path="tensor-level graph", config=cfg.model_dump(),
                           schedule=params, assumptions=ASSUMPTIONS, kernels=kernels, extra=extra, **tot)
