"""``ioaware serve-sim`` and ``ioaware serve-search``: a model served on a GPU under load (the serving
simulator, ``costmodel.serving``) and the best setup within a latency target."""

from __future__ import annotations

import argparse
import re

from costmodel.cli.args import DEFAULT_GPU, fraction, gpu_name, model_name, positive_float, positive_int
from costmodel.cli.text import si, table

# Field names in the library's messages -> the options that set them.
_OPTIONS = {
    "prompt_len": "--prompt-len", "output_len": "--output-len", "rate_per_s": "--rate", "n_requests": "--requests",
    "max_batch_tokens": "--max-batch-tokens", "max_seqs": "--max-seqs", "block_size": "--block-size",
    "tensor_parallel": "--tp", "scheduler": "--scheduler", "preemption": "--preemption", "trace": "--trace",
    "swap_bandwidth_Bps": "--swap-bandwidth", "num_blocks": "--num-blocks", "alpha": "--spec-alpha",
    "gamma": "--spec-gamma", "gpu_memory_utilization": "--gpu-memory-utilization", "model": "--model", "engine": "--engine",
}
SCHEDULERS = ("continuous", "chunked", "static")


def _option_names(message: str) -> str:
    m = re.match(r"^([A-Za-z0-9_]+):", message)
    if m and m.group(1) in _OPTIONS:
        return _OPTIONS[m.group(1)] + message[m.end(1):]
    return message


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=model_name, required=True, help="preset name or model YAML")
    p.add_argument("--gpu", type=gpu_name, default=DEFAULT_GPU, help=f"bundled GPU or spec file (default {DEFAULT_GPU})")
    p.add_argument("--prompt-len", default="512", metavar="DIST",
                   help="prompt tokens: N, uniform:A:B, lognormal:MEAN:SIGMA or a file of lengths (default 512)")
    p.add_argument("--output-len", default="128", metavar="DIST", help="output tokens, same forms (default 128)")
    p.add_argument("--requests", type=positive_int, default=1000, help="requests simulated (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scheduler", choices=SCHEDULERS, default="chunked",
                   help="continuous (vLLM), chunked (Sarathi-Serve chunked prefill, default) or static")
    p.add_argument("--block-size", type=positive_int, default=16, help="KV block tokens (default 16)")
    p.add_argument("--dtype", default="bf16", help="weights and activations (default bf16)")
    p.add_argument("--kv-dtype", help="KV cache dtype (default: --dtype)")
    p.add_argument("--gpu-memory-utilization", type=fraction, default=0.9,
                   help="share of GPU memory the engine may use (vLLM's default 0.9)")
    p.add_argument("--launch", choices=("auto", "graph", "eager"), default="auto",
                   help="step launches: auto (decode-only steps as CUDA graphs, prefill steps eager; default), graph, eager")
    p.add_argument("--engine", default="torch-loop",
                   help="host time per step of the serving engine: torch-loop (the measured PyTorch loop, default), "
                        "ideal (none), or a name in costmodel/serving/engines")
    p.add_argument("--slo-ttft", type=positive_float, metavar="S", help="TTFT target, seconds")
    p.add_argument("--slo-tpot", type=positive_float, metavar="S", help="TPOT target, seconds")


