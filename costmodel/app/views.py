"""Everything the app shows, as plain JSON-able values: one ``evaluate`` call per question.

A view is a dict of numbers and names (seconds, bytes, FLOPs; no formatting), so what the
page draws is also what its "JSON" buttons download. Views:

- ``summary``: step time, tokens per second, memory against the GPU's capacity, which model made them;
- ``ops``: one row per op (name, layer, part fwd/bwd/optimizer, count, flops, hbm_bytes, time_s, bound),
  amounts summed over the op's ``count`` instances as ``predict_step`` gives them;
- ``timeline``: the step's kernels' GPU time laid end to end (start_s, end_s), in execution order;
- ``memory``: bytes per term (weights, KV cache, activations, ...) and the capacity;
- ``roofline``: the ops and the attention kernels as points (flops, hbm_bytes, time_s);
- ``attention``: bytes per memory level and time of one layer's attention for standard, FlashAttention-2
  and the chosen implementation (``simulate_attention``);
- ``parallel``: with TP x PP > 1, one step's latency, throughput and memory per GPU with its
  communication (``parallel_view``; None otherwise);
- ``serving``: for the serving phase, latency percentiles and throughput of simulated requests
  (``serving_view``; None otherwise).

The step is ``costmodel.step.predict_step``'s; its attention is the fused kernel the step
predictor models (its SDPA backend for the GPU unless a ``torch-*`` implementation is chosen), while
the attention view simulates the chosen implementation ("auto": the step's) beside standard and
FlashAttention-2.
"""

from __future__ import annotations


from costmodel.app.inputs import AUTO, AppInputs, attention_choices, resolve_gpu, resolve_model, torch_implementations
from costmodel.app import parallel_view, serving_view
from simulators import simulate_attention

MAX_TIMELINE_SEGMENTS = 4000  # past this, repeated ops are drawn as one bar each (count x time)
_LEVELS = ("hbm", "l2", "smem")


def attention_call(cfg, inputs: AppInputs) -> dict:
    """The keyword arguments of one layer's attention for ``simulate_attention``.

    Prefill and training: S queries against S keys, causal. Decode: one new query per
    sequence against a cache of S keys. Tensor parallelism splits the heads t ways
    (Megatron-LM, Shoeybi et al. 2019 §3): each GPU runs H/t query and H_kv/t K/V heads.
    """
    t = inputs.tensor_parallel
    if cfg.n_heads % t or cfg.n_kv_heads % t:
        allowed = [d for d in (1, 2, 4, 8, 16, 32, 64) if cfg.n_heads % d == 0 and cfg.n_kv_heads % d == 0]
        raise ValueError(f"tensor_parallel: {t} does not split {cfg.name}'s {cfg.n_heads} query / "
                         f"{cfg.n_kv_heads} K/V heads evenly; allowed: {', '.join(map(str, allowed))}")
    decode = inputs.phase == "decode"
    return dict(batch=inputs.batch, heads=cfg.n_heads // t, kv_heads=cfg.n_kv_heads // t,
                seq_len=1 if decode else inputs.seq_len, kv_len=inputs.seq_len, head_dim=cfg.head_dim,
                dtype=inputs.dtype, causal=not decode, pass_="fwd+bwd" if inputs.phase == "train" else "fwd")


def _attention(spec, impl: str, call: dict):
    if impl == "flash-decoding" and call["seq_len"] > 1:
        raise ValueError(f"attention_impl: flash-decoding runs decode (one new token), not {call['seq_len']} "
                         "query tokens; choose the decode phase, or flash2 for prefill and training")
    if impl == "flash-decoding" and call["pass_"] != "fwd":
        raise ValueError("attention_impl: flash-decoding has no backward pass; choose flash2 for training")
    return simulate_attention(spec, impl, **call)


