"""``predict_step`` / ``predict_batch``: time, throughput and peak memory of one step.

A step is the op list of ``costmodel/step/ops.py`` timed op by op:

    GEMMs           ``simulators.matmul.gemm_time`` (tiles, waves, split-K, fitted efficiency)
    memory-bound    ``simulators.memory_ops.memory_op_time`` (latency + bytes / bandwidth)
    attention       ``costmodel/step/attention.py`` (fused SDPA kernel)

and launched either eagerly (the host issues each op; the GPU idles where kernels are shorter
than their launch) or as one CUDA graph: ``costmodel/step/launch.py`` holds both rules and the
host / in-graph costs. Every amount broadcasts over numpy arrays of batch and seq_len.
No per-model factor: the only fitted numbers are the GPU's (``hardware_specs/op_timing.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from costmodel.calculator_io import check, to_value
from costmodel.flops import mean_keys_per_query
from costmodel.models import load_model
from costmodel.params import count_params
from costmodel.step.attention import attention_hbm_bytes, attention_time
from costmodel.step.launch import eager_segments_time, graph_step_time, layer_hosts
from costmodel.step.memory import inference_memory, training_memory_terms
from costmodel.step.sdpa_dispatch import default_sdpa_backend
from costmodel.step.ops import Op, Options, Tokens, backward_ops, forward_ops, optimizer_ops, recompute_ops
from hardware_specs.dtypes import dtype_bytes
from hardware_specs.op_timing import memory_ops_model
from hardware_specs.roofline import matmul_unit
from simulators.matmul import gemm_time
from simulators.memory_ops import memory_op_time

PHASES = ("prefill", "decode", "train")
DTYPES = ("bf16", "fp16", "fp8")
WEIGHT_DTYPES = ("bf16", "fp16", "fp8", "int8", "int4")
LAUNCHES = ("graph", "eager")
RECOMPUTE = ("none", "selective", "full")


@dataclass(frozen=True)
class OpRow:
    """One row of a step: amounts summed over ``count`` instances (layers)."""

    name: str
    layer: str | None  # "each" for an op every layer runs; None for one outside the layers
    part: str  # fwd | bwd | optimizer
    count: int
    kernels: object
    flops: object  # matmul FLOPs (the costmodel.flops convention; other FLOPs are not counted)
    bytes: dict  # per memory level: {"hbm": ...}
    time_s: object  # GPU time of the kernels, launch gaps excluded
    bound: object  # the resource that binds one instance
    op_kind: str = "memory"  # gemm | memory | attention
    host_s: float = 0.0  # eager: CPU seconds to issue one instance
    unit: str | None = None  # the compute unit its FLOPs run on (None: no counted FLOPs)


@dataclass(frozen=True)
class StepResult:
    model: str
    gpu: str
    phase: str
    time_s: object
    tokens_per_s: object
    memory_bytes: object
    memory: dict
    ops: list
    flops: object
    hbm_bytes: object
    gpu_time_s: object  # sum of the kernels' GPU times
    kernels: int
    launch: str
    attention_impl: str
    assumptions: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The fields as plain containers (numbers or numpy arrays); rows as dicts."""
        data = {k: getattr(self, k) for k in ("model", "gpu", "phase", "time_s", "tokens_per_s", "memory_bytes",
                                               "memory", "flops", "hbm_bytes", "gpu_time_s", "kernels", "launch",
                                               "attention_impl", "assumptions")}
        data["ops"] = [dict(r.__dict__) for r in self.ops]
        return data


def _choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name}: {value!r} is not allowed; one of {', '.join(map(str, allowed))} is")
    return value


