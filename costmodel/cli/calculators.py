"""Subcommands of ``ioaware`` that ask one calculator: models, params, flops, kv-cache and memory.

Each handler takes the parsed arguments and returns ``(data, text)``. The numbers come from
the calculators (``params``, ``flops``, ``kvcache``, ``training_memory``); this module only
chooses which to ask for and lays them out. The what-if report over several models is
``costmodel.cli.sizing``.
"""

from __future__ import annotations

import argparse

import numpy as np

from costmodel.cli.args import (
    DEFAULT_GPU, KV_DTYPES, CommandError, fraction, gpu_name, model_name, positive_float, positive_int,
)
from costmodel.cli.text import si, table


def context_len(args, cfg) -> int:
    """--seq-len when given, else the model's own context length."""
    return args.seq_len if args.seq_len is not None else cfg.max_seq_len


def checked_matmul_unit(spec, dtype: str) -> str:
    """The matmul unit of ``dtype`` (--dtype), which ``spec`` (--gpu) must give a rate for."""
    from hardware_specs.roofline import matmul_unit

    unit = matmul_unit(dtype)
    if unit not in spec.peak_flops_per_s:
        usable = [d for d in ("fp32", "tf32", "fp16", "bf16", "fp8") if matmul_unit(d) in spec.peak_flops_per_s]
        raise CommandError(
            f"--dtype {dtype}: {spec.name} (--gpu) gives no {unit} rate; accepted on it: {', '.join(usable)}"
        )
    return unit



def _share(part, whole) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "n/a"


# ---------------------------------------------------------------- models, params


def cmd_models(args):
    from costmodel.models import list_models, load_model
    from costmodel.params import count_params

    models = []
    for name in list_models():
        cfg = load_model(name)
        models.append({
            "name": name, "vocab_size": cfg.vocab_size, "d_model": cfg.d_model, "n_layers": cfg.n_layers,
            "n_heads": cfg.n_heads, "n_kv_heads": cfg.n_kv_heads, "head_dim": cfg.head_dim,
            "ffn_dim": cfg.ffn_dim, "max_seq_len": cfg.max_seq_len, "sliding_window": cfg.sliding_window,
            "params": count_params(cfg).total,
        })
    rows = [
        (m["name"], str(m["vocab_size"]), str(m["d_model"]), str(m["n_layers"]), str(m["n_heads"]),
         str(m["n_kv_heads"]), str(m["max_seq_len"]), si(m["params"], ""))
        for m in models
    ]
    text = table(rows, ("model", "vocab", "d_model", "layers", "heads", "kv_heads", "context", "params"))
    return {"models": models}, text


def cmd_params(args):
    from costmodel.params import count_params

    cfg = args.model
    p = count_params(cfg)
    components = {k: getattr(p, k) for k in ("embeddings", "attention", "mlp", "norms", "lm_head")}
    data = {
        "model": cfg.name, "total_params": p.total, "components": components,
        "attention_per_layer": p.attention_per_layer, "mlp_per_layer": p.mlp_per_layer,
        "non_embedding": p.non_embedding,
    }
    rows = [(k, f"{v:,}", _share(v, p.total)) for k, v in components.items()]
    rows.append(("total", f"{p.total:,}", "100.0%"))
    note = " (tied to the token embedding)" if cfg.tied_embeddings else ""
    text = (f"Parameters of {cfg.name}, counted tensor by tensor{note}\n"
            + table(rows, ("component", "params", "share"))
            + f"\nper layer: attention {p.attention_per_layer:,}, mlp {p.mlp_per_layer:,}; "
              f"non-embedding {p.non_embedding:,}")
    return data, text


# ---------------------------------------------------------------- flops


_OPS = ("qkv_proj", "attn_scores", "attn_values", "out_proj", "mlp")