def register(subparsers) -> None:
    """Add ``serve-sim`` and ``serve-search`` (costmodel/cli/main.py calls this)."""
    p = subparsers.add_parser(
        "serve-sim", help="simulate serving under load: TTFT, TPOT, throughput, KV use, preemptions",
        description="Discrete-event serving simulation over a paged KV cache; each step timed by the "
                    "whole-model step predictor.")
    _common(p)
    p.add_argument("--rate", type=positive_float, help="Poisson arrivals per second")
    p.add_argument("--trace", help="trace file (CSV or JSON lines: arrival_s, prompt_len, output_len)")
    p.add_argument("--tp", type=positive_int, default=1, help="tensor-parallel GPUs (default 1)")
    p.add_argument("--max-seqs", type=positive_int, default=256, help="requests in a batch at most (default 256)")
    p.add_argument("--max-batch-tokens", type=positive_int,
                   help="token budget per step (default: 2048 chunked; the model's context continuous)")
    p.add_argument("--preemption", choices=("recompute", "swap"), default="recompute")
    p.add_argument("--swap-bandwidth", type=positive_float, metavar="BPS",
                   help="host link bytes/s for --preemption swap (e.g. 64e9, PCIe 5.0 x16 one way)")
    p.add_argument("--num-blocks", type=positive_int, help="KV blocks (default: memory minus weights)")
    p.add_argument("--spec-draft", type=model_name, metavar="MODEL", help="speculative decoding: the draft model")
    p.add_argument("--spec-gamma", type=positive_int, default=4, help="draft tokens per step (default 4)")
    p.add_argument("--spec-alpha", type=fraction, default=0.7, help="acceptance rate in [0, 1) (default 0.7)")
    p.add_argument("--max-rate", action="store_true",
                   help="find the highest --rate meeting --slo-ttft / --slo-tpot (p50) instead of one run")
    p.add_argument("--stat", choices=("p50", "p90", "p99", "mean"), default="p50", help="SLO statistic (--max-rate)")
    p.add_argument("--plot", metavar="STEM", help="write STEM-latency.html and STEM-timeline.html")
    p.add_argument("--per-request", action="store_true",
                   help="JSON: add each request's arrival, lengths, TTFT, TPOT, e2e, queueing, preemptions")
    p.set_defaults(func=run_sim)

    s = subparsers.add_parser(
        "serve-search", help="best (TP, max batch, chunk) for throughput within a TTFT / TPOT target",
        description="For each setup of the grid, the highest Poisson rate meeting the SLO; ranked per GPU.")
    _common(s)
    s.add_argument("--tp", type=positive_int, nargs="+", default=[1, 2, 4, 8], help="TP sizes (default 1 2 4 8)")
    s.add_argument("--max-seqs", type=positive_int, nargs="+", default=[64, 128, 256])
    s.add_argument("--max-batch-tokens", type=positive_int, nargs="+", default=[512, 1024, 2048, 4096],
                   help="chunk sizes / token budgets")
    s.add_argument("--stat", choices=("p50", "p90", "p99", "mean"), default="p50")
    s.add_argument("--workers", type=positive_int, default=1, help="local processes (default 1)")
    s.add_argument("--ray", metavar="ADDRESS", help="run the grid on Ray ('local' starts one here; needs extra 'ray')")
    s.set_defaults(func=run_search)


def _sim_options(args) -> dict:
    return dict(n_requests=args.requests, prompt_len=args.prompt_len, output_len=args.output_len, seed=args.seed,
                scheduler=args.scheduler, block_size=args.block_size, dtype=args.dtype, kv_dtype=args.kv_dtype,
                gpu_memory_utilization=args.gpu_memory_utilization, step_options={"launch": args.launch},
                engine=args.engine)


def _ms(x) -> str:
    return "n/a" if x is None else f"{x * 1e3:.1f} ms"


def _run_text(m: dict, cfg: dict, cap: dict) -> str:
    head = (f"{cfg['model']} on {cfg['gpu']} x{cfg['tensor_parallel']}, {cfg['scheduler']} scheduler, "
            f"{cap['num_blocks']} KV blocks of {cfg['block_size']} tokens ({cap['tokens']} tokens); {cfg['workload']}")
    rows = [(name, _ms(m[key]["p50"]), _ms(m[key]["p90"]), _ms(m[key]["p99"]), _ms(m[key]["mean"]))
            for name, key in (("TTFT", "ttft_s"), ("TPOT", "tpot_s"), ("end-to-end", "e2e_s"), ("queueing", "queue_s"))]
    lines = [head, table(rows, ("latency", "p50", "p90", "p99", "mean")),
             f"throughput {m['requests_per_s']:.2f} req/s, {si(m['output_tokens_per_s'], 'tok/s')} out, "
             f"{si(m['input_tokens_per_s'], 'tok/s')} in; mean in system {m['mean_in_system']:.1f}; "
             f"mean batch {m['mean_batch']:.1f}; KV use {100 * m['kv_utilization']:.1f}% mean, "
             f"{100 * m['kv_utilization_peak']:.1f}% peak; {m['preemptions']} preemptions; {m['iterations']} steps"]
    if cfg["tensor_parallel"] > 1 and cfg.get("tp_communication") == "not counted":
        lines.append(f"TP {cfg['tensor_parallel']}: compute and memory split; the all-reduces are not counted (optimistic)")
    if m.get("goodput_requests_per_s") is not None:
        lines.append(f"goodput {m['goodput_requests_per_s']:.2f} req/s ({100 * m['slo_attained']:.1f}% met the SLO)")
    return "\n".join(lines)


