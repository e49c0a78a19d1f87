"""A pipeline-parallel (1F1B) and a data-parallel training step in torch.distributed, and their timing runner.

1F1B (PipeDream-Flush; Narayanan et al. 2021 §2.2.1): stage s runs min(p - s - 1, m) warm-up forwards,
then alternates one forward and one backward, then drains the remaining backwards. Activations go
forward and input gradients backward with point-to-point sends (posted with ``isend`` so a stage never
blocks on a peer that is itself sending; receives block). Every stage holds L/p consecutive Llama layers
(costmodel.parallel.tp_layer.layer_forward at TP 1); the last stage computes the loss mean(y²)/m per
micro-batch, so the accumulated gradients equal those of one pass over the whole batch, which
tests/test_pp_step.py checks on gloo against a single process in float64.

The data-parallel step: every rank runs forward and backward on its own micro-batch, then the gradients
are all-reduced in one flat bucket and averaged (what DDP does, without its overlap).

``main`` is issue 19's GPU runner: PP 2 and 4 (1F1B) and DP steps timed over NCCL, beside ioaware's
time for the same layers and layout (``predict_layers_only``: the step predictor's per-layer compute with
costmodel.parallel.training.iteration_time; no embedding, output layer or optimizer, as the runner has none).

    python3 -m costmodel.parallel.pp_step --out pp.json --model llama3-8b --layers 8 --pp 2 4 --dp 8 --seq-len 2048
"""

from __future__ import annotations

import argparse
import json
import os
import time

from costmodel.parallel.tp_layer import full_weights, layer_forward

WEIGHTS = ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")


def stage_layers(n_layers: int, p: int, s: int) -> range:
    """The layers stage s holds: a contiguous block of n_layers / p."""
    if n_layers % p:
        raise ValueError(f"n_layers: {n_layers} does not split into pp = {p} equal stages")
    k = n_layers // p
    return range(s * k, (s + 1) * k)


def _wide(y):
    """The loss in at least fp32 (bf16 activations are widened; float64 stays float64)."""
    import torch

    return y.to(torch.promote_types(y.dtype, torch.float32))


def one_f_one_b(p: int, s: int, m: int) -> list[tuple[str, int]]:
    """The order of stage s's operations: [("F", i) / ("B", i)] (1F1B, Narayanan et al. 2021 §2.2.1)."""
    warm = min(p - s - 1, m)
    order = [("F", i) for i in range(warm)]
    f = warm
    for b in range(m):
        if f < m:
            order.append(("F", f))
            f += 1
        order.append(("B", b))
    return order


def pipeline_step(layers: list[dict], micro_batches, shape: dict, rank: int, p: int, device, dtype):
    """Run one 1F1B iteration on this stage; returns the summed loss (last stage) or None.

    ``layers``: this stage's weight dicts (tensors with requires_grad); ``micro_batches``: the inputs
    (used by stage 0 only), each (b, S, h).
    """
    import torch
    import torch.distributed as dist

    m = len(micro_batches)
    b, S, h = micro_batches[0].shape
    saved, pending, loss_total = {}, [], None
    for kind, i in one_f_one_b(p, rank, m):
        if kind == "F":
            if rank == 0:
                x = micro_batches[i].to(device=device, dtype=dtype)
            else:
                x = torch.empty(b, S, h, device=device, dtype=dtype)
                dist.recv(x, rank - 1)
            x.requires_grad_(rank > 0)
            y = x
            for w in layers:
                y = layer_forward(y, w, **shape)
            if rank < p - 1:
                pending.append(dist.isend(y.detach().contiguous(), rank + 1))
            saved[i] = (x, y)
        else:
            x, y = saved.pop(i)
            if rank == p - 1:
                loss = (_wide(y) ** 2).mean() / m
                loss.backward()
                loss_total = loss.detach() if loss_total is None else loss_total + loss.detach()
            else:
                g = torch.empty_like(y)
                dist.recv(g, rank + 1)
                y.backward(g)
            if rank > 0:
                pending.append(dist.isend(x.grad.contiguous(), rank - 1))
    for req in pending:
        req.wait()
    return loss_total


