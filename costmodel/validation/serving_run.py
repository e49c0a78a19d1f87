"""The serving check on a GPU: real continuous batching over a paged KV cache, Poisson traces at three
rates for two models, every request's token times and every step measured.

    python3 -m costmodel.validation.serving_run --out DIR [--budget-s 420] [--requests 300] [--models M ...] [--smoke]

For each model (Llama-3-8B, TinyLlama-1.1B; bf16, random seeded weights) the rates are 30%, 60% and
85% of the saturation rate the simulator predicts for the same setup (so the run spans light load
to near saturation), after a burst of the same requests all at t = 0 that measures the saturation
rate; ``--requests`` requests each (prompts uniform on [256, 1024], outputs on
[32, 256]), the continuous scheduler; then the chunked one at the middle rate. Every step is a CUDA
graph, all captured before the first trace: decode-only steps per batch bucket, steps holding
prefill per token bucket (``serving_paged.PREFILL_BUCKETS``; ``--eager-prefill`` launches those
eagerly, the loop of the runs before 2026-12-02 but for its attention kernel). Writes DIR/serving_h200.json after every run (the traces, the measurements, the setup), so a
run stopped by its budget keeps what it measured; ``costmodel.validation.serving_compare`` then simulates the
same traces and sets the two side by side (on a CPU). ``--smoke`` runs every path on the CPU with a
toy model and toy traces, the CUDA graphs emulated (``serving_paged.PagedModel._capture``), so the
GPU call cannot fail on a typo.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time

import numpy as np

from costmodel.models import ModelConfig, load_model
from costmodel.validation.serving_kernel_check import check_kernel, check_varlen_kernel
from costmodel.serving.workload import Workload, poisson_workload

MODELS = ("llama3-8b", "tinyllama-1.1b")
RATE_FRACTIONS = (0.3, 0.6, 0.85)
PROMPT, OUTPUT = "uniform:256:1024", "uniform:32:256"
BLOCK = 16
MAX_SEQS, CHUNK = 128, 2048
MEMORY_UTILIZATION = 0.75  # below vLLM's 0.9: graph pools and the decode gather buffers need room
TOY = ModelConfig(name="toy", source="smoke test", vocab_size=128, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2,
                  ffn_dim=128, ffn_type="swiglu", norm_type="rmsnorm", attn_bias=False, mlp_bias=False,
                  tied_embeddings=False, position_embedding="rope", max_seq_len=512)


def rate_engine(eager_prefill: bool):
    """The engine whose simulated saturation sets a run's rates: the committed ``torch-loop`` fit,
    launched as this run launches its prefills (the rates need only be near the loop's own)."""
    from costmodel.serving.engine_host import load_engine
    from costmodel.validation.serving_paged import PREFILL_TOKEN_MULTIPLE

    loop = load_engine("torch-loop")
    if eager_prefill:
        return loop.model_copy(update={"prefill_launch": "eager", "prefill_token_multiple": 1})
    return loop.model_copy(update={"prefill_launch": "graph", "prefill_token_multiple": PREFILL_TOKEN_MULTIPLE,
                                   "prefill_step_s": loop.graph_step_s, "prefill_per_token_s": 0.0})


def meta(torch) -> dict:
    m = {"command": " ".join(["python3 -m costmodel.validation.serving_run"] + sys.argv[1:]),
         "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "torch": torch.__version__}
    if torch.cuda.is_available():
        m.update(gpu=torch.cuda.get_device_name(), cuda=torch.version.cuda)
        try:
            m["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm",
                                          "--format=csv,noheader"], capture_output=True, text=True,
                                         timeout=20).stdout.strip()
        except Exception as exc:  # noqa: BLE001 - the record says why
            m["driver"] = f"unknown ({exc})"
    return m


def capture_graphs(paged, max_seqs: int, max_tokens: int, deadline: float) -> int:
    """Capture the decode graph of every batch bucket and the prefill graph of every token bucket a
    run can meet (one graph serves every context: the kernels read lengths, block tables and tiles
    from device buffers), with dummy requests on the scratch block, so no capture happens inside a
    timed trace; the largest first, so the smaller reuse its memory in the shared pool."""
    from costmodel.serving.request import Request
    from costmodel.serving.schedulers import Batch
    from costmodel.validation.serving_paged import BATCH_BUCKETS, PREFILL_BUCKETS

    n = 0
    if paged.prefill_graphs:
        for T in sorted((b for b in PREFILL_BUCKETS if b <= max_tokens), reverse=True):
            if time.time() > deadline:
                return n
            batch = Batch()
            r = Request(-1, 0.0, T, 2)
            batch.prefill.append((r, T, 0))
            paged.step(batch, {-1: [paged.scratch_block] * -(-T // paged.bs)}, {-1: [0] * T}, use_graphs=True)
            n += 1

    for B in [b for b in BATCH_BUCKETS if b <= max_seqs]:
        if time.time() > deadline:
            return n
        batch = Batch()
        for i in range(B):
            r = Request(-1 - i, 0.0, 1, 2)
            r.computed, r.generated = 1, 1
            batch.decode.append(r)
        tables = {r.rid: [paged.scratch_block] for r in batch.decode}
        tokens = {r.rid: [0, 0] for r in batch.decode}
        paged.step(batch, tables, tokens, use_graphs=True)
        n += 1
    for length in (16, 300, 1000, 2048):  # eager prefills once outside the traces: kernels loaded, heuristics cached
        if paged.prefill_graphs:
            break
        length = min(length, paged.cfg.max_seq_len // 2)
        batch = Batch()
        r = Request(-1, 0.0, length, 2)
        batch.prefill.append((r, length, 0))
        paged.step(batch, {-1: [paged.scratch_block] * (length // paged.bs + 1)}, {-1: [0] * length}, use_graphs=True)
    return n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget-s", type=float, default=420.0, help="stop (and keep what was measured) after this")
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--models", nargs="+", default=list(MODELS), help=f"presets to serve (default {' '.join(MODELS)})")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--eager-prefill", action="store_true", help="launch steps holding prefill eagerly (no token-bucket graphs)")
    args = ap.parse_args(argv)
    if args.smoke:  # the paged decode kernel in Triton's interpreter (read when triton decorates it)
        os.environ.setdefault("TRITON_INTERPRET", "1")
    t0 = time.time()
    deadline = t0 + args.budget_s
    import torch

    from costmodel.validation.reference_model import build
    from costmodel.serving.capacity import kv_capacity
    from costmodel.serving.search import saturation_rate
    from costmodel.validation.serving_paged import PREFILL_TOKEN_MULTIPLE, PagedModel
    from costmodel.validation.serving_loop import serve
    from hardware_specs import load_gpu

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "serving_h200.json")
    dev = "cpu" if args.smoke else "cuda"
    dtype = torch.float32 if args.smoke else torch.bfloat16
    sync = torch.cuda.synchronize if dev == "cuda" else None
    data = {"meta": meta(torch), "setup": {"block_size": BLOCK, "max_seqs": MAX_SEQS, "max_batch_tokens": CHUNK,
                                           "gpu_memory_utilization": MEMORY_UTILIZATION, "prompt_len": PROMPT,
                                           "output_len": OUTPUT, "requests": args.requests,
                                           "prefill_launch": "eager" if args.eager_prefill else "graph",
                                           "prefill_token_multiple": 1 if args.eager_prefill else PREFILL_TOKEN_MULTIPLE},
            "runs": [], "skipped": []}
    gpu = load_gpu("h200-sxm-141gb")
    data["kernel_check"] = check_kernel(torch, dev, dtype)
    print("paged decode kernel:", data["kernel_check"], flush=True)
    data["varlen_kernel_check"] = check_varlen_kernel(torch, dev, dtype)
    print("paged varlen kernel:", data["varlen_kernel_check"], flush=True)

    def save():
        data["meta"]["elapsed_s"] = round(time.time() - t0, 1)
        with open(path, "w") as f:
            json.dump(data, f)

    for name in (["toy"] if args.smoke else args.models):
        cfg = TOY if args.smoke else load_model(name)
        if time.time() > deadline - 30:
            data["skipped"].append(f"{name}: out of budget")
            break
        model = build(cfg, dtype=dtype, device=dev, seed=0, max_pos=cfg.max_seq_len).eval()
        cap = kv_capacity(cfg, gpu, block_size=BLOCK, gpu_memory_utilization=MEMORY_UTILIZATION)
        blocks = 256 if args.smoke else cap["num_blocks"]
        paged = PagedModel(model, blocks, BLOCK, dtype, dev, emulate_graphs=args.smoke,  # smoke: graphs emulated
                           prefill_graphs=not args.eager_prefill)
        if args.smoke:
            rates = [20.0, 40.0]
            sat = None
        else:  # the simulator's saturation rate for this very setup sets the rates
            sat, _ = saturation_rate(cfg, gpu, n_requests=args.requests, prompt_len=PROMPT, output_len=OUTPUT,
                                     scheduler="continuous", max_seqs=MAX_SEQS, max_batch_tokens=CHUNK,
                                     num_blocks=blocks, engine=rate_engine(args.eager_prefill))
            rates = [f * sat for f in RATE_FRACTIONS]
        with torch.no_grad():
            t_cap = time.time()
            graphs = capture_graphs(paged, 16 if args.smoke else MAX_SEQS, 64 if args.smoke else CHUNK, deadline - 60)
            print(f"{name}: {graphs} graphs captured in {time.time() - t_cap:.1f} s", flush=True)
            # a burst (every request at t = 0) measures the saturation rate; then the Poisson traces
            plan = [("continuous", None)] + [("continuous", r) for r in rates] + [("chunked", rates[len(rates) // 2])]
            for scheduler, rate in plan:
                left = deadline - time.time()
                if left < 20:
                    data["skipped"].append(f"{name} {scheduler} {rate}/s: out of budget")
                    continue
                n = 12 if args.smoke else args.requests
                w = poisson_workload(rate or 1.0, n, PROMPT if not args.smoke else "uniform:8:40",
                                     OUTPUT if not args.smoke else "uniform:2:12", seed=1,
                                     max_seq_len=cfg.max_seq_len)
                if rate is None:
                    w = Workload(np.zeros(len(w)), w.prompt_len, w.output_len, "burst")
                out = serve(paged, w, scheduler=scheduler, num_blocks=blocks, max_seqs=MAX_SEQS,
                            max_batch_tokens=CHUNK, use_graphs=True, budget_s=left - 10, sync=sync)
                data["runs"].append({
                    "model": name, "scheduler": scheduler, "rate_per_s": rate, "simulated_saturation_per_s": sat,
                    "num_blocks": blocks, "graphs_captured": graphs,
                    "trace": {"arrival_s": w.arrival_s.tolist(), "prompt_len": w.prompt_len.tolist(),
                              "output_len": w.output_len.tolist()}, **out})
                save()
                m = out.get("metrics") or {}
                print(f"{name} {scheduler} {rate or 'burst'}/s: served {out['served']}/{out['offered']}, "
                      f"{m.get('requests_per_s', 0):.2f} req/s, p50 TTFT {((m.get('ttft_s') or {}).get('p50') or 0) * 1e3:.0f} ms, "
                      f"p50 TPOT {((m.get('tpot_s') or {}).get('p50') or 0) * 1e3:.1f} ms", flush=True)
        del paged, model
        if dev == "cuda":
            torch.cuda.empty_cache()
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
