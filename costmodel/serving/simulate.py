"""``simulate_serving``: a model on a GPU (or a TP group) serving a stream of requests.

The pieces: a workload (``workload``), a KV block manager sized from memory minus weights
(``capacity``, ``blocks``), a scheduler (``schedulers``), each step's time from the whole-model step
predictor (``cost``, ``costmodel.step.predict_batch``), the event loop (``engine``) and the metrics
(``metrics``). Speculative decoding (``speculative``) is an option: a draft model, gamma and alpha.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from costmodel.models import ModelConfig, load_model
from costmodel.serving.blocks import BlockManager, blocks_for
from costmodel.serving.capacity import GPU_MEMORY_UTILIZATION, kv_capacity
from costmodel.serving.cost import StepCost, step_predictor
from costmodel.serving.engine import EngineRun, run_engine
from costmodel.serving.engine_host import load_engine
from costmodel.serving.metrics import request_table, run_metrics
from costmodel.serving.request import Request
from costmodel.serving.schedulers import PREEMPTION, SCHEDULERS, make_scheduler
from costmodel.serving.speculative import AcceptanceSampler, expected_tokens_per_step
from costmodel.serving.workload import Workload, load_trace, poisson_workload

DEFAULT_MAX_SEQS = 256  # vLLM SchedulerConfig max_num_seqs default
DEFAULT_CHUNK_TOKENS = 2048  # Sarathi-Serve (Agrawal et al. 2024) evaluates token budgets of 512 and 2048


class Speculative(BaseModel):
    """A draft model proposing ``gamma`` tokens, each accepted with probability ``alpha``."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    draft: Any  # a preset name, a model YAML path or a ModelConfig
    gamma: int = Field(ge=1, le=16)
    alpha: float = Field(ge=0, le=1)


class ServingResult(BaseModel):
    """A simulated run: the per-run metrics, the setup, and (outside JSON) per-request and per-step data."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    metrics: dict
    config: dict
    capacity: dict
    cost: dict
    wall_s: float
    requests: dict = Field(default_factory=dict, exclude=True)  # columns of metrics.request_table
    timeline: Any = Field(default=None, exclude=True)  # engine.Timeline
    cost_object: Any = Field(default=None, exclude=True)  # the StepCost, to reuse its cache

    def to_json(self, per_request: bool = False) -> dict:
        """The metrics, setup and cost stats; with ``per_request`` also each request's columns
        (arrival, lengths, TTFT, TPOT, e2e, queueing, preemptions; NaN -> null)."""
        out = {**self.metrics, "config": self.config, "capacity": self.capacity, "cost": self.cost,
               "wall_s": self.wall_s}
        if per_request:
            out["per_request"] = {k: v.tolist() for k, v in self.requests.items()}
        return out


def _workload(trace, rate_per_s, n_requests, prompt_len, output_len, seed, max_seq_len) -> Workload:
    if isinstance(trace, Workload):
        return trace
    if trace is not None:
        return load_trace(trace, max_seq_len=max_seq_len)
    if rate_per_s is None:
        raise ValueError("rate_per_s: give an arrival rate (requests per second) or a trace")
    return poisson_workload(rate_per_s, n_requests, prompt_len, output_len, seed=seed, max_seq_len=max_seq_len)


def _padded(predict, engine):
    """A prefill predictor that prices the engine's token padding (``EngineHost.pad_prefill``)."""
    def run(new_tokens, context_lens):
        return predict(*engine.pad_prefill(new_tokens, context_lens))

    return run


def _tp_comm(cfg, gpu, tp: int, activation_bytes: int):
    """Each step's TP all-reduces on the bundled cluster of this GPU, or None where there is none."""
    from costmodel.parallel.inference import tp_step_comm_s
    from hardware_specs.cluster import cluster_of_gpu, load_cluster

    name = cluster_of_gpu(gpu.name)
    if name is None:
        return None
    cluster = load_cluster(name)
    return lambda tokens: tp_step_comm_s(cfg, cluster, tp, tokens, activation_bytes)


