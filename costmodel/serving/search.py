"""The highest load a serving setup carries within latency targets, and the best setup for it.

``max_rate_at_slo``: the largest Poisson arrival rate whose simulated run keeps a TTFT percentile
(and optionally a TPOT percentile) within the SLO. The rate is doubled until the SLO fails, then
bisected to ``rel_tol``; every run uses the same seed, so the runs see the same requests with
their gaps scaled (common random numbers), and one step-cost cache (same model, GPU and TP), so
later runs ask the predictor little. Meeting the SLO is taken to be monotone in the rate.

A finite run above saturation can still show a low median TTFT (the queue has not grown long by the
time the requests run out), so the rate is also capped at the saturation rate: the requests per
second served when the same requests all arrive at once (``saturation_rate``). Above it the queue
grows without bound however good the early TTFTs look.

``search_configs``: ``max_rate_at_slo`` for every (tensor parallel, max batch, chunk size) of a grid,
in a local process pool, ranked by requests per second per GPU. Per GPU is what G / TP replicas of a
setup would each carry behind a router that sends each request to a random replica: a Poisson stream
split at random is G / TP Poisson streams of rate / (G / TP) (Poisson thinning), so the rate scales
with the replicas.
"""

from __future__ import annotations

import itertools
import math

from costmodel.serving.simulate import simulate_serving
from costmodel.task_map import map_tasks


def _meets(metrics: dict, slo_ttft_s, slo_tpot_s, stat: str) -> bool:
    ttft = metrics["ttft_s"][stat]
    tpot = metrics["tpot_s"][stat]
    ok = ttft is not None and (slo_ttft_s is None or ttft <= slo_ttft_s)
    return ok and (slo_tpot_s is None or tpot is None or tpot <= slo_tpot_s)


def saturation_rate(model, gpu, *, n_requests: int = 1000, prompt_len="512", output_len="128", seed: int = 0,
                    **simulate_options) -> tuple[float, object]:
    """Requests per second served when the workload's ``n_requests`` requests (the same lengths as
    ``poisson_workload`` draws with ``seed``) all arrive at t = 0: the setup's capacity, and the run."""
    import numpy as np

    from costmodel.models import load_model
    from costmodel.serving.workload import Workload, poisson_workload

    cfg = load_model(model)
    w = poisson_workload(1.0, n_requests, prompt_len, output_len, seed=seed, max_seq_len=cfg.max_seq_len)
    burst = Workload(np.zeros(len(w)), w.prompt_len, w.output_len, w.source.replace("poisson rate=1.0/s", "burst"))
    r = simulate_serving(cfg, gpu, burst, seed=seed, **simulate_options)
    return r.metrics["requests_per_s"], r