def cmd_flops(args):
    from costmodel.flops import forward_flops_per_token, model_flops_utilization, training_flops

    cfg, seq_len = args.model, context_len(args, args.model)
    fwd = forward_flops_per_token(cfg, seq_len, causal=args.causal)
    data = {
        "model": cfg.name, "seq_len": seq_len, "causal": args.causal, "keys_per_query": fwd.keys_per_query,
        "forward_flops_per_token": fwd.total, "per_layer": {op: getattr(fwd, op) for op in _OPS},
        "per_layer_total": fwd.per_layer, "n_layers": cfg.n_layers, "layers": fwd.layers, "lm_head": fwd.lm_head,
    }
    rows = [(op, si(getattr(fwd, op), "FLOP"), si(getattr(fwd, op) * cfg.n_layers, "FLOP"),
             _share(getattr(fwd, op) * cfg.n_layers, fwd.total)) for op in _OPS]
    rows.append(("lm_head (once)", "", si(fwd.lm_head, "FLOP"), _share(fwd.lm_head, fwd.total)))
    rows.append(("total", si(fwd.per_layer, "FLOP"), si(fwd.total, "FLOP"), "100.0%"))
    mask = "causal" if args.causal else "no mask"
    text = (f"Forward FLOPs per token of {cfg.name}, sequences of {seq_len} tokens ({mask}: "
            f"{fwd.keys_per_query:g} keys per query on average)\n"
            + table(rows, ("operation", "per layer", f"x {cfg.n_layers} layers", "share")))

    if args.tokens is not None:
        tr = training_flops(cfg, args.tokens, seq_len, causal=args.causal, recompute=args.recompute)
        data["training"] = {"tokens": args.tokens, "recompute": args.recompute, **tr.model_dump()}
        text += (f"\n\ntraining on {args.tokens:.3g} tokens (recompute {args.recompute}): "
                 f"{tr.total_flops:.3g} FLOP ({si(tr.flops_per_token, 'FLOP')} per token; "
                 f"6ND rule of thumb {tr.six_n_d_flops:.3g} FLOP, attention share "
                 f"{_share(tr.attention_flops, tr.total_flops)})")

    if args.throughput_tokens_per_s is not None:
        spec = args.gpu
        unit = checked_matmul_unit(spec, args.dtype)
        peak = spec.peak_flops_per_s[unit]
        mfu = model_flops_utilization(cfg, args.throughput_tokens_per_s, peak, seq_len, n_devices=args.devices)
        data["mfu"] = {
            "gpu": spec.name, "unit": unit, "peak_flops_per_s": peak, "n_devices": args.devices,
            "tokens_per_s": args.throughput_tokens_per_s, "mfu": mfu,
        }
        text += (f"\nMFU at {args.throughput_tokens_per_s:,.0f} tokens/s on {args.devices} x {spec.name} "
                 f"({unit} peak {si(peak, 'FLOP/s')}): {100 * mfu:.1f}% "
                 "(PaLM Appendix B: 3 x forward FLOPs, attention unmasked, recomputation not counted)")
    return data, text


# ---------------------------------------------------------------- kv cache


