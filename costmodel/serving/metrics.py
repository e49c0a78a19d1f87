"""What a served run measures: per request TTFT, TPOT, end-to-end latency; per run throughput, goodput,
KV use and the mean number of requests in the system.

Definitions (those of vLLM's benchmark_serving and of DistServe, Zhong et al. 2024):
- TTFT: first output token's time minus arrival (queueing and the whole prefill included).
- TPOT: (finish - first token) / (output tokens - 1), for requests of two or more output tokens.
- end-to-end: finish minus arrival.
- throughput: requests (output tokens) finished over the run's span, first arrival to last finish.
- goodput: requests per second that met both SLOs (TTFT <= slo_ttft_s and TPOT <= slo_tpot_s).
- kv_utilization: the time-weighted mean share of KV blocks in use over the span.
- mean_in_system: the time-average number of requests that have arrived and not finished, from the
  engine's own count N(t); Little's law says it equals arrival rate x mean end-to-end latency.
"""

from __future__ import annotations

import numpy as np

PERCENTILES = (50, 90, 99)


def summary(values: np.ndarray) -> dict:
    """p50 / p90 / p99 / mean / max of finite ``values`` (NaNs dropped); None when there are none."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {f"p{p}": None for p in PERCENTILES} | {"mean": None, "max": None}
    out = {f"p{p}": float(np.percentile(v, p)) for p in PERCENTILES}
    return out | {"mean": float(np.mean(v)), "max": float(np.max(v))}


def request_table(requests) -> dict[str, np.ndarray]:
    """Columns per request: arrival, prompt / output tokens, TTFT, TPOT, end-to-end, queueing, preemptions."""
    arrival = np.array([r.arrival_s for r in requests])
    first = np.array([r.first_token_s for r in requests])
    finish = np.array([r.finish_s for r in requests])
    out_len = np.array([r.output_len for r in requests], dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(out_len > 1, (finish - first) / (out_len - 1), np.nan)
    return {
        "arrival_s": arrival,
        "prompt_len": np.array([r.prompt_len for r in requests], dtype=np.int64),
        "output_len": out_len,
        "ttft_s": first - arrival,
        "tpot_s": tpot,
        "e2e_s": finish - arrival,
        "queue_s": np.array([r.first_scheduled_s for r in requests]) - arrival,
        "preemptions": np.array([r.preemptions for r in requests], dtype=np.int64),
    }


def run_metrics(run, num_blocks: int, slo_ttft_s: float | None = None, slo_tpot_s: float | None = None) -> dict:
    """The per-run numbers of the module docstring, from an ``EngineRun``."""
    cols = request_table(run.requests)
    t0 = float(cols["arrival_s"].min())
    span = max(run.end_s - t0, 1e-30)
    n = len(run.requests)
    tl = run.timeline
    dur = np.frombuffer(tl.duration_s, dtype=np.float64)
    used = np.frombuffer(tl.used_blocks, dtype=np.int64) if len(tl.used_blocks) else np.zeros(0, np.int64)
    batch = np.frombuffer(tl.batch, dtype=np.int64) if len(tl.batch) else np.zeros(0, np.int64)
    busy = float(dur.sum())
    ok = np.ones(n, dtype=bool)
    if slo_ttft_s is not None:
        ok &= cols["ttft_s"] <= slo_ttft_s
    if slo_tpot_s is not None:
        ok &= ~(cols["tpot_s"] > slo_tpot_s)  # one-token requests have no TPOT and pass
    return {
        "requests": n,
        "span_s": span,
        "requests_per_s": n / span,
        "output_tokens_per_s": float(cols["output_len"].sum()) / span,
        "input_tokens_per_s": float(cols["prompt_len"].sum()) / span,
        "ttft_s": summary(cols["ttft_s"]),
        "tpot_s": summary(cols["tpot_s"]),
        "e2e_s": summary(cols["e2e_s"]),
        "queue_s": summary(cols["queue_s"]),
        "goodput_requests_per_s": float(ok.sum()) / span if (slo_ttft_s or slo_tpot_s) else None,
        "slo_attained": float(ok.mean()) if (slo_ttft_s or slo_tpot_s) else None,
        "mean_in_system": run.in_system_area / span,
        "kv_utilization": float(np.dot(used, dur)) / (num_blocks * span) if num_blocks else 0.0,
        "kv_utilization_peak": float(used.max()) / num_blocks if used.size else 0.0,
        "preemptions": int(cols["preemptions"].sum()),
        "iterations": len(dur),
        "busy_fraction": busy / span,
        "mean_batch": float(np.dot(batch, dur) / busy) if busy else 0.0,
    }


__all__ = ["PERCENTILES", "request_table", "run_metrics", "summary"]