def _op_row(op) -> dict:
    """A StepResult row as plain numbers: bytes per level flattened to ``<level>_bytes``."""
    levels = op.bytes if isinstance(op.bytes, dict) else {}
    row = {"name": op.name, "layer": op.layer, "part": op.part, "count": int(op.count), "kernels": int(op.kernels),
           "flops": float(op.flops), "time_s": float(op.time_s), "bound": str(op.bound)}
    for level in _LEVELS:
        row[f"{level}_bytes"] = float(levels.get(level, 0.0) or 0.0)
    return row


def predicted_step(spec, cfg, inputs: AppInputs) -> dict:
    """``predict_step``'s time, tokens/s, memory per term and op rows, as plain numbers."""
    from costmodel.step import predict_step

    impl = inputs.attention_impl if inputs.attention_impl in torch_implementations() else None
    res = predict_step(cfg, spec, phase=inputs.phase, batch=inputs.batch, seq_len=inputs.seq_len, dtype=inputs.dtype,
                       attention_impl=impl, tensor_parallel=inputs.tensor_parallel)
    return {"source": "costmodel.step.predict_step", "time_s": float(res.time_s), "gpu_time_s": float(res.gpu_time_s),
            "tokens_per_s": float(res.tokens_per_s), "memory_bytes": float(res.memory_bytes),
            "memory": {k: float(v) for k, v in res.memory.items()}, "launch": res.launch,
            "step_attention_impl": res.attention_impl, "kernels": int(res.kernels),
            "ops": [_op_row(op) for op in res.ops]}


def timeline(ops: list[dict]) -> list[dict]:
    """Each op instance end to end, as the step runs them: per part, the ops before the layers,
    then layer by layer (the backward from the last layer down), then the ops after them.

    A row's amounts are summed over its ``count`` instances, so one instance takes time_s / count.
    Past MAX_TIMELINE_SEGMENTS instances each row is one bar of its whole time.
    """
    out, t = [], 0.0

    def add(op, layer, duration):
        nonlocal t
        out.append({"name": op["name"], "part": op["part"], "layer": layer, "kind": op_kind(op),
                    "start_s": t, "end_s": t + duration})
        t += duration

    if sum(op["count"] for op in ops) > MAX_TIMELINE_SEGMENTS:
        for op in ops:
            add(op, None, op["time_s"])
        return out
    for part in dict.fromkeys(op["part"] for op in ops):
        mine = [op for op in ops if op["part"] == part]
        layered = [i for i, op in enumerate(mine) if op["layer"] is not None]
        first, last = (layered[0], layered[-1]) if layered else (len(mine), len(mine) - 1)
        for op in mine[:first]:
            add(op, None, op["time_s"])
        layers = max((mine[i]["count"] for i in layered), default=0)
        for layer in (range(layers - 1, -1, -1) if part == "bwd" else range(layers)):
            for i in layered:
                add(mine[i], layer, mine[i]["time_s"] / mine[i]["count"])
        for op in mine[last + 1:]:
            add(op, None, op["time_s"])
    return out


def op_kind(op: dict) -> str:
    """matmul, attention or memory: how the timeline colours an op."""
    if op["name"].split(".")[0] == "attention":
        return "attention"
    return "matmul" if op["flops"] > 0 else "memory-bound"


def _attention_row(label: str, r) -> dict:
    return {"label": label, "impl": r.impl, "pass": r.pass_, "flops": r.flops, "global_bytes": float(r.global_bytes),
            "hbm_bytes": float(r.hbm_bytes), "l2_bytes": float(r.l2_bytes), "smem_bytes": float(r.smem_bytes),
            "time_s": r.time_s, "bound": r.bound,
            "kernels": [{"name": k.name, "flops": k.flops, "hbm_bytes": float(k.hbm_bytes), "time_s": k.time_s,
                         "bound": k.bound} for k in r.kernels]}


