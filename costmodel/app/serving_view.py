"""The serving view: requests arriving at the chosen model and GPU, simulated by ``costmodel.serving``.

A Poisson stream of ``SERVING_REQUESTS`` requests at the chosen rate, each with the chosen prompt
(the sequence length control) and output length, batched by the simulator's default (chunked
prefill) scheduler over a paged KV cache, every iteration timed by the step predictor. The view
holds the latency percentiles (time to first token, time per output token, end to end), the
throughput and the KV cache's use.
"""

from __future__ import annotations

SERVING_REQUESTS = 200  # enough for stable p50/p90 at a few requests per second; ~0.5 s to simulate on a CPU
SEED = 0


def serving_view(spec, cfg, inputs) -> dict:
    """Metrics of one simulated serving run (plain numbers; seconds, tokens per second)."""
    from costmodel.serving import simulate_serving

    r = simulate_serving(cfg, spec, rate_per_s=inputs.rate_per_s, n_requests=SERVING_REQUESTS,
                         prompt_len=str(inputs.seq_len), output_len=str(inputs.output_len), seed=SEED,
                         tensor_parallel=inputs.tensor_parallel, dtype=inputs.dtype)
    m = r.metrics
    keep = ("requests", "span_s", "requests_per_s", "output_tokens_per_s", "input_tokens_per_s", "mean_batch",
            "kv_utilization", "kv_utilization_peak", "preemptions", "iterations", "busy_fraction")
    return {"metrics": {k: m[k] for k in keep if k in m},
            "latency_s": {k: m[k] for k in ("ttft_s", "tpot_s", "e2e_s", "queue_s") if isinstance(m.get(k), dict)},
            "config": r.config, "requests": SERVING_REQUESTS, "seed": SEED}
