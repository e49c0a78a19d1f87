"""A tensor-parallel Llama decoder layer (Megatron column/row splits) in torch, and its timing runner.

Shoeybi et al. 2019 (Megatron-LM) §3: in each block the first linear (QKV; gate and up) is split by
output columns and the second (o_proj; down) by input rows, so a block needs the conjugate operators
f (forward identity, backward all-reduce) before it and g (forward all-reduce, backward identity)
after it. Attention heads and K/V heads split t ways (t divides both here).

``TPLayer`` holds one rank's shards; ``shard_weights`` cuts them from full weights so a test can check
the parallel layer against a plain float64 one (tests/test_tp_layer.py, gloo on two CPU processes).
``main`` is the thin GPU runner of issue 19: TP 2/4/8 over NCCL, prefill (forward of b x s tokens) and a
training step (forward + backward) of one layer or a stack of them (``--layers``; n_layers is the whole
decoder without embedding and output layer), timed, written beside ioaware's prediction for the same layer
(step predictor's per-layer compute at tensor_parallel=t plus the TP collectives of the cluster file).

    python3 -m costmodel.parallel.tp_layer --out tp.json --model llama3-8b --tp 2 4 8 --seq-len 4096
"""

from __future__ import annotations

import argparse
import json
import os
import time


def _autograd_ops():
    import torch
    import torch.distributed as dist

    class CopyToTP(torch.autograd.Function):  # f
        @staticmethod
        def forward(ctx, x):
            return x

        @staticmethod
        def backward(ctx, grad):
            grad = grad.contiguous()
            dist.all_reduce(grad)
            return grad

    class ReduceFromTP(torch.autograd.Function):  # g
        @staticmethod
        def forward(ctx, x):
            x = x.contiguous()
            dist.all_reduce(x)
            return x

        @staticmethod
        def backward(ctx, grad):
            return grad

    return CopyToTP.apply, ReduceFromTP.apply


def full_weights(d_model, n_heads, n_kv_heads, head_dim, ffn_dim, *, seed=0, dtype=None):
    """Random full weights of one layer (nn.Linear layout: [out, in]), seeded."""
    import torch

    g = torch.Generator().manual_seed(seed)
    dtype = dtype or torch.float64

    def w(o, i):
        return (torch.randn(o, i, generator=g, dtype=torch.float64) / i ** 0.5).to(dtype)

    return {"wq": w(n_heads * head_dim, d_model), "wk": w(n_kv_heads * head_dim, d_model),
            "wv": w(n_kv_heads * head_dim, d_model), "wo": w(d_model, n_heads * head_dim),
            "w_gate": w(ffn_dim, d_model), "w_up": w(ffn_dim, d_model), "w_down": w(d_model, ffn_dim),
            "norm1": torch.ones(d_model, dtype=dtype), "norm2": torch.ones(d_model, dtype=dtype)}


def shard_weights(full: dict, rank: int, tp: int) -> dict:
    """Rank ``rank``'s shards: columns of wq/wk/wv/w_gate/w_up, rows (input dim) of wo/w_down."""
    out = {}
    for k, v in full.items():
        if k in ("wq", "wk", "wv", "w_gate", "w_up"):
            out[k] = v.chunk(tp, dim=0)[rank].clone()
        elif k in ("wo", "w_down"):
            out[k] = v.chunk(tp, dim=1)[rank].clone()
        else:
            out[k] = v.clone()
    return out