def max_rate_at_slo(model, gpu, *, slo_ttft_s: float | None = 0.5, slo_tpot_s: float | None = None,
                    stat: str = "p50", start_rate_per_s: float = 1.0, rel_tol: float = 0.03, max_runs: int = 24,
                    **simulate_options) -> dict:
    """The largest rate (requests/s) meeting the SLO (module docstring), with the run at that rate
    and every trial (rate, ttft, tpot, met)."""
    if slo_ttft_s is None and slo_tpot_s is None:
        raise ValueError("slo_ttft_s / slo_tpot_s: give at least one latency target")
    if stat not in ("p50", "p90", "p99", "mean"):
        raise ValueError(f"stat: {stat!r}; allowed: p50, p90, p99, mean")
    trials, best, cost = [], None, simulate_options.pop("cost", None)
    sat, sat_run = saturation_rate(model, gpu, cost=cost, **simulate_options)
    cost = sat_run.cost_object

    def trial(rate):
        nonlocal cost
        r = simulate_serving(model, gpu, rate_per_s=rate, cost=cost, **simulate_options)
        cost = r.cost_object
        met_slo = _meets(r.metrics, slo_ttft_s, slo_tpot_s, stat)
        ok = rate <= sat and met_slo
        trials.append({"rate_per_s": rate, "ttft_s": r.metrics["ttft_s"][stat], "tpot_s": r.metrics["tpot_s"][stat],
                       "requests_per_s": r.metrics["requests_per_s"], "met_slo": met_slo,
                       "above_saturation": rate > sat, "met": ok})
        return ok, r

    rate = min(start_rate_per_s, sat)
    ok, r = trial(rate)
    step = 2.0 if ok else 0.5  # double while it holds, halve while it fails, until the answer is bracketed
    lo, hi = (rate, None) if ok else (None, rate)
    best = r if ok else None
    while (lo is None or hi is None) and len(trials) < max_runs:
        rate *= step
        ok, r = trial(rate)
        if ok:
            lo, best = rate, r
        else:
            hi = rate
    while lo is not None and hi is not None and len(trials) < max_runs and hi - lo > rel_tol * lo:
        mid = math.sqrt(lo * hi)
        ok, r = trial(mid)
        if ok:
            lo, best = mid, r
        else:
            hi = mid
    failed = [t for t in trials if t["rate_per_s"] == hi]
    limited = "slo" if failed and not failed[-1]["met_slo"] else ("saturation" if hi is not None else "none")
    return {"max_rate_per_s": lo or 0.0, "bracket_per_s": [lo, hi], "saturation_rate_per_s": sat,
            "limited_by": limited, "slo_ttft_s": slo_ttft_s, "slo_tpot_s": slo_tpot_s,
            "stat": stat, "result": best, "trials": trials}


def _config_task(model, gpu, tp, max_seqs, chunk, kwargs):
    try:
        found = max_rate_at_slo(model, gpu, tensor_parallel=tp, max_seqs=max_seqs, max_batch_tokens=chunk, **kwargs)
    except ValueError as exc:  # e.g. the weights do not fit at this TP
        return {"tensor_parallel": tp, "max_seqs": max_seqs, "max_batch_tokens": chunk, "error": str(exc)}
    best = found["result"]
    return {"tensor_parallel": tp, "max_seqs": max_seqs, "max_batch_tokens": chunk,
            "max_rate_per_s": found["max_rate_per_s"], "rate_per_gpu": found["max_rate_per_s"] / tp,
            "output_tokens_per_s": best.metrics["output_tokens_per_s"] if best else 0.0,
            "ttft_s": best.metrics["ttft_s"][found["stat"]] if best else None,
            "tpot_s": best.metrics["tpot_s"][found["stat"]] if best else None, "runs": len(found["trials"])}


def search_configs(model, gpu, *, tensor_parallel=(1, 2, 4, 8), max_seqs=(64, 128, 256),
                   max_batch_tokens=(512, 1024, 2048, 4096), workers: int = 1, ray_address: str | None = None,
                   **options) -> dict:
    """``max_rate_at_slo`` on every (TP, max_seqs, max_batch_tokens) of the grid; rows ranked by rate
    per GPU (best first). ``workers > 1`` runs them in a local process pool, ``ray_address`` on Ray
    (``costmodel.task_map``)."""
    name = getattr(model, "name", model)
    gpu_arg = gpu if isinstance(gpu, str) else gpu
    tasks = [(name if isinstance(model, str) else model, gpu_arg, t, b, c, options)
             for t, b, c in itertools.product(tensor_parallel, max_seqs, max_batch_tokens)]
    rows = map_tasks(_config_task, tasks, workers=workers, ray_address=ray_address)
    ok = sorted((r for r in rows if "error" not in r), key=lambda r: -r["rate_per_gpu"])
    return {"rows": ok + [r for r in rows if "error" in r], "best": ok[0] if ok else None,
            "grid": {"tensor_parallel": list(tensor_parallel), "max_seqs": list(max_seqs),
                     "max_batch_tokens": list(max_batch_tokens)}}


__all__ = ["max_rate_at_slo", "saturation_rate", "search_configs"]
