"""The event loop against queueing theory: Little's law and the M/D/1 mean sojourn time."""

import numpy as np
import pytest

from costmodel.serving.blocks import BlockManager
from costmodel.serving.engine import run_engine
from costmodel.serving.metrics import run_metrics
from costmodel.serving.request import Request
from costmodel.serving.schedulers import make_scheduler
from costmodel.serving.workload import poisson_workload

SEED = 20261202


def _requests(w):
    return [Request(i, float(a), int(p), int(o)) for i, (a, p, o) in enumerate(zip(w.arrival_s, w.prompt_len,
                                                                                  w.output_len))]


def _affine_step(batch):
    """A stand-in step cost: 4 ms plus 20 us per new token and 50 ns per decode context token."""
    return 4e-3 + 20e-6 * batch.new_tokens + 50e-9 * batch.decode_ctx_sum


@pytest.mark.parametrize("scheduler", ["chunked", "continuous"])
def test_littles_law_on_a_long_run(scheduler):
    """Little (1961): time-average number in system = arrival rate x mean time in system. The engine
    counts N(t) itself; the right side uses the Poisson rate given and the requests' timestamps."""
    rate = 20.0
    w = poisson_workload(rate, 6000, prompt_len="uniform:32:256", output_len="uniform:4:64", seed=SEED)
    bm = BlockManager(2000, 16)
    run = run_engine(_requests(w), make_scheduler(scheduler, bm, max_seqs=64, max_batch_tokens=512), _affine_step)
    m = run_metrics(run, bm.num_blocks)
    assert m["mean_in_system"] == pytest.approx(rate * m["e2e_s"]["mean"], rel=0.05)
    # over the run's own span the identity is exact: the integral of N(t) is the sum of sojourn times
    assert m["mean_in_system"] == pytest.approx(m["requests_per_s"] * m["e2e_s"]["mean"], rel=1e-9)


def test_static_batch_of_one_is_an_md1_queue():
    """One request at a time, each the same number of equal steps: M/D/1, whose mean time in system is
    W = S + rho S / (2 (1 - rho)) (Pollaczek-Khinchine with zero service variance)."""
    step_s, out_len, rho = 0.01, 4, 0.6
    service_s = out_len * step_s  # one prefill step and out_len - 1 decodes
    rate = rho / service_s
    w = poisson_workload(rate, 40000, prompt_len="8", output_len=str(out_len), seed=SEED)
    bm = BlockManager(64, 16)
    run = run_engine(_requests(w), make_scheduler("static", bm, max_seqs=1), lambda batch: step_s)
    m = run_metrics(run, bm.num_blocks)
    expected = service_s + rho * service_s / (2 * (1 - rho))
    assert m["e2e_s"]["mean"] == pytest.approx(expected, rel=0.03)
    assert m["ttft_s"]["mean"] == pytest.approx(expected - (out_len - 1) * step_s, rel=0.04)


def test_throughput_equals_arrival_rate_below_saturation():
    rate = 5.0
    w = poisson_workload(rate, 1500, prompt_len="lognormal:200:0.5", output_len="lognormal:50:0.5", seed=SEED)
    bm = BlockManager(4000, 16)
    run = run_engine(_requests(w), make_scheduler("chunked", bm), _affine_step)
    m = run_metrics(run, bm.num_blocks)
    assert m["requests_per_s"] == pytest.approx(rate, rel=0.05)
    assert m["output_tokens_per_s"] == pytest.approx(rate * np.mean(w.output_len), rel=0.05)
    assert 0 < m["kv_utilization"] < m["kv_utilization_peak"] <= 1


@pytest.mark.parametrize("scheduler,blocks,rate", [("chunked", 4000, 6.0), ("continuous", 4000, 6.0),
                                                   ("chunked", 60, 40.0), ("continuous", 60, 40.0)])
def test_runs_of_decodes_change_nothing(scheduler, blocks, rate):
    """Decode runs applied as one event (engine.py) give every request the timestamps that stepping
    one decode at a time gives, preemptions included (60 blocks of 16 tokens: the cache runs out)."""
    from costmodel.serving.cost import StepCost

    def predict(new, ctx):  # any cost that depends on the batch: 3 ms + 30 us per token + 20 ns per context token
        return 3e-3 + 30e-6 * float(np.sum(new)) + 20e-9 * float(np.sum(ctx))

    w = poisson_workload(rate, 400, prompt_len="uniform:16:200", output_len="uniform:2:120", seed=SEED)
    runs = []
    for fast in (True, False):
        cost = StepCost(predict, resolution_bits=None)
        step = cost if fast else (lambda batch, c=cost: c(batch))  # the lambda hides decode_only
        bm = BlockManager(blocks, 16)
        sched = make_scheduler(scheduler, bm, max_seqs=48, max_batch_tokens=256)
        runs.append((run_engine(_requests(w), sched, step), sched))
    (fast, s_fast), (slow, s_slow) = runs
    assert len(fast.timeline.start_s) == len(slow.timeline.start_s)
    for a, b in zip(fast.requests, slow.requests):
        assert (a.first_token_s, a.finish_s, a.preemptions) == (b.first_token_s, b.finish_s, b.preemptions)
    assert s_fast.preemptions == s_slow.preemptions and (blocks > 200 or s_fast.preemptions > 10)
    assert fast.in_system_area == pytest.approx(slow.in_system_area, rel=1e-12)


def test_tensor_parallel_counts_its_all_reduces_by_default():
    """TP 2 on an H200: each step pays 2 all-reduces per layer on the bundled DGX H200 (costmodel.parallel),
    so steps are slower than the same run with communication given as free; TP 1 has none to count."""
    from costmodel.models import load_model
    from costmodel.parallel.collectives import collective_time
    from costmodel.parallel.inference import tp_step_comm_s
    from costmodel.serving import simulate_serving
    from hardware_specs.cluster import load_cluster, with_nodes

    kw = dict(rate_per_s=4.0, n_requests=40, prompt_len="256", output_len="16", seed=0, tensor_parallel=2)
    counted = simulate_serving("tinyllama-1.1b", "h200-sxm-141gb", **kw)
    free = simulate_serving("tinyllama-1.1b", "h200-sxm-141gb", tp_comm_s=lambda tokens: 0.0 * tokens, **kw)
    assert counted.config["tp_communication"] == "counted"
    assert counted.metrics["tpot_s"]["p50"] > free.metrics["tpot_s"]["p50"]
    cfg, dgx = load_model("tinyllama-1.1b"), load_cluster("dgx-h200")
    one = float(collective_time(with_nodes(dgx, 2), "all_reduce", 8 * cfg.d_model * 2, 2))  # 8 tokens, bf16
    assert float(tp_step_comm_s(cfg, dgx, 2, 8)) == pytest.approx(2 * cfg.n_layers * one)
    assert simulate_serving("tinyllama-1.1b", "h200-sxm-141gb", **{**kw, "tensor_parallel": 1}).config[
        "tp_communication"] == "not counted"