def cmd_kv_cache(args):
    from hardware_specs.dtypes import dtype_bytes
    from costmodel.kvcache import kv_cache_bytes, kv_cache_bytes_per_token, max_batch_that_fits, paged_kv_cache_bytes

    cfg, seq_len = args.model, context_len(args, args.model)
    for option, value in (("--weight-dtype", args.weight_dtype), ("--reserve-fraction", args.reserve_fraction)):
        if value is not None and args.gpu is None:
            raise CommandError(f"{option}: applies with --gpu (the largest batch that fits); give --gpu or drop it")
    args.weight_dtype = args.weight_dtype or "fp16"
    args.reserve_fraction = 0.0 if args.reserve_fraction is None else args.reserve_fraction
    per_token = kv_cache_bytes_per_token(cfg, args.dtype)
    kv = kv_cache_bytes(cfg, args.batch, seq_len, args.dtype)
    data = {
        "model": cfg.name, "seq_len": seq_len, "batch": args.batch, "dtype": args.dtype,
        "bytes_per_token": per_token, "tokens_held": kv.tokens_held,
        "per_sequence_bytes": kv.per_sequence_bytes, "total_bytes": kv.total_bytes,
    }
    window = f", sliding window {cfg.sliding_window} holds {kv.tokens_held}" if kv.tokens_held != seq_len else ""
    lines = [
        f"KV cache of {cfg.name} in {args.dtype}: 2 (K, V) x {cfg.n_layers} layers x {cfg.n_kv_heads} kv heads x "
        f"{cfg.head_dim} head_dim x {dtype_bytes(args.dtype):g} B",
        f"per token       {si(per_token, 'B')} ({per_token:,} B)",
        f"per sequence    {si(kv.per_sequence_bytes, 'B')} ({seq_len} tokens{window})",
        f"batch of {args.batch:<6} {si(kv.total_bytes, 'B')}",
    ]

    if args.block_size is not None:
        if seq_len > cfg.max_seq_len:
            raise CommandError(
                f"--seq-len: {seq_len} exceeds {cfg.name}'s context ({cfg.max_seq_len}), which the contiguous "
                f"allocator reserves; with --block-size, --seq-len <= {cfg.max_seq_len} is accepted"
            )
        # Every sequence has the same length: one sequence's numbers times the batch (exact integers),
        # not a batch-long array (a batch of 10^12 must not allocate 8 TB).
        one = paged_kv_cache_bytes(cfg, np.full(1, seq_len), args.block_size, args.dtype)
        b = args.batch
        paged = {
            "block_size": args.block_size, "blocks_per_sequence": int(one.blocks[0]),
            "used_bytes": b * int(one.total_used_bytes), "paged_bytes": b * int(one.total_paged_bytes),
            "paged_waste_bytes": b * int(one.total_paged_waste_bytes),
            "contiguous_bytes": b * int(one.total_contiguous_bytes),
            "contiguous_waste_bytes": b * int(one.total_contiguous_waste_bytes),
        }
        data["paged"] = paged
        lines.append(
            f"paged ({args.block_size}-token blocks, vLLM): {si(paged['paged_bytes'], 'B')}, waste "
            f"{si(paged['paged_waste_bytes'], 'B')}; contiguous at the {cfg.max_seq_len}-token context: "
            f"{si(paged['contiguous_bytes'], 'B')}, waste {si(paged['contiguous_waste_bytes'], 'B')}"
            + (" (no sliding-window cap in this comparison)" if window else "")
        )

    if args.gpu is not None:
        spec = args.gpu
        fit = max_batch_that_fits(cfg, spec.hbm_bytes, seq_len, args.weight_dtype, args.dtype,
                                  reserve_fraction=args.reserve_fraction)
        data["max_batch"] = {"gpu": spec.name, "gpu_memory_bytes": spec.hbm_bytes,
                             "weight_dtype": args.weight_dtype, **fit.model_dump()}
        if fit.free_bytes >= 0:
            verdict = f"{fit.max_batch} sequences of {seq_len} tokens"
        elif fit.weights_bytes <= spec.hbm_bytes:
            verdict = (f"none: the {args.weight_dtype} weights ({si(fit.weights_bytes, 'B')}) fit, but the reserve "
                       f"({si(fit.reserve_bytes, 'B')}, --reserve-fraction {args.reserve_fraction!r}) leaves no room")
        else:
            verdict = f"none: the {args.weight_dtype} weights alone ({si(fit.weights_bytes, 'B')}) do not fit"
        lines.append(f"on {spec.name} ({si(spec.hbm_bytes, 'B')}, {args.weight_dtype} weights "
                     f"{si(fit.weights_bytes, 'B')}): {verdict}")
    return data, "\n".join(lines)


# ---------------------------------------------------------------- training memory


def cmd_memory(args):
    from costmodel.training_memory import training_memory

    cfg, spec, seq_len, t = args.model, args.gpu, context_len(args, args.model), args.tensor_parallel
    if cfg.n_heads % t or cfg.n_kv_heads % t:
        divisors = [d for d in range(1, cfg.n_kv_heads + 1) if cfg.n_kv_heads % d == 0]
        raise CommandError(f"--tensor-parallel: {t} does not split {cfg.name}'s {cfg.n_kv_heads} kv heads evenly; "
                           f"accepted: {', '.join(map(str, divisors))}")
    mem = training_memory(cfg, args.batch, seq_len, tensor_parallel=t, recompute=args.recompute,
                          flash_attention=args.flash_attention, dropout=args.dropout)
    fits = mem.total_bytes <= spec.hbm_bytes
    data = {
        "model": cfg.name, "batch": args.batch, "seq_len": seq_len, "tensor_parallel": t,
        "recompute": args.recompute, "flash_attention": args.flash_attention, "dropout": args.dropout,
        **mem.model_dump(),
        "gpu": spec.name, "gpu_memory_bytes": spec.hbm_bytes, "fits": fits,
    }
    rows = [
        ("weights (bf16)", si(mem.weights_bytes, "B")),
        ("gradients (bf16)", si(mem.gradients_bytes, "B")),
        ("optimizer (fp32 Adam)", si(mem.optimizer_bytes, "B")),
        (f"activations: {cfg.n_layers} layers", si(mem.activations_layers_bytes, "B")),
        ("  of which attention scores", si(mem.activations_per_layer.attention_scores_bytes * cfg.n_layers, "B")),
        ("activations: embedding + output", si(mem.activations_embedding_bytes + mem.activations_output_bytes, "B")),
        ("total per GPU", si(mem.total_bytes, "B")),
    ]
    text = (f"Training memory of {cfg.name}: micro-batch {args.batch} x {seq_len} tokens, tensor parallel {t}, "
            f"recompute {args.recompute}, FlashAttention {'on' if args.flash_attention else 'off'}, "
            f"dropout {'on' if args.dropout else 'off'}\n"
            + table(rows, ("part", "bytes"))
            + f"\n{'fits' if fits else 'does not fit'} on {spec.name} ({si(spec.hbm_bytes, 'B')})")
    return data, text



