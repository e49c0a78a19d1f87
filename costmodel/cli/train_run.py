"""``ioaware train-run``: wall-clock, GPU-hours and energy of a whole training run, for a layout given
with the ``predict`` options or the best that ``search`` finds."""

from __future__ import annotations

import argparse

from costmodel.cli.args import CommandError, positive_float
from costmodel.cli import parallel_args
from costmodel.cli.text import si, table


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train-run", help="wall-clock, GPU-hours and energy of a training run (token or compute budget)",
        description="A whole training run at the predicted iteration time (costmodel/parallel/training_run.py).")
    parallel_args.add_arguments(p)
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--tokens", type=positive_float, help="token budget D")
    budget.add_argument("--compute-flops", type=positive_float,
                        help="compute budget C: D from the Chinchilla compute-optimal split (Hoffmann et al. 2022)")
    p.add_argument("--best", action="store_true", help="use the fastest layout ioaware search finds (ignores --tp ...)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> tuple[dict, str]:
    from costmodel.cli.search import DEFAULT_MEMORY_FRACTION
    from costmodel.models import load_model
    from costmodel.parallel.predict import predict_training
    from costmodel.parallel.search import row, search_layouts
    from costmodel.parallel.training_run import training_run
    from costmodel.params import count_params
    from hardware_specs.loader import load_gpu

    if args.cluster is None or args.model is None or args.seq_len is None or args.global_batch is None:
        raise CommandError("--cluster, --model, --seq-len and --global-batch: all required")
    cluster = args.cluster
    model = load_model(args.model)
    gpus = args.gpus or cluster.total_gpus
    if args.best:
        limit = DEFAULT_MEMORY_FRACTION * load_gpu(cluster.gpu).hbm_bytes
        r = search_layouts(model, cluster, global_batch=args.global_batch, seq_len=args.seq_len, gpus=[gpus],
                           memory_limit_bytes=limit)
        if not len(r["order"]):
            raise CommandError("--best: no layout fits in memory")
        b = row(r["table"], r["order"][0])
        layout = dict(tp=b["tp"], pp=b["pp"], micro_batch=b["micro_batch"], schedule=b["schedule"],
                      virtual_stages=b["virtual_stages"], sequence_parallel=b["sequence_parallel"],
                      recompute=b["recompute"], zero_stage=b["zero_stage"])
    else:
        sp = args.tp > 1 if args.sequence_parallel is None else args.sequence_parallel == "on"
        layout = dict(tp=args.tp, pp=args.pp, micro_batch=args.micro_batch, schedule=args.schedule,
                      virtual_stages=args.virtual_stages or (2 if args.schedule == "interleaved" else 1),
                      sequence_parallel=sp, recompute=args.recompute, zero_stage=args.zero_stage)
    pred = predict_training(model, cluster, seq_len=args.seq_len, gpus=gpus, global_batch=args.global_batch,
                            overlap_dp=args.overlap_dp, **layout)
    run_ = training_run(pred.time_s, tokens_per_iteration=args.global_batch * args.seq_len, gpus=gpus,
                        gpu_tdp_W=cluster.gpu_tdp_W, tokens=args.tokens, compute_flops=args.compute_flops,
                        gpus_per_node=cluster.gpus_per_node, node_power_W=cluster.node_power_W)
    run_["model_params"] = count_params(model).total
    data = {"iteration": pred.model_dump(mode="json"), "run": run_,
            "sources": {"gpu_tdp_W": cluster.sources["gpu_tdp_W"], "node_power_W": cluster.sources.get("node_power_W")}}
    rows = [("layout", f"TP {layout['tp']} x PP {layout['pp']} x DP {pred.dp}, b {layout['micro_batch']}, "
                       f"{layout['schedule']}, recompute {layout['recompute']}, ZeRO {layout['zero_stage']}"),
            ("iteration", si(pred.time_s, "s")), ("MFU", f"{pred.mfu:.1%}"),
            ("tokens", f"{run_['tokens']:.3e}"), ("iterations", f"{run_['iterations']:,}"),
            ("wall-clock", f"{run_['wall_clock_days']:.2f} days"), ("GPU-hours", f"{run_['gpu_hours']:,.0f}"),
            ("GPU energy at TDP", f"{run_['gpu_energy_MWh']:.1f} MWh")]
    if "node_energy_MWh" in run_:
        rows.append(("node energy at rated power", f"{run_['node_energy_MWh']:.1f} MWh"))
    if "chinchilla_params" in run_:
        rows.append(("Chinchilla-optimal for C", f"N = {run_['chinchilla_params']:.3e} params "
                                                 f"(this model {run_['model_params']:.3e}), D = {run_['chinchilla_tokens']:.3e}"))
    return data, table(rows)
