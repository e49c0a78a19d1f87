"""Measured against simulated serving: the GPU run's traces (``serving_run``) re-served by the simulator.

    python3 -m costmodel.validation.serving_compare RESULTS.json [--gpu SPEC] [--json OUT]

For each measured run the simulator serves the very same trace (arrival times, prompt and output
lengths) with the same scheduler, limits and KV blocks, and the two are set side by side: throughput,
median TPOT and p50 TTFT (the issue's targets: within 10%, 10% and 15% below saturation), and the
saturation rate (the burst runs; within 10%). Each measured step is also predicted on its own
(``predict_batch`` on its recorded composition), which separates step-time error from scheduling
error. Runs on a CPU.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

TARGETS = {"requests_per_s": 0.10, "tpot_p50_s": 0.10, "ttft_p50_s": 0.15, "saturation_per_s": 0.10}


def _rel(sim, meas):
    return None if sim is None or not meas else sim / meas - 1


def step_batches(steps) -> tuple[np.ndarray, np.ndarray]:
    """(steps, requests) arrays of new tokens and contexts of recorded loop steps, padded with zeros,
    for ``predict_batch``: a step's decodes at their mean context (the K/V they read and the keys
    they attend are linear in it), then its prefill chunks as (new, context)."""
    width = max(s["decodes"] + len(s["chunks"]) for s in steps)
    new = np.zeros((len(steps), width), dtype=np.int64)
    ctx = np.zeros((len(steps), width), dtype=np.int64)
    for i, s in enumerate(steps):
        d = s["decodes"]
        if d:
            new[i, :d], ctx[i, :d] = 1, round(s["decode_ctx_sum"] / d)
        for j, (m, c) in enumerate(s["chunks"]):
            new[i, d + j], ctx[i, d + j] = m, c
    return new, ctx


def step_ratios(model, gpu, steps, engine="torch-loop", **options) -> dict:
    """predicted / measured seconds of each recorded step, by kind (decode-only, prefill-only, mixed);
    decode-only steps predicted as CUDA graphs, the others as the engine launches them, each
    with the engine's host time (``costmodel.serving.engine_host``) as the simulator adds it."""
    from costmodel.serving.engine_host import load_engine
    from costmodel.step import predict_batch

    host = load_engine(engine)

    if not steps:
        return {}
    new, ctx = step_batches(steps)
    kind = np.array(["mixed" if s["decodes"] and s["chunks"] else ("decode" if s["decodes"] else "prefill")
                     for s in steps])
    graph = np.asarray(predict_batch(model, gpu, new_tokens=new, context_lens=ctx, launch="graph", **options).time_s)
    eager = host.prefill_launch == "eager"
    prefill = np.asarray(predict_batch(model, gpu, *host.pad_prefill(new, ctx), launch=host.prefill_launch,
                                       attention_host_per_call_s=host.eager_attention_call_s if eager else 0.0,
                                       **options).time_s)
    pred = np.where(kind == "decode", graph, prefill)  # as the loop ran them: decode-only steps as CUDA graphs
    pred = pred + np.array([host.step_s(k == "decode", s["decodes"] + len(s["chunks"]),
                                        s["decodes"] + sum(m for m, _ in s["chunks"])) for k, s in zip(kind, steps)])
    meas = np.array([s["time_s"] for s in steps])
    out = {}
    for k in ("decode", "prefill", "mixed"):
        r = pred[kind == k] / meas[kind == k]
        if r.size:
            out[k] = {"steps": int(r.size), "ratio_p50": float(np.median(r)), "ratio_p10": float(np.percentile(r, 10)),
                      "ratio_p90": float(np.percentile(r, 90))}
    return out


def compare(results: dict, gpu="h200-sxm-141gb-measured") -> dict:
    from costmodel.serving import simulate_serving
    from costmodel.serving.workload import Workload

    setup = results["setup"]
    rows = []
    for run in results["runs"]:
        if run.get("stopped_by_budget") or "metrics" not in run:
            rows.append({"model": run["model"], "scheduler": run["scheduler"], "rate_per_s": run["rate_per_s"],
                         "skipped": "run stopped by its budget"})
            continue
        t = run["trace"]
        w = Workload(np.array(t["arrival_s"]), np.array(t["prompt_len"]), np.array(t["output_len"]), "measured trace")
        sim = simulate_serving(run["model"], gpu, w, scheduler=run["scheduler"], max_seqs=setup["max_seqs"],
                               max_batch_tokens=setup["max_batch_tokens"], block_size=setup["block_size"],
                               num_blocks=run["num_blocks"]).metrics
        meas = run["metrics"]
        pairs = {"requests_per_s": (sim["requests_per_s"], meas["requests_per_s"]),
                 "tpot_p50_s": (sim["tpot_s"]["p50"], meas["tpot_s"]["p50"]),
                 "ttft_p50_s": (sim["ttft_s"]["p50"], meas["ttft_s"]["p50"])}
        row = {"model": run["model"], "scheduler": run["scheduler"], "rate_per_s": run["rate_per_s"],
               "burst": run["rate_per_s"] is None,
               **{k: {"simulated": s, "measured": m, "rel_error": _rel(s, m)} for k, (s, m) in pairs.items()},
               "steps": step_ratios(run["model"], gpu, run["steps"])}
        if row["burst"]:
            row["saturation_per_s"] = row.pop("requests_per_s")
        row["within_targets"] = {k: abs(v["rel_error"]) <= TARGETS[k] for k, v in row.items()
                                 if k in TARGETS and isinstance(v, dict) and v["rel_error"] is not None}
        rows.append(row)
    for r in rows:  # the targets hold below saturation: flag the rates at or past the measured one
        burst = [b for b in rows if b.get("burst") and b["model"] == r["model"]]
        if not r.get("burst") and burst and "saturation_per_s" in burst[0] and "skipped" not in r:
            r["below_measured_saturation"] = r["rate_per_s"] < burst[0]["saturation_per_s"]["measured"]
    return {"meta": results.get("meta"), "targets": TARGETS, "rows": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("--gpu", default="h200-sxm-141gb-measured", help="spec the simulator uses (default: the H200 calibrated one)")
    ap.add_argument("--json", help="write the comparison here")
    args = ap.parse_args(argv)
    with open(args.results) as f:
        out = compare(json.load(f), args.gpu)
    for r in out["rows"]:
        if "skipped" in r:
            print(f"{r['model']} {r['scheduler']} {r['rate_per_s']}: {r['skipped']}")
            continue
        parts = [f"{k} sim {v['simulated']:.4g} meas {v['measured']:.4g} ({100 * v['rel_error']:+.0f}%)"
                 for k, v in r.items() if k in TARGETS]
        print(f"{r['model']} {r['scheduler']} {r['rate_per_s'] or 'burst'}: " + "; ".join(parts))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