def _time_op(spec, op: Op, opts: Options):
    """(GPU time, bound, DRAM bytes) of one instance of an op."""
    mem = memory_ops_model(spec)
    if op.kind == "gemm":
        m, n, k, e_in, e_w, e_out = op.gemm
        t, c, mm, hbm, split = gemm_time(spec, m, n, k, opts.gemm_dtype, in_bytes=e_in, weight_bytes=e_w,
                                         out_bytes=e_out, detail=True)
        return t, np.where(c >= mm, "tensor", np.where(split > 1, "hbm (split-K)", "hbm")), hbm
    if op.kind == "attention":
        a = op.attention
        e = opts.act_bytes
        pass_ = "fwd" if op.part == "fwd" or op.name.startswith("recompute:") else "bwd"
        hbm = attention_hbm_bytes(a["q_tokens"], a["kv_tokens"], a["q_dim"], a["kv_dim"], e, opts.kv_bytes, pass_)
        t, c, mm = attention_time(spec, a["flops"], hbm, _attn_dtype(opts), pass_)
        t = t + (op.kernels - 1) * mem.latency_s
        return t, np.where(c >= mm, "tensor", "hbm"), hbm
    b = np.asarray(op.hbm_bytes, dtype=np.float64)
    t = sum(memory_op_time(spec, pb, k, fam) for fam, k, pb in op.parts)
    return t, np.where(op.kernels * mem.latency_s >= b / mem.bandwidth_Bps, "latency", "hbm"), b


def _attn_dtype(opts: Options) -> str:
    return "fp16" if opts.gemm_dtype == "fp16" else "bf16"


