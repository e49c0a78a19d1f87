"""``ioaware predict``: the time, throughput and peak memory of one prefill, decode or training step."""

from __future__ import annotations

import argparse

from costmodel.cli import parallel_args
from costmodel.cli.args import CommandError, gpu_name, model_name, positive_int
from costmodel.cli.text import si, table, to_jsonable

DEFAULT_PREDICT_GPU = "h200-sxm-141gb-measured"


def register(sub) -> None:
    """Add the ``predict`` subcommand (costmodel/cli/main.py calls this)."""
    p = sub.add_parser(
        "predict", help="time, tokens/s and peak memory of a prefill, decode or training step, op by op",
        description="Predict one step of a model as plain PyTorch runs it: eager prefill and training, decode as a "
                    "CUDA graph, autocast bf16 over fp32 parameters with fused AdamW for training.")
    p.add_argument("--model", type=model_name, required=True, help="preset name or model YAML")
    p.add_argument("--gpu", type=gpu_name, default=DEFAULT_PREDICT_GPU,
                   help=f"bundled GPU name or spec file (default {DEFAULT_PREDICT_GPU}, fitted on the H200)")
    p.add_argument("--phase", choices=("prefill", "decode", "train"), required=True)
    p.add_argument("--batch", type=positive_int, default=1, help="sequences (default 1)")
    p.add_argument("--seq-len", type=positive_int, required=True,
                   help="prompt / training tokens per sequence; decode: tokens already in the cache")
    p.add_argument("--dtype", choices=("bf16", "fp16", "fp8"), default="bf16")
    p.add_argument("--weight-dtype", choices=("bf16", "fp16", "fp8", "int8", "int4"),
                   help="weight-only quantization (default: --dtype)")
    p.add_argument("--kv-dtype", choices=("bf16", "fp16", "fp8", "int8"), help="KV-cache precision (default: --dtype)")
    p.add_argument("--launch", choices=("graph", "eager"), help="default: graph for decode, eager otherwise")
    p.add_argument("--recompute", choices=("none", "selective", "full"), default="none")
    p.add_argument("--tensor-parallel", type=positive_int, default=1, metavar="T",
                   help="shard heads, ffn and vocabulary T ways (compute and memory only)")
    p.add_argument("--grad-accum", type=positive_int, default=1, help="micro-batches per training step")
    p.add_argument("--attention-impl", help="name recorded for the attention kernel (default: torch's SDPA choice)")
    p.add_argument("--timeline", metavar="FILE.html", help="write a plotly Gantt of the predicted kernels")
    p.add_argument("--timeline-layers", type=positive_int, default=2, help="layers drawn in the timeline (default 2)")
    p.add_argument("--trace", metavar="FILE.json", help="write a Chrome trace of the predicted kernels")
    parallel_args.add_arguments(p)  # --cluster / --gpus / --tp / --pp ...: many GPUs (costmodel/cli/parallel_args.py)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> tuple[dict, str]:
    from costmodel.outputs import check_writable, write_atomic
    from costmodel.step import predict_step

    if parallel_args.wants_parallel(args):
        return parallel_args.run(args)

    for option, path, suffix in (("--timeline", args.timeline, ".html"), ("--trace", args.trace, ".json")):
        if path:
            check_writable(path, option, (suffix,))
    if args.phase != "train" and args.grad_accum != 1:
        raise CommandError("--grad-accum: only a training step accumulates gradients; 1 is allowed here")
    if args.phase != "train" and args.recompute != "none":
        raise CommandError("--recompute: only a training step recomputes activations; 'none' is allowed here")
    r = predict_step(args.model, args.gpu, args.phase, batch=args.batch, seq_len=args.seq_len, dtype=args.dtype,
                     kv_dtype=args.kv_dtype, weight_dtype=args.weight_dtype, launch=args.launch,
                     recompute=args.recompute, attention_impl=args.attention_impl,
                     tensor_parallel=args.tensor_parallel, grad_accum=args.grad_accum)
    data = to_jsonable(r.to_dict())
    data["fits_in_memory"] = bool(r.memory_bytes <= args.gpu.hbm_bytes)
    written = []
    if args.timeline:
        from costmodel.step.timeline import timeline_figure

        html = timeline_figure(r, args.timeline_layers).to_html(include_plotlyjs=True, full_html=True)
        write_atomic(args.timeline, html, "--timeline")
        written.append(f"timeline: {args.timeline}")
    if args.trace:
        from costmodel.step.timeline import chrome_trace

        write_atomic(args.trace, chrome_trace(r), "--trace")
        written.append(f"trace: {args.trace}")
    rows = [(o.name, "each" if o.layer else "", o.part, str(o.count), str(o.kernels), si(o.flops, "FLOP"),
             si(o.bytes["hbm"], "B"), si(o.time_s, "s"), str(o.bound)) for o in r.ops]
    head = (f"{r.model} {r.phase} on {r.gpu}: batch {args.batch}, seq_len {args.seq_len}, {args.dtype}, {r.launch} "
            f"launch, attention {r.attention_impl}\n"
            f"time {si(r.time_s, 's')} (kernels {si(r.gpu_time_s, 's')} GPU, {r.kernels} kernels), "
            f"{r.tokens_per_s:,.0f} tokens/s, peak memory {si(r.memory_bytes, 'B')}")
    mem = "memory at the peak: " + ", ".join(f"{k} {si(v, 'B')}" for k, v in r.memory.items())
    if not data["fits_in_memory"]:
        mem += f" — more than the GPU's {si(args.gpu.hbm_bytes, 'B')}: this step does not fit"
    text = "\n".join([head, table(rows, ("op", "layer", "part", "count", "kernels", "FLOPs", "DRAM", "time",
                                         "bound")), mem, *written])
    return data, text
