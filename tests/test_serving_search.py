"""``search_configs``: every setup of the grid searched, ranked by requests per second per GPU."""

import pytest

from costmodel.serving.search import search_configs


def step_time(new, ctx):
    """A stand-in step: 2 ms plus 50 us per new token (TP-blind, so TP 2 halves the rate per GPU)."""
    return 2e-3 + 50e-6 * float(sum(new))


@pytest.mark.parametrize("workers", [1, 2])
def test_search_ranks_setups_per_gpu(workers):
    found = search_configs("llama3-8b", "h200-sxm-141gb", tensor_parallel=(1, 2), max_seqs=(1, 8),
                           max_batch_tokens=(256,), workers=workers, slo_ttft_s=0.2, n_requests=120,
                           prompt_len="64", output_len="16", step_time=step_time, start_rate_per_s=4.0)
    rows = found["rows"]
    assert len(rows) == 4 and all("error" not in r for r in rows)
    assert [r["rate_per_gpu"] for r in rows] == sorted((r["rate_per_gpu"] for r in rows), reverse=True)
    best = found["best"]
    assert (best["tensor_parallel"], best["max_seqs"]) == (1, 8)
    by = {(r["tensor_parallel"], r["max_seqs"]): r for r in rows}
    assert by[(2, 8)]["max_rate_per_s"] == pytest.approx(by[(1, 8)]["max_rate_per_s"], rel=1e-9)  # same steps
    assert by[(1, 8)]["max_rate_per_s"] > 2 * by[(1, 1)]["max_rate_per_s"]  # batching pays


def test_search_on_ray_equals_the_local_search():
    # the same grid on a local Ray instance: the same rows in the same order
    pytest.importorskip("ray")  # the optional extra 'ray' (in the test extra)
    import sys

    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import this test file
    kw = dict(tensor_parallel=(1, 2), max_seqs=(1, 8), max_batch_tokens=(256,), slo_ttft_s=0.2, n_requests=60,
              prompt_len="64", output_len="16", step_time=step_time, start_rate_per_s=4.0)
    local = search_configs("llama3-8b", "h200-sxm-141gb", **kw)
    remote = search_configs("llama3-8b", "h200-sxm-141gb", ray_address="local", workers=1, **kw)
    assert remote["rows"] == local["rows"]
