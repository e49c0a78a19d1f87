"""``ioaware search``: every valid parallel layout of a model on a cluster, ranked; the best with its
breakdown; a plot of time against memory per GPU with the Pareto front."""

from __future__ import annotations

import argparse

from costmodel.cli.args import CommandError, model_name, positive_int
from costmodel.cli.parallel_args import cluster_name
from costmodel.cli.text import si, table

DEFAULT_MEMORY_FRACTION = 0.9


def register(subparsers) -> None:
    c = subparsers.add_parser("clusters", help="bundled cluster specs: nodes, GPU, NVLink and NIC bandwidth per GPU",
                              description="The cluster files of hardware_specs/clusters/ (load_cluster).")
    c.set_defaults(func=run_clusters)
    p = subparsers.add_parser(
        "search", help="rank every valid TP x PP x DP x micro-batch x recompute x ZeRO x interleaving layout",
        description="Enumerate and rank the training layouts of a model on a cluster (costmodel/parallel/search.py).")
    p.add_argument("--model", type=model_name, required=True, help="preset name or model YAML")
    p.add_argument("--cluster", type=cluster_name, required=True, help="bundled cluster or cluster YAML")
    p.add_argument("--global-batch", type=positive_int, required=True, help="sequences per iteration")
    p.add_argument("--seq-len", type=positive_int, required=True)
    p.add_argument("--objective", default="time", choices=("time", "cost"),
                   help="time per iteration, or cost = GPU-hours per iteration (differs with several --gpus)")
    p.add_argument("--gpus", type=positive_int, nargs="+", help="GPU counts to search (default: the whole cluster)")
    p.add_argument("--max-micro-batch", type=positive_int, default=16)
    p.add_argument("--max-tp", type=positive_int, help="largest TP degree (default: any the model allows)")
    p.add_argument("--memory-fraction", type=float, default=DEFAULT_MEMORY_FRACTION,
                   help=f"share of HBM a layout may use (default {DEFAULT_MEMORY_FRACTION}: headroom for the CUDA "
                        "context, NCCL buffers and allocator fragmentation, which the memory model leaves out)")
    p.add_argument("--overlap-dp", action="store_true", help="assume DP communication hides behind backward compute")
    p.add_argument("--top", type=positive_int, default=5, help="layouts to print")
    p.add_argument("--plot", help="write the time-vs-memory figure here (.html); default out/search/search-<model>-<cluster>.html")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--workers", type=positive_int, default=1, help="local processes (default 1: this process)")
    p.add_argument("--ray", metavar="ADDRESS", help="run work units on Ray ('local' starts one here; needs extra 'ray')")
    p.set_defaults(func=run)


def run_clusters(args: argparse.Namespace) -> tuple[dict, str]:
    from hardware_specs.cluster import list_clusters, load_cluster

    data, rows = {}, []
    for name in list_clusters():
        c = load_cluster(name)
        data[name] = c.model_dump(mode="json")
        rows.append((name, str(c.nodes), f"{c.gpus_per_node} x {c.gpu}", si(c.intra_node.bandwidth_per_gpu_Bps, "B/s"),
                     f"{c.nics_per_node} x {si(c.nic_bandwidth_Bps * 8, 'b/s')}", si(c.inter_node.bandwidth_per_gpu_Bps, "B/s"),
                     f"{c.gpu_tdp_W:.0f} W"))
    return {"clusters": data}, table(rows, ("cluster", "nodes", "GPUs per node", "NVLink / GPU each way",
                                            "NICs per node", "network / GPU each way", "GPU TDP"))


def run(args: argparse.Namespace) -> tuple[dict, str]:
    from costmodel.parallel.search import pareto_front, row, search_layouts
    from hardware_specs.loader import load_gpu

    if not 0 < args.memory_fraction <= 1:
        raise CommandError(f"--memory-fraction: {args.memory_fraction} is out of range; a number in (0, 1] is accepted")
    stem = None
    if not args.no_plot:
        from costmodel.outputs import check_writable

        stem = args.plot or f"out/search/search-{args.model.name}-{args.cluster.name}.html"
        check_writable(stem, "--plot", (".html",))  # fail before the search, not after it
    gpu = load_gpu(args.cluster.gpu)
    limit = args.memory_fraction * gpu.hbm_bytes
    try:
        r = search_layouts(args.model, args.cluster, global_batch=args.global_batch, seq_len=args.seq_len,
                           gpus=args.gpus, objective=args.objective, max_micro_batch=args.max_micro_batch,
                           max_tp=args.max_tp, overlap_dp=args.overlap_dp, memory_limit_bytes=limit,
                           workers=args.workers, ray_address=args.ray)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    t = r["table"]
    best = [row(t, i) for i in r["order"][: args.top]]
    front = [row(t, i) for i in r["order"][pareto_front(t["time_s"][r["order"]], t["memory_bytes"][r["order"]])]] \
        if len(r["order"]) else []
    plot = None
    if stem is not None and len(r["order"]):
        from costmodel.outputs import write_atomic
        from costmodel.parallel.plot import search_figure

        html = search_figure(r, limit).to_html(include_plotlyjs=True, full_html=True)
        write_atomic(stem, html, "--plot")
        plot = [stem]
    data = {k: r[k] for k in ("model", "cluster", "gpu", "global_batch", "seq_len", "objective", "count", "fitting",
                              "units", "elapsed_s")}
    data.update(memory_limit_bytes=limit, best=best, pareto_front=front, plot=plot)
    lines = [f"{r['model']} on {r['cluster']} ({r['gpu']}): {r['count']} layouts in {r['units']} work units, "
             f"{r['fitting']} fit in {si(limit, 'B')} per GPU; searched in {r['elapsed_s']:.2f} s"]
    if not best:
        lines.append("no layout fits: raise --memory-fraction, use more GPUs or a smaller --max-micro-batch")
        return data, "\n".join(lines)
    rows = [(str(k + 1), str(b["gpus"]), str(b["tp"]), str(b["pp"]), str(b["dp"]), str(b["micro_batch"]),
             b["schedule"] + (f" v={b['virtual_stages']}" if b["virtual_stages"] > 1 else ""),
             "on" if b["sequence_parallel"] else "off", b["recompute"], str(b["zero_stage"]), si(b["time_s"], "s"),
             f"{b['mfu']:.1%}", si(b["memory_bytes"], "B")) for k, b in enumerate(best)]
    lines.append(table(rows, ("#", "GPUs", "TP", "PP", "DP", "b", "schedule", "SP", "recompute", "ZeRO", "time",
                              "MFU", "memory")))
    b = best[0]
    parts = [(k, si(b[k], "s"), f"{b[k] / b['time_s']:.1%}") for k in
             ("compute_s", "tp_comm_s", "pp_comm_s", "bubble_s", "dp_comm_exposed_s", "optimizer_s")]
    lines.append("best layout, its iteration by part (they sum to it; the bubble is the pipeline's idle time):")
    lines.append(table(parts))
    if plot:
        lines.append(f"wrote {', '.join(plot)}")
    return data, "\n".join(lines)
