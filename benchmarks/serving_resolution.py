"""What does the step-cost cache's rounding (costmodel/serving/cost.py) cost in accuracy?

The same 2,000-request run (Llama-3-8B on one H200, Poisson 20 req/s, prompts uniform on [256, 1024],
outputs on [64, 512]) with batch counts rounded to 4, 6 and 8 significant bits and not at all
(resolution_bits=None: every distinct batch predicted, the decodes still at their mean context).
Prints the metrics of each and their difference from the unrounded run.
"""

import time

from costmodel.serving import simulate_serving

for scheduler in ("chunked", "continuous"):
    runs = {}
    for bits in (None, 8, 6, 4):
        t0 = time.process_time()
        r = simulate_serving("llama3-8b", "h200-sxm-141gb-measured", rate_per_s=20.0, n_requests=2000,
                             prompt_len="uniform:256:1024", output_len="uniform:64:512", seed=0,
                             scheduler=scheduler, resolution_bits=bits)
        m = r.metrics
        runs[bits] = (m["requests_per_s"], m["ttft_s"]["p50"], m["tpot_s"]["p50"], m["e2e_s"]["mean"])
        ref = runs[None]
        diff = ", ".join(f"{name} {100 * (v / v0 - 1):+.2f}%" for name, v, v0 in
                         zip(("req/s", "p50 TTFT", "p50 TPOT", "mean e2e"), runs[bits], ref))
        print(f"{scheduler:10s} bits={bits!s:4s}: {r.cost['distinct_batches']:6d} distinct batches, "
              f"{time.process_time() - t0:5.1f} s CPU; req/s {runs[bits][0]:.3f}, p50 TTFT {runs[bits][1] * 1e3:.2f} ms, "
              f"p50 TPOT {runs[bits][2] * 1e3:.3f} ms; against bits=None: {diff}", flush=True)
