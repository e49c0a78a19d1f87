"""The multi-GPU options of ``ioaware predict`` (a hook: ``costmodel/cli/predict.py`` calls it).

``predict.py`` (the step helper's command) calls ``add_arguments(parser)`` where it builds its
parser and, first thing in its handler, ``if wants_parallel(args): return run(args)``. With
``--gpus`` or ``--cluster`` the command predicts one training iteration of the whole layout
(costmodel.parallel.predict_training) instead of one GPU's step:

    ioaware predict --model llama3-70b --phase train --seq-len 8192 --global-batch 512 --micro-batch 1 \\
        --tp 8 --pp 4 --gpus 1024 --cluster dgx-h100 --schedule interleaved --virtual-stages 5 \\
        --recompute selective --json

Options the host parser already has (``--model``, ``--seq-len``, ``--recompute``, ``--dtype``, ...)
are not added twice; this module reads them under the same names.
"""

from __future__ import annotations

import argparse

from costmodel.cli.args import CommandError, positive_int
from costmodel.cli.text import si, table


def _has(parser: argparse.ArgumentParser, option: str) -> bool:
    return any(option in a.option_strings for a in parser._actions)


def cluster_name(text: str):
    """A bundled cluster name or a cluster YAML path -> ClusterSpec."""
    from hardware_specs import SpecError
    from hardware_specs.cluster import load_cluster

    try:
        return load_cluster(text)
    except SpecError as exc:
        raise argparse.ArgumentTypeError(str(exc).splitlines()[0]) from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the layout options to a ``predict`` parser (skipping any it already has)."""
    def add(option, **kw):
        if not _has(p, option):
            p.add_argument(option, **kw)

    add("--model", help="preset name or model YAML")
    add("--phase", default="train", help="train (one iteration of the layout), prefill or decode (one step under TP x PP)")
    add("--batch", type=positive_int, help="prefill / decode: sequences in the step")
    add("--seq-len", type=positive_int, help="tokens per sequence")
    add("--dtype", default="bf16", help="bf16 (default) or fp16")
    add("--recompute", default="none", help="activation recomputation: none, selective, full")
    add("--cluster", type=cluster_name, help="bundled cluster (dgx-a100, dgx-h100) or cluster YAML: multi-GPU prediction")
    add("--gpus", type=positive_int, help="GPUs used (default: the whole cluster); DP = gpus / (tp x pp)")
    add("--global-batch", type=positive_int, help="sequences per iteration (G)")
    add("--micro-batch", type=positive_int, default=1, help="sequences per micro-batch (b; default 1)")
    add("--tp", type=positive_int, default=1, help="tensor-parallel degree (--tensor-parallel is read too)")
    add("--pp", type=positive_int, default=1, help="pipeline-parallel degree")
    add("--schedule", default="1f1b", help="pipeline schedule: 1f1b (default), interleaved, gpipe")
    add("--virtual-stages", type=positive_int, help="model chunks per device for --schedule interleaved (default 2)")
    add("--sequence-parallel", choices=("on", "off"), help="Megatron sequence parallelism (default: on when tp > 1)")
    add("--zero-stage", type=int, default=0, choices=(0, 1, 2, 3), help="ZeRO stage over the data-parallel group")
    add("--overlap-dp", action="store_true", help="assume DP communication hides behind backward compute")
    add("--no-flash-attention", action="store_true", help="activation memory without FlashAttention")
    add("--dropout", action="store_true", help="activation memory with dropout masks (GPT/Megatron training)")


def wants_parallel(args: argparse.Namespace) -> bool:
    return getattr(args, "cluster", None) is not None or getattr(args, "gpus", None) is not None


def _spec(value, loader):
    return loader(value) if isinstance(value, str) else value


def _tp(args) -> int:
    """--tp, or the host's --tensor-parallel when --tp was left at 1."""
    tp = getattr(args, "tp", 1)
    return tp if tp != 1 else (getattr(args, "tensor_parallel", 1) or 1)