# ---------------------------------------------------------------- registration


def register(sub: argparse._SubParsersAction) -> None:
    def model_arg(p):
        p.add_argument("--model", type=model_name, required=True, help="preset name (see `ioaware models`) or model YAML")

    def seq_len_arg(p):
        p.add_argument("--seq-len", type=positive_int, help="tokens per sequence (default: the model's context)")

    p = sub.add_parser("models", help="list the bundled model presets")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("params", help="exact parameter count of a model, per component")
    model_arg(p)
    p.set_defaults(func=cmd_params)

    p = sub.add_parser("flops", help="forward FLOPs per token by operation; training FLOPs; MFU")
    model_arg(p)
    seq_len_arg(p)
    p.add_argument("--causal", action=argparse.BooleanOptionalAction, default=True, help="causal mask (default on)")
    p.add_argument("--tokens", type=positive_float, help="training tokens: total training FLOPs")
    p.add_argument("--recompute", choices=("none", "selective", "full"), default="none", help="for --tokens")
    p.add_argument("--throughput-tokens-per-s", type=positive_float, metavar="X", help="measured tokens/s: MFU")
    p.add_argument("--gpu", type=gpu_name, default=DEFAULT_GPU, help=f"GPU for MFU (default {DEFAULT_GPU})")
    p.add_argument("--devices", type=positive_int, default=1, help="GPUs that produced the throughput (default 1)")
    p.add_argument("--dtype", choices=("fp32", "tf32", "fp16", "bf16", "fp8"), default="bf16",
                   help="matmul precision whose peak MFU divides by (default bf16)")
    p.set_defaults(func=cmd_flops)

    p = sub.add_parser("kv-cache", help="KV-cache bytes per token and per batch; paged waste; largest batch")
    model_arg(p)
    seq_len_arg(p)
    p.add_argument("--batch", type=positive_int, default=1, help="sequences (default 1)")
    p.add_argument("--dtype", choices=KV_DTYPES, default="fp16", help="KV-cache precision (default fp16)")
    p.add_argument("--block-size", type=positive_int, metavar="P", help="compare paged (P tokens a block) with contiguous")
    p.add_argument("--gpu", type=gpu_name, help="largest batch whose KV cache fits beside the weights on this GPU")
    p.add_argument("--weight-dtype", choices=KV_DTYPES, help="for --gpu (default fp16)")
    p.add_argument("--reserve-fraction", type=fraction, help="of GPU memory held back, for --gpu (default 0)")
    p.set_defaults(func=cmd_kv_cache)

    p = sub.add_parser("memory", help="training memory per GPU (ZeRO model states + activations)")
    model_arg(p)
    seq_len_arg(p)
    p.add_argument("--batch", type=positive_int, default=1, help="micro-batch (default 1)")
    p.add_argument("--tensor-parallel", type=positive_int, default=1, metavar="T")
    p.add_argument("--recompute", choices=("none", "selective", "full"), default="none")
    p.add_argument("--flash-attention", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--dropout", action=argparse.BooleanOptionalAction, default=True,
                   help="keep dropout masks, as GPT training does (default on; Llama trains without)")
    p.add_argument("--gpu", type=gpu_name, default=DEFAULT_GPU, help=f"default {DEFAULT_GPU}")
    p.set_defaults(func=cmd_memory)