def layer_forward(x, w, n_heads, n_kv_heads, head_dim, tp=1, eps=1e-5):
    """One pre-norm Llama layer on (B, S, h) x with this rank's shard (tp = 1: the plain layer).

    Rotary embeddings are left out: they act per head and commute with the head split, so they change
    neither the communication nor the split being checked.
    """
    import torch
    import torch.nn.functional as F

    if tp > 1:
        f, g = _autograd_ops()
    else:
        f = g = (lambda t: t)

    def rms(t, weight):
        return t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + eps) * weight

    B, S, _ = x.shape
    hq, hkv = n_heads // tp, n_kv_heads // tp
    a = f(rms(x, w["norm1"]))
    q = (a @ w["wq"].T).view(B, S, hq, head_dim).transpose(1, 2)  # (B, hq, S, d)
    k = (a @ w["wk"].T).view(B, S, hkv, head_dim).transpose(1, 2)
    v = (a @ w["wv"].T).view(B, S, hkv, head_dim).transpose(1, 2)
    k, v = (t.repeat_interleave(hq // hkv, dim=1) for t in (k, v))
    o = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, S, hq * head_dim)
    x = x + g(o @ w["wo"].T)
    m = f(rms(x, w["norm2"]))
    return x + g((F.silu(m @ w["w_gate"].T) * (m @ w["w_up"].T)) @ w["w_down"].T)


def _time(fn, iters, sync):
    for _ in range(3):
        fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    sync()
    return (time.perf_counter() - t0) / iters


def _worker(rank, world, cfg, batch, seq_len, iters, port, queue, backend, layers=1):
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
        ws = []
        for j in range(layers):  # layers = n_layers: the whole decoder (embedding and output layer aside)
            full = full_weights(cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.ffn_dim, seed=j, dtype=dt)
            ws.append({k: v.to(dev).requires_grad_(k not in ("norm1", "norm2"))
                       for k, v in shard_weights(full, rank, world).items()})
        x = torch.randn(batch, seq_len, cfg.d_model, device=dev, dtype=dt, generator=None, requires_grad=True)
        sync = torch.cuda.synchronize if cuda else (lambda: None)
        heads = (cfg.n_heads, cfg.n_kv_heads, cfg.head_dim)

        def decoder():
            y = x
            for w in ws:
                y = layer_forward(y, w, *heads, tp=world)
            return y

        with torch.no_grad():
            fwd = _time(decoder, iters, sync)
        train = _time(lambda: decoder().sum().backward(), iters, sync)
        res = torch.tensor([fwd, train], dtype=torch.float64, device=dev)
        dist.all_reduce(res, op=dist.ReduceOp.MAX)
        if rank == 0:
            queue.put({"tp": world, "layers": layers, "batch": batch, "seq_len": seq_len, "forward_s": float(res[0]),
                       "train_s": float(res[1])})
    finally:
        dist.destroy_process_group()


def measure(cfg, tp: int, batch: int, seq_len: int, *, iters: int = 10, backend: str = "nccl", port: int | None = None,
            layers: int = 1):
    import torch.multiprocessing as mp

    from costmodel.parallel.collective_sweep import free_port

    port = port or free_port()
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(r, tp, cfg, batch, seq_len, iters, port, q, backend, layers))
             for r in range(tp)]
    for p in procs:
        p.start()
    out = q.get(timeout=900)
    for p in procs:
        p.join()
    return out


def predict(cfg, gpu, cluster, tp: int, batch: int, seq_len: int, layers: int = 1) -> dict:
    """ioaware's time for the same layers: per-layer compute (step predictor) + the TP all-reduces, x layers."""
    from costmodel.parallel.collectives import collective_time
    from costmodel.parallel.compute import micro_batch_compute
    from costmodel.step import predict_step

    train = micro_batch_compute(cfg, gpu, batch, seq_len, tensor_parallel=tp).layer_s
    pre = predict_step(cfg, gpu, phase="prefill", batch=batch, seq_len=seq_len, tensor_parallel=tp, norm="fused",
                       rope="fused")
    fwd = sum(float(r.time_s) for r in pre.ops if r.layer is not None) / cfg.n_layers
    S = batch * seq_len * cfg.d_model * 2
    ar = float(collective_time(cluster, "all_reduce", S, tp))
    return {"forward_s": layers * (fwd + 2 * ar), "train_s": layers * (float(train) + 4 * ar), "all_reduce_s": ar}


def main(argv=None) -> int:
    import sys

    from costmodel.models import load_model
    from costmodel.parallel.collective_sweep import environment
    from hardware_specs.cluster import load_cluster
    from hardware_specs.loader import load_gpu

    ap = argparse.ArgumentParser(description="time a Megatron TP Llama layer at TP 2/4/8 beside ioaware's prediction")
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", default="llama3-8b")
    ap.add_argument("--tp", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--layers", type=int, default=1, help="layers stacked (the model's n_layers: the whole decoder)")
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--gpu", default="h200-sxm-141gb")
    ap.add_argument("--cluster", default="dgx-h200")
    ap.add_argument("--backend", default="nccl")
    ap.add_argument("--budget-s", type=float, default=240.0)
    args = ap.parse_args(argv)
    cfg, gpu, cluster = load_model(args.model), load_gpu(args.gpu), load_cluster(args.cluster)
    start, rows = time.perf_counter(), []
    for t in args.tp:
        if time.perf_counter() - start > args.budget_s:
            break
        m = measure(cfg, t, args.batch, args.seq_len, backend=args.backend, layers=args.layers)
        rows.append({**m, "predicted": predict(cfg, gpu, cluster, t, args.batch, args.seq_len, args.layers)})
    with open(args.out, "w") as f:
        json.dump({"command": " ".join(["python3 -m costmodel.parallel.tp_layer"] + sys.argv[1:]), "model": cfg.name,
                   "environment": environment(), "rows": rows}, f, indent=1)
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["full_weights", "layer_forward", "measure", "predict", "shard_weights"]