def run(args: argparse.Namespace) -> tuple[dict, str]:
    """Predict one training iteration of the layout the options describe: (data, text)."""
    from costmodel.models import load_model
    from costmodel.parallel.predict import predict_training
    from hardware_specs.cluster import load_cluster

    if args.cluster is None:
        raise CommandError("--cluster: needed with --gpus (a bundled cluster name or a cluster YAML)")
    phase = getattr(args, "phase", "train") or "train"
    if phase in ("prefill", "decode"):
        return _run_inference(args, phase)
    if phase != "train":
        raise CommandError(f"--phase: {phase!r}; allowed with --cluster: train, prefill, decode")
    for opt in ("model", "seq_len", "global_batch"):
        if getattr(args, opt, None) is None:
            raise CommandError(f"--{opt.replace('_', '-')}: required with --cluster")
    cluster = _spec(args.cluster, load_cluster)
    model = _spec(args.model, load_model)
    args.tp = _tp(args)
    gpus = args.gpus or cluster.total_gpus
    schedule = args.schedule
    v = args.virtual_stages or (2 if schedule == "interleaved" else 1)
    sp = args.tp > 1 if args.sequence_parallel is None else args.sequence_parallel == "on"
    r = predict_training(model, cluster, seq_len=args.seq_len, dtype=args.dtype, gpus=gpus, tp=args.tp, pp=args.pp,
                         micro_batch=args.micro_batch, global_batch=args.global_batch, schedule=schedule,
                         virtual_stages=v, sequence_parallel=sp, recompute=args.recompute, zero_stage=args.zero_stage,
                         overlap_dp=args.overlap_dp, flash_attention=not args.no_flash_attention, dropout=args.dropout)
    data = r.model_dump(mode="json")
    lay = r.layout
    head = (f"{r.model} on {gpus} x {r.gpu} ({r.cluster}): TP {lay.tp} x PP {lay.pp} x DP {r.dp}, "
            f"b = {lay.micro_batch}, m = {r.micro_batches}, {lay.schedule}"
            + (f" v = {lay.virtual_stages}" if lay.schedule == "interleaved" else "")
            + f", SP {'on' if lay.sequence_parallel else 'off'}, recompute {lay.recompute}, ZeRO {lay.zero_stage}")
    rows = [("iteration", si(r.time_s, "s")), ("tokens/s", f"{r.tokens_per_s:,.0f}"),
            ("model TFLOP/s per GPU (Narayanan eq. 3)", f"{r.model_tflops_per_gpu:.1f}"), ("MFU", f"{r.mfu:.1%}"),
            ("memory per GPU", si(r.memory_bytes, "B") + ("" if r.fits else "  (does NOT fit)")),
            ("bubble fraction", f"{r.bubble_fraction:.1%}")]
    rows += [(f"  {k}", si(v, "s")) for k, v in r.breakdown.items() if k != "time_s"]
    return data, head + "\n" + table(rows)


def _run_inference(args, phase):
    from costmodel.models import load_model
    from costmodel.parallel.inference import predict_inference
    from hardware_specs.cluster import load_cluster

    for opt in ("model", "seq_len", "batch"):
        if getattr(args, opt, None) is None:
            raise CommandError(f"--{opt.replace('_', '-')}: required with --cluster --phase {phase}")
    args.tp = _tp(args)
    if args.gpus is not None and args.gpus != args.tp * args.pp:
        raise CommandError(f"--gpus: {args.gpus} must be tp x pp = {args.tp * args.pp} for one {phase} replica")
    r = predict_inference(_spec(args.model, load_model), _spec(args.cluster, load_cluster), phase=phase,
                          batch=args.batch, seq_len=args.seq_len, tp=args.tp, pp=args.pp, dtype=args.dtype)
    rows = [("step latency", si(r.time_s, "s")), ("tokens/s (pipeline full)", f"{r.tokens_per_s:,.0f}"),
            ("memory per GPU", si(r.memory_bytes, "B"))] + [(f"  {k}", si(v, "s")) for k, v in r.breakdown.items()]
    return r.model_dump(mode="json"), f"{r.model} {phase} on {r.gpus} GPUs ({r.cluster}): TP {r.tp} x PP {r.pp}, " \
        f"batch {r.batch}, {r.seq_len} tokens\n" + table(rows)


__all__ = ["add_arguments", "cluster_name", "run", "wants_parallel"]