def evaluate(inputs: AppInputs, gpu_uploads: dict[str, str] | None = None,
             model_uploads: dict[str, str] | None = None) -> dict:
    """Every view of one question (module docstring); raises ValueError naming a bad field."""
    spec = resolve_gpu(inputs.gpu, gpu_uploads)
    cfg = resolve_model(inputs.model, model_uploads)
    notes, serving = [], None
    if inputs.phase == "serving":
        serving = serving_view.serving_view(spec, cfg, inputs)
        notes.append(f"serving: {serving['requests']} Poisson requests at {inputs.rate_per_s:g}/s, "
                     f"{inputs.seq_len}-token prompts, {inputs.output_len} output tokens (Serving panel); "
                     "the other panels show one decode step at this batch and cache length")
    phase = "decode" if inputs.phase == "serving" else inputs.phase
    q = inputs.model_copy(update={"phase": phase})
    call = attention_call(cfg, q)
    step = predicted_step(spec, cfg, q)
    # "auto": the implementation the step predictor picked (its SDPA backend for this GPU and shape)
    impl = step["step_attention_impl"] if inputs.attention_impl == AUTO else inputs.attention_impl
    chosen = _attention(spec, impl, call) if impl in attention_choices() else None
    compare = {name: chosen if name == impl else simulate_attention(spec, name, **call) for name in ("standard", "flash2")}
    attention_rows = [_attention_row(name, r) for name, r in compare.items()]
    if chosen is not None and impl not in compare:
        attention_rows.append(_attention_row(f"chosen: {impl}", chosen))
    if step["step_attention_impl"] != impl:
        simulated = ", ".join(dict.fromkeys(["standard", "flash2", impl]))
        notes.append(f"step: attention timed as {step['step_attention_impl']} (the step predictor's kernel for this "
                     f"phase); the attention panel simulates {simulated}")
    elif inputs.attention_impl != AUTO:
        notes.append(f"step: the step predictor times {impl} as one fused FlashAttention-style kernel "
                     "(costmodel/step/attention.py), whichever backend is named; the attention panel simulates the "
                     "backend's own kernels")
    parallel = None
    if inputs.tensor_parallel * inputs.pipeline_parallel > 1:
        parallel = parallel_view.parallel_view(spec, cfg, q)
        if "note" in parallel:
            notes.append("parallelism: " + parallel["note"])

    capacity = float(spec.hbm_bytes)
    summary = {"gpu": spec.name, "gpu_display_name": spec.display_name, "model": cfg.name, "phase": inputs.phase,
               "batch": inputs.batch, "seq_len": inputs.seq_len, "dtype": inputs.dtype,
               "tensor_parallel": inputs.tensor_parallel, "attention_impl": impl,
               "time_s": step["time_s"], "gpu_time_s": step["gpu_time_s"], "launch": step["launch"],
               "kernels": step["kernels"], "step_attention_impl": step["step_attention_impl"],
               "tokens_per_s": step["tokens_per_s"],
               "memory_bytes": step["memory_bytes"], "gpu_memory_bytes": capacity,
               "fits": step["memory_bytes"] <= capacity, "source": step["source"]}
    by_name: dict[str, dict] = {}
    for op in step["ops"]:
        agg = by_name.setdefault(op["name"], {"name": op["name"], "flops": 0.0, "hbm_bytes": 0.0, "time_s": 0.0,
                                              "bound": op["bound"]})
        for key in ("flops", "hbm_bytes", "time_s"):
            agg[key] += op[key]
    points = [{"group": "model ops", **agg} for agg in by_name.values() if agg["flops"] > 0 and agg["hbm_bytes"] > 0]
    for row in attention_rows:
        points += [{"group": f"attention kernels: {row['label']}", **k} for k in row["kernels"]
                   if k["flops"] > 0 and k["hbm_bytes"] > 0]
    return {
        "inputs": inputs.model_dump(), "summary": summary, "ops": step["ops"], "timeline": timeline(step["ops"]),
        "memory": {"terms_bytes": step["memory"], "total_bytes": step["memory_bytes"], "capacity_bytes": capacity},
        "roofline": {"gpu": spec.name, "points": points},
        "attention": {"call": call, "rows": attention_rows},
        "serving": serving,
        "parallel": parallel,
        "notes": notes,
    }
