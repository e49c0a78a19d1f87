"""``ioaware attention``: simulate one attention call and print its kernels' FLOPs, bytes and time."""

from __future__ import annotations

import argparse
import re

from costmodel.cli.args import DEFAULT_GPU, CommandError, nonnegative_int, positive_int
from costmodel.cli.text import si, table
from simulators.config import DTYPES, IMPLS, PASSES
from simulators.implementations import TORCH_IMPLS

# Field names in messages -> the option that sets them.
_OPTIONS = {
    "batch": "--batch", "heads": "--heads", "kv_heads": "--kv-heads", "seq_len": "--seq-len", "kv_len": "--kv-len",
    "head_dim": "--head-dim", "dtype": "--dtype", "causal": "--causal", "window": "--window", "dropout": "--dropout",
    "block-r": "--block-r", "block-c": "--block-c", "block-r/block-c": "--block-r/--block-c", "splits": "--splits",
    "pattern": "--pattern", "pass": "--pass",
    "impl": "--impl", "sram-bytes": "--sram-bytes", "page-size": "--page-size", "l2_fraction": "--l2-fraction",
    "fa1_io": "--fa1-io", "path": "--path", "grid_order": "--grid-order", "proj_len": "--proj-len",
    "features": "--features", "chunk": "--chunk", "hash_rounds": "--hash-rounds", "bucket_size": "--bucket-size",
}


def register(subparsers) -> None:
    """Add the ``attention`` subcommand (costmodel/cli/main.py calls this)."""
    p = subparsers.add_parser(
        "attention", help="FLOPs, bytes per memory level (global, DRAM, smem) and time of an attention call",
        description="Simulate standard attention, FlashAttention-1/2, Flash-Decoding, or the approximations "
                    "linformer, performer and reformer (eager PyTorch) on a GPU spec.")
    p.add_argument("--gpu", default=DEFAULT_GPU, help=f"bundled GPU name or spec file (default {DEFAULT_GPU})")
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--heads", type=int, required=True, help="query heads")
    p.add_argument("--kv-heads", type=int, help="K/V heads (GQA; 1 = MQA; default: heads)")
    p.add_argument("--seq-len", type=int, required=True, help="query tokens N (decode: new tokens, usually 1)")
    p.add_argument("--kv-len", type=int, help="key tokens L (default N; decode: the cache length)")
    p.add_argument("--head-dim", type=int, required=True)
    p.add_argument("--dtype", default="fp16", help=f"one of {', '.join(DTYPES)} (default fp16)")
    p.add_argument("--impl", default="flash2", help=f"one of {', '.join(IMPLS + TORCH_IMPLS)} (default flash2); "
                   "torch-* are the implementations torch users run, timed with the GPU's fitted parameters")
    p.add_argument("--pass", dest="pass_", default="fwd", help=f"one of {', '.join(PASSES)} (default fwd)")
    p.add_argument("--block-r", type=int, help="query rows per tile B_r (default: FlashAttention rule)")
    p.add_argument("--block-c", type=int, help="keys per tile B_c (default: FlashAttention rule)")
    p.add_argument("--sram-bytes", type=int, help="M of the FlashAttention block rule (default: smem per block)")
    p.add_argument("--splits", type=int, help="Flash-Decoding splits of the KV cache (default: two waves)")
    p.add_argument("--page-size", type=int, help="paged KV cache: tokens per page")
    p.add_argument("--causal", action="store_true")
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--window", type=int, help="sliding window W: keys q-W < k <= q (causal) or |k-q| < W")
    p.add_argument("--pattern", nargs="+", metavar="NAME", help="sparse pattern(s), unioned: dense window local "
                   "strided dilated global random bigbird blockwise")
    p.add_argument("--stride", type=positive_int, default=64, help="strided pattern: stride")
    p.add_argument("--dilation", type=positive_int, default=2, help="dilated pattern: dilation")
    p.add_argument("--global-tokens", type=positive_int, default=64, help="global / bigbird: global tokens")
    p.add_argument("--random-blocks", type=positive_int, default=3, help="random / bigbird: key blocks per query block")
    p.add_argument("--pattern-block", type=positive_int, default=64, help="random / bigbird: block size in tokens")
    p.add_argument("--blocks", type=positive_int, default=4, help="blockwise: blocks per sequence")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="random / blockwise: seed")
    p.add_argument("--fa1-io", default="kernel", help="flash1 forward traffic: kernel (kernels/flash1.py) or paper")
    p.add_argument("--l2-fraction", type=float, default=1.0, help="share of L2 a wave may use (default 1)")
    p.add_argument("--grid-order", default="tiles-fastest",
                   help="tiles-fastest (blockIdx.x = tile, our kernels) or heads-fastest (blockIdx.x = batch*head)")
    p.add_argument("--no-skip", action="store_true", help="compute masked-out tiles too (no causal block skipping)")
    p.add_argument("--simt", action="store_true",
                   help="matmuls on FP32 SIMT lanes (our Numba kernels), not tensor cores")
    p.add_argument("--path", default="closed", help="closed (closed form) or enumerate (block-by-block walk)")
    p.add_argument("--proj-len", type=int, help="linformer: projected length k (default 256)")
    p.add_argument("--features", type=int, help="performer: random features r (default 256)")
    p.add_argument("--chunk", type=int, help="performer --causal: prefix-sum chunk in tokens (default 128)")
    p.add_argument("--hash-rounds", type=int, help="reformer: LSH rounds (default 4)")
    p.add_argument("--bucket-size", type=int, help="reformer: tokens per bucket and chunk (default 64)")
    p.add_argument("--json", action="store_true", help="print one JSON object and nothing else")
    p.set_defaults(func=run)


