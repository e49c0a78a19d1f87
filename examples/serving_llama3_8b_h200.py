"""How many requests per second can one H200 serve Llama-3-8B at p50 TTFT < 500 ms?

For two workloads (vLLM benchmark_serving's random-dataset default, 1024 prompt and 128 output tokens;
and a mixed one, prompts uniform on [256, 1024], outputs on [64, 512]) and two schedulers (vLLM's
continuous batching, Sarathi-Serve's chunked prefill with a 2048-token budget), the highest Poisson
rate whose simulated run keeps the median TTFT under 500 ms, capped at the saturation rate (the
same requests all at once). Each step is timed by costmodel.step.predict_batch on the calibrated H200
spec (bf16, CUDA-graph decode, eager prefill) plus the serving engine's host time per step (the
measured PyTorch loop's, costmodel/serving/engines/torch-loop.yaml); the KV cache is what 90% of the
H200's memory leaves beside the weights, max 256 sequences.

Writes (into --out, default out/examples/serving_llama3_8b_h200):
    answer.json                          the rates, and each search's trials
    mixed-chunked-latency.html           latency CDFs at the answer's rate (mixed workload, chunked)
    mixed-chunked-timeline.html          batch size, tokens and KV use over time there

python examples/serving_llama3_8b_h200.py [--out DIR] [--requests N]   (N = 300 by default, seconds on
a CPU; the README's numbers are from --requests 2000)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from costmodel.cli.text import to_jsonable
from costmodel.serving.plots import save_run_figures
from costmodel.serving.search import max_rate_at_slo

WORKLOADS = {"vllm-random": ("1024", "128"), "mixed": ("uniform:256:1024", "uniform:64:512")}
SCHEDULERS = ("continuous", "chunked")
SLO_TTFT_S = 0.5


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out/examples/serving_llama3_8b_h200")
    ap.add_argument("--requests", type=int, default=300)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    answer = {"question": __doc__.splitlines()[0], "model": "llama3-8b", "gpu": "h200-sxm-141gb-measured",
              "slo": f"p50 TTFT <= {SLO_TTFT_S} s", "requests_per_run": args.requests, "runs": []}
    for wname, (prompt, output) in WORKLOADS.items():
        for scheduler in SCHEDULERS:
            found = max_rate_at_slo("llama3-8b", "h200-sxm-141gb-measured", slo_ttft_s=SLO_TTFT_S, start_rate_per_s=8.0,
                                    n_requests=args.requests, prompt_len=prompt, output_len=output,
                                    scheduler=scheduler, seed=0)
            best = found.pop("result")
            m = best.metrics
            print(f"{wname:11s} {scheduler:10s}: {found['max_rate_per_s']:5.1f} req/s (limited by "
                  f"{found['limited_by']}; saturation {found['saturation_rate_per_s']:.1f} req/s): p50 TTFT "
                  f"{m['ttft_s']['p50'] * 1e3:.0f} ms, p50 TPOT {m['tpot_s']['p50'] * 1e3:.1f} ms, "
                  f"{m['output_tokens_per_s']:.0f} output tok/s, mean batch {m['mean_batch']:.0f}")
            answer["runs"].append({"workload": wname, "prompt_len": prompt, "output_len": output,
                                   "scheduler": scheduler, **found, "metrics": m})
            if wname == "mixed" and scheduler == "chunked":
                save_run_figures(best, out / "mixed-chunked")
    (out / "answer.json").write_text(json.dumps(to_jsonable(answer), indent=1))


if __name__ == "__main__":
    main()
