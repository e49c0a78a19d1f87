"""The Megatron column/row-split Llama layer of issue 19, on two gloo CPU processes, against the plain layer in float64."""

import pytest

torch = pytest.importorskip("torch")

from costmodel.parallel.collective_sweep import free_port  # noqa: E402
from costmodel.parallel.tp_layer import full_weights, layer_forward, shard_weights  # noqa: E402

SEED = 14
SHAPE = dict(n_heads=4, n_kv_heads=2, head_dim=8)  # d_model 32, 2 K/V heads: one per rank at TP 2


def _rank(rank, world, port, queue):
    import os

    import torch.distributed as dist

    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        full = full_weights(32, ffn_dim=48, seed=SEED, **SHAPE)
        w = {k: v.requires_grad_() for k, v in shard_weights(full, rank, world).items()}
        x = torch.randn(2, 5, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(SEED + 1))
        y = layer_forward(x, w, tp=world, **SHAPE)
        y.sum().backward()
        if rank == 0:
            # numpy copies: a torch tensor would travel as shared memory that dies with this process
            queue.put(tuple(t.detach().numpy().copy() for t in (y, w["wq"].grad, w["w_down"].grad)))
    finally:
        dist.destroy_process_group()


def test_tp2_matches_plain_layer():
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    port = free_port()  # fixed ports collide with other jobs on the machine
    procs = [ctx.Process(target=_rank, args=(r, 2, port, q)) for r in range(2)]
    for p in procs:
        p.start()
    y_tp, gq, gdown = (torch.from_numpy(a) for a in q.get(timeout=120))
    for p in procs:
        p.join()
    full = {k: v.requires_grad_() for k, v in full_weights(32, ffn_dim=48, seed=SEED, **SHAPE).items()}
    x = torch.randn(2, 5, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(SEED + 1))
    y = layer_forward(x, full, tp=1, **SHAPE)
    y.sum().backward()
    assert torch.allclose(y_tp, y, atol=1e-12)
    assert torch.allclose(gq, full["wq"].grad.chunk(2, dim=0)[0], atol=1e-12)  # rank 0's column shard
    assert torch.allclose(gdown, full["w_down"].grad.chunk(2, dim=1)[0], atol=1e-12)  # rank 0's row shard
