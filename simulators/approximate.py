"""Approximate attention (Linformer, Performer, Reformer) as eager PyTorch runs it: a graph of kernels, timed.

Each method's module (``linformer``, ``performer``, ``reformer``) lists the kernels its plain
PyTorch program (``costmodel/approx_torch.py``) launches, one node per kernel, in the
convention of ``simulators/standard.py``: nodes are kernels, edges are tensors, a kernel
reads every tensor on its in-edges from DRAM and writes every tensor on its out-edges
(tensor-level bytes; a GEMM's operand re-reads hit L2). A node may add ``reread_bytes``
for traffic the tensor-level rule misses (a gather that reads its source once per hash
round; a radix sort's passes). This module builds those graphs, counts them into
``KernelCount`` values, times them and returns an ``AttentionResult``.

Time of one kernel (GPU time, no launch):

* GEMM: ``simulators.matmul.gemm_time`` (cuBLAS tile quantization, waves, fitted
  efficiency) where that model exists; otherwise the roofline of ``timing.time_kernel``.
* anything else: ``simulators.memory_ops.memory_op_time`` (latency + bytes / bandwidth)
  or the roofline, whichever applies, and no less than its FP32 / SFU time.

The call's time is eager PyTorch's: kernel i is issued after the host has spent
``host_per_kernel_s`` on each kernel up to i, and starts when both it is issued and
kernel i - 1 has ended (``memory_ops.eager_time``). ``gpu_time_s`` is the kernels' sum,
what a timer behind a queue that is already full sees.

Memory footprint: tensors live from the kernel that writes them to the last kernel that
reads them (inputs, parameters and the output throughout): ``extra["memory"]``.
"""

from __future__ import annotations

import math

import networkx as nx
import numpy as np

from simulators import standard
from simulators.results import AttentionResult, KernelCount, totals
from simulators.timing import time_kernel

INPUTS = ("Q", "K", "V")
APPROX_IMPLS = ("linformer", "performer", "reformer")
INT32, INT64, BOOL = 4, 8, 1
_BLOCK = 1024  # elements per block of an elementwise kernel (grid size, informational)
_GEMM_TILE = 128  # output tile rows/cols of a GEMM block (grid size, informational)

ASSUMPTIONS = {
    "kernels": "one node per CUDA kernel of the plain PyTorch program (costmodel/approx_torch.py), eager, unfused",
    "flops": "2 per multiply-accumulate on tensor cores (matmul_flops); 1 per element for each other arithmetic "
             "or compare op (other_flops); exp/log counted apart (exp_ops); a sort counts N log2 N compares",
    "hbm_bytes": "tensor-level: each kernel reads its input tensors and writes its outputs once (GEMM operand "
                 "re-reads hit L2); plus stated re-reads (gathers across hash rounds, radix-sort passes)",
    "time_s": "eager PyTorch: kernels issued host_per_kernel_s apart, each starting when issued and after the one "
              "before it; GEMMs by simulators.matmul, other kernels by simulators.memory_ops (roofline where "
              "those models are absent)",
    "memory": "peak of the bytes of live tensors in launch order (forward only, no autograd saves)",
}