def run_sim(args: argparse.Namespace) -> tuple[dict, str]:
    from costmodel.serving import simulate_serving
    from costmodel.serving.search import max_rate_at_slo

    if args.trace is None and args.rate is None:
        raise ValueError("--rate: give a Poisson rate (requests per second) or --trace FILE")
    options = _sim_options(args) | dict(
        tensor_parallel=args.tp, max_seqs=args.max_seqs, max_batch_tokens=args.max_batch_tokens,
        preemption=args.preemption, swap_bandwidth_Bps=args.swap_bandwidth, num_blocks=args.num_blocks)
    if args.spec_draft is not None:
        options["speculative"] = dict(draft=args.spec_draft, gamma=args.spec_gamma, alpha=args.spec_alpha)
    try:
        if args.max_rate:
            if args.slo_ttft is None and args.slo_tpot is None:
                raise ValueError("--max-rate: give --slo-ttft and/or --slo-tpot")
            found = max_rate_at_slo(args.model, args.gpu, slo_ttft_s=args.slo_ttft, slo_tpot_s=args.slo_tpot,
                                    stat=args.stat, start_rate_per_s=args.rate or 1.0, **options)
            best = found.pop("result")
            data = {**found, "run": best.to_json(args.per_request) if best else None}
            slo = " and ".join(f"{args.stat} {name} <= {v * 1e3:g} ms" for name, v in
                               (("TTFT", args.slo_ttft), ("TPOT", args.slo_tpot)) if v is not None)
            text = (f"highest rate with {slo}: "
                    f"{found['max_rate_per_s']:.2f} req/s (limited by {found['limited_by']}; saturation "
                    f"{found['saturation_rate_per_s']:.2f} req/s; {len(found['trials'])} runs)")
            if best is not None:
                text += "\n" + _run_text(best.metrics, best.config, best.capacity)
            result = best
        else:
            result = simulate_serving(args.model, args.gpu, args.trace, rate_per_s=args.rate,
                                      slo_ttft_s=args.slo_ttft, slo_tpot_s=args.slo_tpot, **options)
            data = result.to_json(args.per_request)
            text = _run_text(result.metrics, result.config, result.capacity)
    except ValueError as exc:
        raise ValueError(_option_names(str(exc))) from None
    if args.plot and result is not None:
        from costmodel.serving.plots import save_run_figures

        data["plots"] = [str(p) for p in save_run_figures(result, args.plot)]
        text += "\nwrote " + ", ".join(data["plots"])
    return data, text


def run_search(args: argparse.Namespace) -> tuple[dict, str]:
    from costmodel.serving.search import search_configs

    if args.slo_ttft is None and args.slo_tpot is None:
        raise ValueError("--slo-ttft: give --slo-ttft and/or --slo-tpot")
    try:
        found = search_configs(args.model, args.gpu, tensor_parallel=args.tp, max_seqs=args.max_seqs,
                               max_batch_tokens=args.max_batch_tokens, workers=args.workers, ray_address=args.ray,
                               slo_ttft_s=args.slo_ttft, slo_tpot_s=args.slo_tpot, stat=args.stat, **_sim_options(args))
    except ValueError as exc:
        raise ValueError(_option_names(str(exc))) from None
    rows = [(str(r["tensor_parallel"]), str(r["max_seqs"]), str(r["max_batch_tokens"]),
             f"{r['max_rate_per_s']:.2f}", f"{r['rate_per_gpu']:.2f}", _ms(r["ttft_s"]), _ms(r["tpot_s"]))
            for r in found["rows"] if "error" not in r]
    skipped = [r for r in found["rows"] if "error" in r]
    text = table(rows, ("TP", "max seqs", "chunk", "req/s", "req/s/GPU", f"{args.stat} TTFT", f"{args.stat} TPOT"))
    if skipped:
        text += f"\n{len(skipped)} setups skipped (e.g. TP {skipped[0]['tensor_parallel']}: {skipped[0]['error']})"
    return found, text