def simulate_serving(
    model, gpu, trace=None, *, rate_per_s: float | None = None, n_requests: int = 1000, prompt_len="512",
    output_len="128", seed: int = 0, scheduler: str = "chunked", max_seqs: int = DEFAULT_MAX_SEQS,
    max_batch_tokens: int | None = None, block_size: int = 16, tensor_parallel: int = 1, dtype: str = "bf16",
    kv_dtype: str | None = None, weight_dtype: str | None = None, preemption: str = "recompute",
    gpu_memory_utilization: float = GPU_MEMORY_UTILIZATION, num_blocks: int | None = None,
    swap_space_bytes: float = 0.0, swap_bandwidth_Bps: float | None = None,
    speculative: Speculative | dict | None = None, slo_ttft_s: float | None = None,
    slo_tpot_s: float | None = None, step_time=None, draft_step_time=None, resolution_bits: int | None = 6,
    step_options: dict | None = None, tp_comm_s=None, cost: StepCost | None = None, max_passes: int = 3,
    stand_in_share: float = 0.02, engine=None,
) -> ServingResult:
    """Simulate ``model`` served on ``gpu`` (x ``tensor_parallel``) and return its metrics.

    Requests come from ``trace`` (a ``Workload`` or a trace file) or a Poisson process at
    ``rate_per_s`` with ``n_requests`` requests whose lengths follow the DISTs ``prompt_len`` /
    ``output_len`` (``workload.parse_dist``). ``scheduler`` is one of continuous / chunked / static;
    ``max_batch_tokens`` is the token budget per step (default: the model's context for continuous,
    2048 for chunked); ``max_seqs`` caps the requests in a batch. The KV cache has ``num_blocks``
    blocks (default: from memory minus weights, ``capacity.kv_capacity``). ``step_time(new_tokens,
    context_lens) -> s`` replaces the step predictor (tests); by default it is
    ``costmodel.step.predict_batch`` with ``step_options`` (attention_impl=, ...; launch= "auto" by
    default: decode-only steps as CUDA graphs, steps with prefill as the engine launches them), asked in discovery passes (``cost``; a ``StepCost`` may be passed in to reuse its cache across runs of one
    model, GPU and TP). ``tp_comm_s(tokens) -> s`` adds each step's tensor-parallel communication;
    by default, with ``tensor_parallel > 1`` and the step predictor's steps, it is the two all-reduces per layer of the step's
    activations on the bundled cluster built of this GPU (``costmodel.parallel.inference.tp_step_comm_s``
    on ``hardware_specs.cluster.cluster_of_gpu``), and not counted (optimistic) for a GPU no bundled
    cluster is built of. ``engine`` (a name of ``costmodel.serving.engine_host.engine_names()`` or an
    ``EngineHost``) adds the serving engine's host time per step (scheduling, input building, graph
    replay); by default ``torch-loop``, the measured PyTorch loop, with the step predictor, and
    ``ideal`` (none) with a given ``step_time``.
    """
    t_wall = time.perf_counter()
    cfg = load_model(model) if not isinstance(model, ModelConfig) else model
    if isinstance(gpu, str):
        from hardware_specs import load_gpu

        gpu = load_gpu(gpu)
    if scheduler not in SCHEDULERS:
        raise ValueError(f"scheduler: {scheduler!r}; allowed: {', '.join(SCHEDULERS)}")
    if preemption not in PREEMPTION:
        raise ValueError(f"preemption: {preemption!r}; allowed: {', '.join(PREEMPTION)}")
    for name, value in (("max_seqs", max_seqs), ("block_size", block_size)):
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f"{name}: {value!r}; a whole number >= 1")
    spec = Speculative.model_validate(speculative) if isinstance(speculative, dict) else speculative
    if spec is not None and scheduler == "static":
        raise ValueError("speculative: supported with the continuous and chunked schedulers, not static")
    draft_cfg = load_model(spec.draft) if spec is not None else None
    gamma = spec.gamma if spec is not None else 0
    kv_dtype = kv_dtype or dtype
    weight_dtype = weight_dtype or dtype
    if tp_comm_s is None and tensor_parallel > 1 and step_time is None:  # a given step_time is the whole step
        tp_comm_s = _tp_comm(cfg, gpu, tensor_parallel, 1 if dtype in ("fp8", "int8") else 2)

    if max_batch_tokens is None:
        # vLLM SchedulerConfig without chunked prefill: max(max_model_len, 2048)
        max_batch_tokens = max(cfg.max_seq_len, 2048) if scheduler == "continuous" else DEFAULT_CHUNK_TOKENS
    if not (isinstance(max_batch_tokens, int) and max_batch_tokens >= 1 + gamma):
        raise ValueError(f"max_batch_tokens: {max_batch_tokens!r}; a whole number >= {1 + gamma}")
    cap = kv_capacity(cfg, gpu, block_size=block_size, tensor_parallel=tensor_parallel, weight_dtype=weight_dtype,
                      kv_dtype=kv_dtype, gpu_memory_utilization=gpu_memory_utilization, draft=draft_cfg,
                      profile_tokens=max_batch_tokens, profile_sequences=max_seqs)
    if num_blocks is not None:
        cap = {**cap, "num_blocks": num_blocks, "tokens": num_blocks * block_size, "given": True}
    if cap["num_blocks"] < 1:
        raise ValueError(f"model: {cfg.name}'s weights ({cap['weights_bytes_per_gpu'] / 1e9:.1f} GB per GPU) leave "
                         f"no room for a KV block on {gpu.name} at tensor_parallel={tensor_parallel}")

    work = _workload(trace, rate_per_s, n_requests, prompt_len, output_len, seed, cfg.max_seq_len)
    longest = int(np.max(work.prompt_len + work.output_len))
    if blocks_for(longest + gamma, block_size) > cap["num_blocks"]:
        raise ValueError(f"num_blocks: {cap['num_blocks']} blocks of {block_size} tokens cannot hold the longest "
                         f"request ({longest} tokens)")
    if scheduler == "continuous" and int(np.max(work.prompt_len + work.output_len)) > max_batch_tokens:
        raise ValueError(f"max_batch_tokens: {max_batch_tokens} is below the longest request ({longest} tokens), "
                         "which the continuous scheduler must prefill in one step after a recompute")

    swap_blocks = 0
    if preemption == "swap":
        swap_blocks = int(swap_space_bytes // cap["block_bytes_per_gpu"]) if swap_space_bytes else cap["num_blocks"]
    options = {"dtype": dtype, "tensor_parallel": tensor_parallel, "launch": "auto", **(step_options or {})}
    if options["launch"] not in ("auto", "graph", "eager"):
        raise ValueError(f"launch: {options['launch']!r}; allowed: auto (graph decodes, eager prefills), graph, eager")
    host_model = load_engine(engine if engine is not None else ("ideal" if step_time else "torch-loop"))
    graph_decodes = options["launch"] in ("auto", "graph")

    def host(decode_only: bool, requests: int, new_tokens: int) -> float:
        return host_model.step_s(decode_only and graph_decodes, requests, new_tokens)

    if cost is None:
        launches = ("graph", host_model.prefill_launch) if options["launch"] == "auto" else (options["launch"],) * 2
        eager_host = {"attention_host_per_call_s": host_model.eager_attention_call_s} \
            if host_model.eager_attention_call_s and step_time is None else {}
        target = [step_predictor(cfg, gpu, **{**options, "launch": la, **(eager_host if la == "eager" else {})})
                  for la in launches]
        drafts = [None, None]
        if spec is not None:
            drafts = [step_predictor(draft_cfg, gpu, **{**options, "tensor_parallel": 1, "launch": la})
                      for la in launches]
            if draft_step_time:
                drafts = [draft_step_time] * 2
        if step_time:
            target = [step_time] * 2
        elif launches[1] == "graph":  # prefill graphs run padded token buckets
            target[1] = _padded(target[1], host_model)
        cost = StepCost(target[0], predict_prefill=target[1], vectorized=step_time is None,
                        resolution_bits=resolution_bits, draft=drafts[0], draft_prefill=drafts[1], gamma=gamma,
                        swap_block_bytes=cap["block_bytes_per_gpu"], swap_bandwidth_Bps=swap_bandwidth_Bps,
                        comm=tp_comm_s)
    cost.host = None if host_model.is_ideal else host

    def serve() -> tuple[EngineRun, object]:
        bm = BlockManager(cap["num_blocks"], block_size, num_cpu_blocks=swap_blocks)
        sched = make_scheduler(scheduler, bm, max_seqs=max_seqs, max_batch_tokens=max_batch_tokens,
                               preemption=preemption, gamma=gamma)
        accepted = AcceptanceSampler(spec.alpha, spec.gamma, seed=seed + 1) if spec is not None else None
        requests = [Request(i, float(a), int(p), int(o))
                    for i, (a, p, o) in enumerate(zip(work.arrival_s, work.prompt_len, work.output_len))]
        return run_engine(requests, sched, cost, accepted), sched

    if cost.vectorized:  # discovery passes (cost.py): collect unseen batches, predict them together
        if cost._grid is None:
            cost.seed_grid(max_seqs, cfg.max_seq_len, max(max_batch_tokens, max_seqs * (1 + gamma)))
        for _ in range(max_passes):
            cost.start_pass(discover=True)
            run, sched = serve()
            cost.resolve()
            if cost.stand_in_steps <= stand_in_share * len(run.timeline.start_s):
                break
    else:
        cost.start_pass(discover=False)
        run, sched = serve()
    requests = run.requests
    metrics = run_metrics(run, cap["num_blocks"], slo_ttft_s, slo_tpot_s)
    config = {
        "model": cfg.name, "gpu": gpu.name, "scheduler": scheduler, "tensor_parallel": tensor_parallel,
        "max_seqs": max_seqs, "max_batch_tokens": max_batch_tokens, "block_size": block_size, "dtype": dtype,
        "kv_dtype": kv_dtype, "weight_dtype": weight_dtype, "preemption": preemption, "workload": work.source,
        "rate_per_s": rate_per_s, "slo_ttft_s": slo_ttft_s, "slo_tpot_s": slo_tpot_s,
        "step_predictor": "given" if step_time else "costmodel.step.predict_batch", "step_options": options,
        "tp_communication": "counted" if tp_comm_s is not None else "not counted", "engine": host_model.name,
    }
    if spec is not None:
        config["speculative"] = {"draft": draft_cfg.name, "gamma": spec.gamma, "alpha": spec.alpha,
                                 "expected_tokens_per_step": expected_tokens_per_step(spec.alpha, spec.gamma)}
    metrics["swapped_blocks"] = sched.swapped_blocks
    metrics["num_blocks"] = cap["num_blocks"]
    return ServingResult(metrics=metrics, config=config, capacity=cap, cost=cost.stats(),
                         wall_s=time.perf_counter() - t_wall, requests=request_table(requests),
                         timeline=run.timeline, cost_object=cost)


__all__ = ["ServingResult", "Speculative", "simulate_serving"]