def data_parallel_step(layers: list[dict], x, shape: dict, world: int):
    """Forward + backward on this rank's micro-batch, then one all-reduce of all gradients (averaged)."""
    import torch
    import torch.distributed as dist

    y = x
    for w in layers:
        y = layer_forward(y, w, **shape)
    (_wide(y) ** 2).mean().backward()
    grads = [w[k].grad for w in layers for k in WEIGHTS]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def _worker(rank, world, mode, cfg, n_layers, batch, seq_len, micro_batches, iters, port, queue, backend):
    import torch
    import torch.distributed as dist

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group(backend, rank=rank, world_size=world)
    try:
        cuda = backend == "nccl"
        dev = torch.device("cuda", rank) if cuda else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(dev)
        dt = torch.bfloat16 if cuda else torch.float32
        shape = dict(n_heads=cfg.n_heads, n_kv_heads=cfg.n_kv_heads, head_dim=cfg.head_dim)
        ids = stage_layers(n_layers, world, rank) if mode == "pp" else range(n_layers)
        layers = [{k: v.to(dev).requires_grad_(k in WEIGHTS) for k, v in
                   full_weights(cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.ffn_dim, seed=j,
                                dtype=dt).items()} for j in ids]
        xs = [torch.randn(batch, seq_len, cfg.d_model, device=dev, dtype=dt) for _ in range(micro_batches)]
        sync = torch.cuda.synchronize if cuda else (lambda: None)

        def step():
            if mode == "pp":
                pipeline_step(layers, xs, shape, rank, world, dev, dt)
            else:
                data_parallel_step(layers, xs[0], shape, world)
            for w in layers:
                for k in WEIGHTS:
                    w[k].grad = None

        for _ in range(2):
            step()
        sync()
        dist.barrier()
        t0 = time.perf_counter()
        for _ in range(iters):
            step()
        sync()
        t = torch.tensor([(time.perf_counter() - t0) / iters], dtype=torch.float64, device=dev)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        if rank == 0:
            queue.put({"mode": mode, "gpus": world, "layers": n_layers, "batch": batch, "seq_len": seq_len,
                       "micro_batches": micro_batches, "time_s": float(t.item())})
    finally:
        dist.destroy_process_group()


def measure(mode, cfg, world, n_layers, batch, seq_len, micro_batches, *, iters=5, backend="nccl", port=None):
    import torch.multiprocessing as mp

    from costmodel.parallel.collective_sweep import free_port

    port = port or free_port()
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(r, world, mode, cfg, n_layers, batch, seq_len, micro_batches, iters,
                                               port, q, backend)) for r in range(world)]
    for p in procs:
        p.start()
    out = q.get(timeout=900)
    for p in procs:
        p.join()
    return out


def predict_layers_only(cfg, cluster_name: str, mode: str, n: int, batch: int, seq_len: int, micro_batches: int):
    """ioaware's time for what the runner runs: the layers only (no embedding, output layer or optimizer)."""
    from costmodel.parallel.compute import micro_batch_compute
    from costmodel.parallel.training import iteration_time
    from hardware_specs.cluster import load_cluster, with_nodes
    from hardware_specs.loader import load_gpu

    cl = with_nodes(load_cluster(cluster_name), n)
    comp = micro_batch_compute(cfg, load_gpu(cl.gpu), batch, seq_len)
    comp = comp.model_copy(update={"first_s": 0.0, "last_s": 0.0, "optimizer_s": 0.0})
    pp, dp = (n, 1) if mode == "pp" else (1, n)
    parts = iteration_time(cl, cfg, comp, seq_len=seq_len, tp=1, pp=pp, dp=dp, micro_batch=batch,
                           micro_batches=micro_batches, virtual_stages=1, sequence_parallel=False, recompute="none",
                           zero_stage=0)
    return {"predicted_time_s": float(parts["time_s"]), "predicted_breakdown": {k: float(v) for k, v in parts.items()}}


def main(argv=None) -> int:
    import sys

    from costmodel.models import ModelConfig, load_model
    from costmodel.parallel.collective_sweep import environment

    ap = argparse.ArgumentParser(description="time 1F1B pipeline and data-parallel steps beside ioaware's prediction")
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", default="llama3-8b")
    ap.add_argument("--layers", type=int, default=8, help="layers of the model to run (a truncated model)")
    ap.add_argument("--pp", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--dp", type=int, nargs="*", default=[8])
    ap.add_argument("--micro-batches", type=int, default=8)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--cluster", default="dgx-h200")
    ap.add_argument("--backend", default="nccl")
    ap.add_argument("--budget-s", type=float, default=240.0)
    args = ap.parse_args(argv)
    base = load_model(args.model)
    cfg = ModelConfig.model_validate({**base.model_dump(), "n_layers": args.layers, "name": f"{base.name}-{args.layers}l"})
    rows, start = [], time.perf_counter()
    for mode, n in [("pp", p) for p in args.pp] + [("dp", d) for d in args.dp]:
        if time.perf_counter() - start > args.budget_s:
            break
        mb = args.micro_batches if mode == "pp" else 1
        got = measure(mode, cfg, n, args.layers, args.batch, args.seq_len, mb, backend=args.backend)
        rows.append({**got, **predict_layers_only(cfg, args.cluster, mode, n, args.batch, args.seq_len, mb)})
    with open(args.out, "w") as f:
        json.dump({"command": " ".join(["python3 -m costmodel.parallel.pp_step"] + sys.argv[1:]), "model": cfg.name,
                   "environment": environment(), "rows": rows}, f, indent=1)
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["data_parallel_step", "measure", "one_f_one_b", "pipeline_step", "stage_layers"]