class KernelGraph:
    """Builder of one method's kernel graph: tensors with sizes, kernels with their work."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.e = cfg.element_bytes
        bh, n, d = cfg.batch_heads, cfg.seq_len, cfg.head_dim
        self.g = nx.DiGraph(tensors={})
        for name in INPUTS:
            self.tensor(name, bh * n * d)
        self.params: list[str] = []

    def tensor(self, name: str, elements: float, element_bytes: int | None = None) -> str:
        self.g.graph["tensors"][name] = int(elements * (self.e if element_bytes is None else element_bytes))
        return name

    def param(self, name: str, elements: float) -> str:
        """A tensor that exists before the call (a projection, the random features)."""
        self.params.append(name)
        return self.tensor(name, elements)

    def _add(self, name, kind, reads, writes, grid, matmul=0.0, other=0.0, exp=0.0, reread_bytes=0, gemm=None,
             note=""):
        self.g.add_node(name, kind=kind, pass_="fwd", reads=tuple(reads), writes=tuple(writes), grid=grid,
                        matmul_flops=float(matmul), other_flops=float(other), exp_ops=float(exp),
                        reread_bytes=int(reread_bytes), gemm=gemm, note=note, members=(name,), order=len(self.g))

    def gemm(self, name: str, reads, out: str, m: int, n: int, k: int, batch: int = 1, note: str = ""):
        """``batch`` products C (m x n) = A (m x k) B (k x n): 2 m n k batch FLOPs on tensor cores."""
        self.tensor(out, batch * m * n)
        grid = (math.ceil(n / _GEMM_TILE), math.ceil(m / _GEMM_TILE), batch)
        self._add(name, "gemm", reads, [out], grid, matmul=2.0 * m * n * k * batch, gemm=(m, n, k, batch),
                  note=note or f"{batch} x ({m} x {k}) @ ({k} x {n})")

    def op(self, name: str, kind: str, reads, out: str | list[tuple[str, float, int | None]], elements: float,
           out_elements: float | None = None, out_bytes: int | None = None, other: float = 1.0, exp: float = 0.0,
           reread_bytes: int = 0, note: str = ""):
        """A memory-bound kernel over ``elements`` elements (its largest operand); ``other`` / ``exp``
        per element. ``out``: the output tensor (``out_elements`` of ``out_bytes``), or a list of
        (name, elements, element bytes) for several."""
        outs = out if isinstance(out, list) else [(out, elements if out_elements is None else out_elements, out_bytes)]
        for t, n_el, nb in outs:
            self.tensor(t, n_el, nb)
        self._add(name, kind, reads, [t for t, _, _ in outs], (max(1, math.ceil(elements / _BLOCK)),),
                  other=other * elements, exp=exp * elements, reread_bytes=reread_bytes, note=note or kind)

    def finish(self) -> nx.DiGraph:
        standard.connect(self.g, inputs=INPUTS + tuple(self.params), outputs=("O",))
        return self.g


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


def _models():
    """The step branch's GEMM and memory-op models, or None where they are not installed."""
    try:
        from simulators import matmul, memory_ops
    except ImportError:
        return None
    return matmul, memory_ops


def time_kernels(spec, kcs: list[KernelCount], g: nx.DiGraph, dtype: str):
    """(KernelResults with GPU times, the eager wall time of the sequence, the host time per kernel)."""
    models = _models()
    results, gpu = [], []
    for kc in kcs:
        r = time_kernel(spec, kc, dtype, True)  # roofline; fills grid, waves, bytes
        times = dict(r.times_s)
        if models is not None:
            matmul, memory_ops = models
            nbytes = kc.hbm_read_bytes + kc.hbm_write_bytes
            if g.nodes[kc.name]["kind"] == "gemm":
                m, n, k, batch = g.nodes[kc.name]["gemm"]
                times = {"gemm": float(matmul.gemm_time(spec, m, n, k, dtype, batch=batch))}
            else:
                times = {"memory_op": float(memory_ops.memory_op_time(spec, nbytes)),
                         **{key: v for key, v in r.times_s.items() if key not in ("hbm", "l2")}}
        bound = max(times, key=times.get)
        gpu.append(times[bound])
        results.append(r.model_copy(update={"times_s": times, "bound": bound, "time_s": times[bound],
                                            "launch_s": 0.0}))
    if models is not None:
        from hardware_specs.op_timing import memory_ops_model

        host = memory_ops_model(spec).launch.host_per_kernel_s
        wall = float(models[1].eager_time(np.array(gpu), host))
    else:
        host = spec.kernel_launch_s
        issue = np.cumsum(np.full(len(gpu), host))
        tail = np.cumsum(np.array(gpu)[::-1])[::-1]
        wall = float(np.max(issue + tail)) if gpu else 0.0
    return results, wall, host


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
                         "in costmodel/approx_torch.py but its kernels are not simulated)")
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
    kernels, wall, host = time_kernels(spec, counts(g), g, cfg.dtype)
    tot = totals(kernels)
    tot["time_s"] = wall
    extra = {"memory": peak_memory(g), "params": params, "host_per_kernel_s": host,
             "timing_models": "simulators.matmul + simulators.memory_ops" if _models() else "roofline (timing.py)"}
    return AttentionResult(gpu=spec.name, impl=impl, pass_=pass_, path="tensor-level graph", config=cfg.model_dump(),
                           schedule=params, assumptions=ASSUMPTIONS, kernels=kernels, extra=extra, **tot)
