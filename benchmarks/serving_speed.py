"""How long does a 10,000-request serving simulation take on one core (target: <= 10 s)?

Llama-3-8B on one H200, the chunked-prefill scheduler, Poisson arrivals, prompts uniform on
[256, 1024] and outputs on [64, 512] tokens, at a light and a heavy load; each step from
costmodel.step.predict_batch through the discovery-pass cache (costmodel/serving/cost.py).
Prints one line per run and, with --json PATH, writes them.
"""

import argparse
import json
import os
import platform
import time

from costmodel.serving import simulate_serving


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--rates", type=float, nargs="+", default=[4.0, 20.0])
    ap.add_argument("--schedulers", nargs="+", default=["chunked", "continuous"])
    ap.add_argument("--json", help="write the runs here")
    args = ap.parse_args()
    rows = []
    for scheduler in args.schedulers:
        for rate in args.rates:
            t0 = time.perf_counter()
            cpu0 = time.process_time()
            r = simulate_serving("llama3-8b", "h200-sxm-141gb-measured", rate_per_s=rate, n_requests=args.requests,
                                 prompt_len="uniform:256:1024", output_len="uniform:64:512", seed=0,
                                 scheduler=scheduler)
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            m = r.metrics
            row = {"scheduler": scheduler, "rate_per_s": rate, "requests": args.requests, "wall_s": wall, "cpu_s": cpu,
                   "iterations": m["iterations"], "requests_per_s": m["requests_per_s"],
                   "ttft_p50_s": m["ttft_s"]["p50"], "tpot_p50_s": m["tpot_s"]["p50"], **r.cost}
            rows.append(row)
            print(f"{scheduler:10s} rate {rate:5.1f}/s: {wall:5.2f} s wall, {cpu:5.2f} s CPU, {m['iterations']} steps, "
                  f"{r.cost['distinct_batches']} distinct batches, {r.cost['predictor_calls']} predictor calls "
                  f"({r.cost['predictor_wall_s']:.2f} s), passes {r.cost['discovery_passes_new_keys']}; "
                  f"served {m['requests_per_s']:.2f} req/s, p50 TTFT {m['ttft_s']['p50'] * 1e3:.0f} ms, "
                  f"p50 TPOT {m['tpot_s']['p50'] * 1e3:.1f} ms", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": "python3 benchmarks/serving_speed.py " + " ".join(
                f"--{k} {v}" for k, v in vars(args).items() if k != "json"), "python": platform.python_version(),
                "cpu": platform.processor() or platform.machine(), "cpus_visible": os.cpu_count(),
                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "runs": rows}, f, indent=1)


if __name__ == "__main__":
    main()