def _option_names(message: str) -> str:
    """'seq_len: ...' -> '--seq-len: ...' so the message names the option the user typed."""
    m = re.match(r"^([A-Za-z0-9_\-/]+):", message)
    if m and m.group(1) in _OPTIONS:
        return _OPTIONS[m.group(1)] + message[m.end(1):]
    return message


# Options that only some implementations read: given to another, they would be ignored in silence.
_USED_BY = {
    "block_r": ("--block-r", ("flash1", "flash2")),
    "block_c": ("--block-c", ("flash1", "flash2", "flash-decoding")),
    "sram_bytes": ("--sram-bytes", ("flash1", "flash2")),
    "splits": ("--splits", ("flash-decoding",)),
    "page_size": ("--page-size", ("flash-decoding",)),
}


def _only_where_used(args: argparse.Namespace) -> None:
    for field, (option, impls) in _USED_BY.items():
        if getattr(args, field) is not None and args.impl not in impls:
            raise CommandError(f"{option}: applies to --impl {' / '.join(impls)}, not to {args.impl}")
    if args.dropout and args.impl == "flash-decoding":
        raise CommandError("--dropout: applies to training-time attention (standard, flash1, flash2), "
                           "not to flash-decoding")
    if args.fa1_io != "kernel" and args.impl != "flash1":
        raise CommandError(f"--fa1-io: applies to --impl flash1, not to {args.impl}")


def run(args: argparse.Namespace) -> tuple[dict, str]:
    from hardware_specs import load_gpu
    from simulators.simulate import simulate_attention

    spec = args.gpu if not isinstance(args.gpu, str) else load_gpu(args.gpu)
    _only_where_used(args)
    pattern_options = dict(stride=args.stride, dilation=args.dilation, global_tokens=args.global_tokens,
                           random_blocks=args.random_blocks, block=args.pattern_block, n_blocks=args.blocks,
                           seed=args.seed)
    approx = {k: v for k, v in (("proj_len", args.proj_len), ("features", args.features), ("chunk", args.chunk),
                                ("hash_rounds", args.hash_rounds), ("bucket_size", args.bucket_size)) if v is not None}
    if approx and args.impl not in ("linformer", "performer", "reformer"):
        key = next(iter(approx))
        raise ValueError(f"{_OPTIONS[key]}: applies to linformer, performer or reformer, not --impl {args.impl}")
    try:
        result = simulate_attention(
            spec, args.impl, batch=args.batch, heads=args.heads, kv_heads=args.kv_heads, seq_len=args.seq_len,
            kv_len=args.kv_len, head_dim=args.head_dim, dtype=args.dtype, pass_=args.pass_, causal=args.causal,
            window=args.window, dropout=args.dropout, pattern=args.pattern, pattern_options=pattern_options,
            path=args.path, tensor_cores=not args.simt, block_r=args.block_r, block_c=args.block_c,
            sram_bytes=args.sram_bytes, splits=args.splits, page_size=args.page_size, fa1_io=args.fa1_io,
            l2_fraction=args.l2_fraction, skip_masked_tiles=not args.no_skip, grid_order=args.grid_order, **approx)
    except ValueError as exc:
        raise ValueError(_option_names(str(exc))) from None
    data = result.to_json()
    rows = [(k.name, "x".join(str(g) for g in k.grid), si(k.flops, "FLOP"), si(k.global_bytes, "B"),
             si(k.hbm_bytes, "B"), si(k.smem_bytes, "B"), si(k.time_s, "s"), k.bound) for k in result.kernels]
    rows.append(("total", "", si(result.flops, "FLOP"), si(result.global_bytes, "B"), si(result.hbm_bytes, "B"),
                 si(result.smem_bytes, "B"), si(result.time_s, "s"), result.bound))
    sch = result.schedule
    head = (f"{result.impl} {result.pass_} on {result.gpu} ({result.path}); B={args.batch} H={args.heads} "
            f"H_kv={result.config['kv_heads']} N={args.seq_len} L={result.config['kv_len']} d={args.head_dim} "
            f"{args.dtype}" + (f"; tiles B_r={sch['block_r']} B_c={sch['block_c']}" if "block_r" in sch else "")
            + (f"; splits={sch['splits']}" if result.impl == "flash-decoding" else "")
            + (f"; timing: {sch['timing_basis']}, host {si(result.call_overhead_s, 's')}" if "timing_basis" in sch
               else ""))
    grids = "\n".join(f"  {k.name}: {k.schedule}" for k in result.kernels)
    lines = [head, table(rows, ("kernel", "grid", "FLOPs", "global", "DRAM", "smem", "time", "bound")), "grids:", grids]
    if "memory" in result.extra:  # the approximations: eager time, GPU time, footprint
        mem = result.extra["memory"]
        lines.insert(1, f"{', '.join(f'{k}={v}' for k, v in result.extra['params'].items())}; eager time "
                        f"{si(result.time_s, 's')} (GPU {si(result.gpu_time_s, 's')}, host "
                        f"{si(result.extra['host_per_kernel_s'], 's')} a kernel); peak memory {si(mem['peak_bytes'], 'B')}"
                        f" at {mem['peak_at']}")
    text = "\n".join(lines)
    return data, text