def _assemble(cfg, spec, phase, tokens: Tokens, opts: Options, launch, grad_accum: int, new_tokens, impl,
              memory: dict, attention_host_s=0.0) -> StepResult:
    fwd = forward_ops(cfg, tokens, opts)
    ops = list(fwd)
    if opts.train:
        bwd = recompute_ops(fwd, opts.recompute)[::-1] + backward_ops(fwd, cfg, tokens, opts)
        # recomputation runs layer by layer inside the backward; its order does not change the sums
        ops += bwd + optimizer_ops(count_params(cfg).total // opts.tensor_parallel, _n_tensors(cfg))
    L = cfg.n_layers
    host_of = _hosts(spec, ops, opts.train)
    rows, times = [], []
    for op in ops:
        t, bound, hbm_op = _time_op(spec, op, opts)
        n = L if op.layer else 1
        rep = grad_accum if op.part != "optimizer" else 1
        times.append((op, t))
        rows.append(OpRow(op.name, "each" if op.layer else None, op.part, n * rep, op.kernels * n * rep,
                          to_value(np.asarray(op.matmul_flops, dtype=np.float64) * n * rep),
                          {"hbm": to_value(np.asarray(hbm_op, dtype=np.float64) * n * rep)},
                          to_value(t * n * rep), to_value(bound) if np.ndim(bound) == 0 else bound, op.kind,
                          host_of[id(op)],
                          matmul_unit(opts.gemm_dtype if op.kind == "gemm" else _attn_dtype(opts), True)
                          if op.kind in ("gemm", "attention") else None))
    # launch: segments in issue order (fwd: pre, layers, post; bwd: post, layers, pre; optimizer)
    if np.any(np.asarray(attention_host_s) != 0):  # an engine's own host work around each layer's attention
        host_of = dict(host_of)
        for op in ops:
            if op.kind == "attention" and op.layer and op.part == "fwd":
                host_of[id(op)] = host_of[id(op)] + np.asarray(attention_host_s, dtype=np.float64)
    segs = []
    for part in ("fwd", "bwd"):
        part_ops = [(op, t) for op, t in times if op.part == part]
        pre = [(op, t) for op, t in part_ops if not op.layer and _is_pre(op, part, part_ops)]
        lay = [(op, t) for op, t in part_ops if op.layer]
        post = [(op, t) for op, t in part_ops if not op.layer and not _is_pre(op, part, part_ops)]
        for group, r in ((pre, 1), (lay, L), (post, 1)):
            segs.append(([t for _, t in group], [host_of[id(op)] for op, _ in group], r))
    opt = [(op, t) for op, t in times if op.part == "optimizer"]
    gpu = sum(np.asarray(t) * (L if op.layer else 1) * (grad_accum if op.part != "optimizer" else 1)
              for op, t in times)
    kernels = sum(op.kernels * (L if op.layer else 1) * (grad_accum if op.part != "optimizer" else 1)
                  for op, _ in times)
    if launch == "graph":
        total = graph_step_time(spec, gpu, kernels)
    else:
        # one micro-batch's fwd + bwd, the optimizer issued after the last one on the same host timeline
        opt_seg = [([t for _, t in opt], [host_of[id(op)] for op, _ in opt], 1)] if opt else []
        total = eager_segments_time(segs + opt_seg) + (grad_accum - 1) * eager_segments_time(segs)
    flops = sum(np.asarray(r.flops, dtype=np.float64) for r in rows)
    hbm = sum(np.asarray(r.bytes["hbm"], dtype=np.float64) for r in rows)
    peak = sum(np.asarray(v, dtype=np.float64) for v in memory.values())
    new = np.asarray(new_tokens, dtype=np.float64) * grad_accum
    return StepResult(
        model=cfg.name, gpu=spec.name, phase=phase, time_s=to_value(total), tokens_per_s=to_value(new / total),
        memory_bytes=to_value(peak), memory={k: to_value(v) for k, v in memory.items()}, ops=rows,
        flops=to_value(flops), hbm_bytes=to_value(hbm), gpu_time_s=to_value(gpu), kernels=int(kernels),
        launch=launch, attention_impl=impl,
        assumptions={"gemm": _src(spec, "gemm"), "memory_ops": _src(spec, "memory_ops"),
                     "attention": f"{impl}: one fused kernel, FlashAttention IO (costmodel/step/attention.py)"})


def _hosts(spec, ops, train: bool) -> dict:
    """id(op) -> host seconds to issue one instance (``costmodel/step/launch.py``): a layer's ops of
    each part share the block's extra host cost."""
    out = {}
    for part in ("fwd", "bwd", "optimizer"):
        for layer in (True, False):
            group = [op for op in ops if op.part == part and bool(op.layer) == layer]
            out.update(zip(map(id, group), layer_hosts(spec, group, train, layer)))
    return out


def _src(spec, section):
    s = getattr(spec, section, None)
    if s is None:
        from hardware_specs.op_timing import default_gemm, default_memory_ops

        return (default_gemm(spec) if section == "gemm" else default_memory_ops(spec)).assumed
    return f"measured {s.measured.date} on {s.measured.gpu}: {s.measured.method}" if s.measured else (s.assumed or "")


def _is_pre(op, part, part_ops) -> bool:
    names = [o.name for o, _ in part_ops]
    first_layer = next((i for i, (o, _) in enumerate(part_ops) if o.layer), len(part_ops))
    return names.index(op.name) < first_layer


def _n_tensors(cfg) -> int:
    per_layer = (2 if cfg.norm_type == "rmsnorm" else 4) + 4 + 2 + (2 if cfg.attn_bias else 0) + (2 if cfg.mlp_bias else 0)
    return cfg.n_layers * per_layer + 3


def _options(cfg, phase, dtype, weight_dtype, kv_dtype, tensor_parallel, recompute, **knobs) -> Options:
    _choice("dtype", dtype, DTYPES)
    weight_dtype = weight_dtype or dtype
    _choice("weight_dtype", weight_dtype, WEIGHT_DTYPES)
    kv_dtype = kv_dtype or (dtype if dtype != "fp8" else "bf16")
    e_act = 2.0  # bf16/fp16 activations; fp8 GEMMs take fp8 operands but emit 16-bit
    gemm_dtype = "fp8" if (dtype == "fp8" or weight_dtype == "fp8") else ("fp16" if dtype == "fp16" else "bf16")
    t = check("predict_step", "tensor_parallel", tensor_parallel, gt=0, integer=True)
    for name, n in (("n_heads", cfg.n_heads), ("ffn_dim", cfg.ffn_dim)):
        if n % t:
            raise ValueError(f"tensor_parallel: {t} does not divide {name} ({n}); a divisor of it is allowed")
    return Options(train=phase == "train", act_bytes=e_act, gemm_dtype=gemm_dtype,
                   weight_bytes=dtype_bytes(weight_dtype) if phase != "train" else 2.0,
                   kv_bytes=dtype_bytes(kv_dtype), tensor_parallel=t, recompute=_choice("recompute", recompute, RECOMPUTE),
                   **knobs)


def predict_step(model, gpu, phase: str = "prefill", *, batch=1, seq_len=512, dtype: str = "bf16", kv_dtype=None,
                 weight_dtype=None, launch: str | None = None, recompute: str = "none", attention_impl: str | None = None,
                 tensor_parallel: int = 1, sequence_parallel: bool = False, grad_accum: int = 1,
                 fused_qkv: bool = True, fused_gate_up: bool = True, norm: str = "pytorch", rope: str = "pytorch",
                 sliding_window="model") -> StepResult:
    """One step of ``model`` on ``gpu``: prefill of ``seq_len`` tokens, decode of one token after a cache
    of ``seq_len``, or a training step (fwd + bwd + fused AdamW) on ``seq_len`` tokens; ``batch``
    sequences. ``batch`` and ``seq_len`` may be numpy arrays (they broadcast).

    Defaults model plain PyTorch: decode replayed as a CUDA graph, prefill and training eager;
    training under autocast bf16 over fp32 parameters. ``sequence_parallel`` is accepted for the
    interface and changes nothing on one GPU (communication is costmodel's parallel module's).
    """
    from hardware_specs import load_gpu

    cfg = load_model(model)
    spec = load_gpu(gpu) if isinstance(gpu, str) else gpu
    _choice("phase", phase, PHASES)
    launch = launch or ("graph" if phase == "decode" else "eager")
    _choice("launch", launch, LAUNCHES)
    _choice("norm", norm, ("pytorch", "fused"))
    _choice("rope", rope, ("pytorch", "fused"))
    B = np.asarray(check("predict_step", "batch", batch, gt=0, integer=True), dtype=np.float64)
    S = np.asarray(check("predict_step", "seq_len", seq_len, gt=0 if phase != "decode" else -1, integer=True),
                   dtype=np.float64)
    ga = check("predict_step", "grad_accum", grad_accum, gt=0, integer=True)
    if phase != "train" and ga != 1:
        raise ValueError("grad_accum: only a training step accumulates gradients; 1 is allowed here")
    window = cfg.sliding_window if sliding_window == "model" else sliding_window
    opts = _options(cfg, phase, dtype, weight_dtype, kv_dtype, tensor_parallel, recompute,
                    fused_qkv=fused_qkv, fused_gate_up=fused_gate_up, norm=norm, rope=rope,
                    rope_gather=phase == "decode", kv_write=phase != "train")
    impl = attention_impl or default_sdpa_backend(spec, dtype, cfg.head_dim)
    if phase == "decode":
        held = S + 1 if window is None else np.minimum(S + 1, window)
        tokens = Tokens(T=B, sequences=B, keys=B * held, kv_tokens=B * held)
        new, cache = B, B * (S + 1)
    else:
        keys = np.asarray(mean_keys_per_query(S.astype(np.int64) if S.ndim else int(S), True, window), dtype=np.float64)
        tokens = Tokens(T=B * S, sequences=B, keys=B * S * keys, kv_tokens=B * S)
        new, cache = B * S, B * S
    if phase == "train":
        memory = training_memory_terms(cfg, forward_ops(cfg, tokens, opts), tokens.T, opts.tensor_parallel, recompute,
                                       ga)
    else:
        memory = inference_memory(cfg, tokens.T, B, cache, opts.weight_bytes, opts.act_bytes,
                                  kv_dtype or ("bf16" if dtype == "fp8" else dtype), opts.tensor_parallel)
    return _assemble(cfg, spec, phase, tokens, opts, launch, ga, new, impl, memory)


def predict_batch(model, gpu, new_tokens, context_lens, *, dtype: str = "bf16", kv_dtype=None, weight_dtype=None,
                  launch: str = "graph", attention_impl: str | None = None, tensor_parallel: int = 1,
                  all_logits: bool = False, sliding_window="model", cache_tokens=None,
                  attention_host_per_call_s: float = 0.0) -> StepResult:
    """One forward pass over a ragged batch: request i brings ``new_tokens[i]`` tokens after
    ``context_lens[i]`` cached ones (prefill: new=S, ctx=0; decode: new=1, ctx=S; chunked prefill:
    both). Arrays over requests on the last axis; leading axes broadcast (many batches at once).

    A serving engine runs this as one varlen attention kernel and computes logits only for each
    request's last token (``all_logits=False``). ``cache_tokens``: KV tokens resident on the GPU
    (default: the batch's own, Σ (ctx + new)), for the memory estimate.
    ``attention_host_per_call_s``: host seconds an engine spends per layer on each attention call
    beyond the one SDPA call the op list holds (a paged engine calls attention once per prefill
    chunk and once for all its decodes, gathering and slicing around each), issued on the eager
    timeline with the layer's other ops (it matters only for eager launches).
    """
    from hardware_specs import load_gpu

    cfg = load_model(model)
    spec = load_gpu(gpu) if isinstance(gpu, str) else gpu
    _choice("launch", launch, LAUNCHES)
    n = np.asarray(check("predict_batch", "new_tokens", new_tokens, ge=0, integer=True), dtype=np.float64)
    c = np.asarray(check("predict_batch", "context_lens", context_lens, ge=0, integer=True), dtype=np.float64)
    n, c = np.broadcast_arrays(np.atleast_1d(n), np.atleast_1d(c))
    window = cfg.sliding_window if sliding_window == "model" else sliding_window
    # Σ_j min(c + j, W) over the request's queries j = 1..n = F(c + n) - F(c), F(x) = Σ_{i<=x} min(i, W)
    def F(x):
        xi = np.maximum(x, 1).astype(np.int64)
        return np.where(x > 0, x * np.asarray(mean_keys_per_query(xi, True, window), dtype=np.float64), 0.0)

    if np.any(n.sum(axis=-1) == 0):
        raise ValueError("new_tokens: every batch needs at least one new token; got a batch of zeros")
    keys = (F(c + n) - F(c)).sum(axis=-1)
    kv = (np.minimum(c + n, window) if window else c + n)
    active = (n > 0)
    opts = _options(cfg, "prefill", dtype, weight_dtype, kv_dtype, tensor_parallel, "none",
                    all_logits=all_logits, rope_gather=True)
    T = n.sum(axis=-1)
    seqs = active.sum(axis=-1).astype(np.float64)
    tokens = Tokens(T=T, sequences=seqs, keys=keys, kv_tokens=(kv * active).sum(axis=-1), logits_tokens=seqs)
    cache = (c + n).sum(axis=-1) if cache_tokens is None else cache_tokens
    memory = inference_memory(cfg, T, seqs, cache, opts.weight_bytes, opts.act_bytes,
                              kv_dtype or ("bf16" if dtype == "fp8" else dtype), opts.tensor_parallel,
                              logits_tokens=None if all_logits else seqs)
    impl = attention_impl or "flash-varlen"
    chunk = active & ~((n == 1) & (c > 0))  # a request bringing a prompt chunk, not one decode token
    calls = chunk.sum(axis=-1) + (active & ~chunk).any(axis=-1)
    extra = check("predict_batch", "attention_host_per_call_s", attention_host_per_call_s, ge=0) * calls
    return _assemble(cfg, spec, "batch", tokens, opts, launch, 1, T, impl, memory, extra)


__all__ = ["OpRow", "PHASES", "StepResult", "predict_batch", "predict_step"]
