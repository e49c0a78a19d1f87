"""Issue 19's pipeline (1F1B) and data-parallel steps on two gloo CPU processes, against one process in float64."""

import pytest

torch = pytest.importorskip("torch")

from costmodel.parallel.collective_sweep import free_port  # noqa: E402
from costmodel.parallel.pp_step import WEIGHTS, data_parallel_step, one_f_one_b, pipeline_step, stage_layers  # noqa: E402
from costmodel.parallel.tp_layer import full_weights, layer_forward  # noqa: E402

SEED = 21
SHAPE = dict(n_heads=4, n_kv_heads=2, head_dim=8)
D, F, L, M = 32, 48, 4, 3  # d_model, ffn, layers, micro-batches


def weights(j):
    return {k: v.requires_grad_(k in WEIGHTS) for k, v in full_weights(D, ffn_dim=F, seed=SEED + j, **SHAPE).items()}


def inputs():
    g = torch.Generator().manual_seed(SEED)
    return [torch.randn(2, 5, D, dtype=torch.float64, generator=g) for _ in range(M)]


def _rank(rank, world, port, queue):
    """Both steps in one process group (one spawn: torch's import is most of the cost)."""
    import os

    import torch.distributed as dist

    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        out = {}
        for mode in ("pp", "dp"):
            if mode == "pp":
                ids = list(stage_layers(L, world, rank))
                layers = [weights(j) for j in ids]
                loss = pipeline_step(layers, inputs(), SHAPE, rank, world, torch.device("cpu"), torch.float64)
            else:
                ids = list(range(L))
                layers = [weights(j) for j in ids]
                data_parallel_step(layers, inputs()[rank], SHAPE, world)
                loss = None
            grads = {(j, k): w[k].grad.numpy().copy() for j, w in zip(ids, layers) for k in WEIGHTS}
            out[mode] = (rank, None if loss is None else float(loss), grads)
        queue.put(out)
    finally:
        dist.destroy_process_group()


def run(port):
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_rank, args=(r, 2, port, q)) for r in range(2)]
    for p in procs:
        p.start()
    got = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join()
    return {mode: [g[mode] for g in got] for mode in ("pp", "dp")}


def reference(xs, scale):
    layers = [weights(j) for j in range(L)]
    total = 0.0
    for x in xs:
        y = x
        for w in layers:
            y = layer_forward(y, w, **SHAPE)
        loss = (y ** 2).mean() * scale
        loss.backward()
        total += float(loss.detach())
    return total, {(j, k): w[k].grad for j, w in enumerate(layers) for k in WEIGHTS}


def test_schedule_orders():
    assert one_f_one_b(4, 0, 6)[:4] == [("F", 0), ("F", 1), ("F", 2), ("F", 3)]
    assert one_f_one_b(4, 3, 2) == [("F", 0), ("B", 0), ("F", 1), ("B", 1)]
    for s in range(4):
        order = one_f_one_b(4, s, 6)
        assert sorted(order) == sorted([("F", i) for i in range(6)] + [("B", i) for i in range(6)])


def test_pipeline_and_data_parallel_match_one_process():
    loss_ref, g_ref = reference(inputs(), 1 / M)
    both = run(free_port())
    pp = both["pp"]
    loss = [loss for _, loss, _ in pp if loss is not None]
    assert loss == [pytest.approx(loss_ref, rel=1e-12)]
    for _, _, grads in pp:
        for key, g in grads.items():
            assert torch.allclose(torch.from_numpy(g), g_ref[key], atol=1e-12), key
    _, g_dp = reference(inputs()[:2], 1 / 2)  # DP over 2 ranks: the mean of their gradients
    for _, _, grads in both["dp"]:
        for key, g in grads.items():
            assert torch.allclose(torch.from_numpy(g), g_dp[key], atol=1e-12), key
