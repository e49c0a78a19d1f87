"""The serving engine's host time per step (``costmodel.serving.engine_host``) and its fit from
recorded loop steps (``costmodel.validation.serving_engine_fit``)."""

import numpy as np
import pytest

from costmodel.serving import simulate_serving
from costmodel.serving.engine_host import EngineHost, engine_names, load_engine
from costmodel.serving.workload import Workload
from costmodel.validation import serving_engine_fit as fit

ENGINE = EngineHost(name="t", description="test", graph_step_s=5e-4, graph_per_request_s=2.5e-4,
                    prefill_step_s=2e-4, prefill_per_token_s=1e-5)


def constant_step(new, ctx):
    return 1e-3


def one_request(prompt: int, output: int) -> Workload:
    return Workload(np.array([0.0]), np.array([prompt]), np.array([output]), "one request")


def test_engine_host_adds_its_time_to_every_step():
    # one request alone: its prefill step is eager (1 ms + 0.2 ms + 8 tokens x 10 us), each later step a
    # decode-only graph (1 ms + 0.5 ms + 1 request x 0.25 ms), worked by hand from the formula
    ideal = simulate_serving("tinyllama-1.1b", "h200-sxm-141gb", one_request(8, 5), step_time=constant_step,
                             scheduler="continuous").metrics
    timed = simulate_serving("tinyllama-1.1b", "h200-sxm-141gb", one_request(8, 5), step_time=constant_step,
                             scheduler="continuous", engine=ENGINE).metrics
    assert ideal["ttft_s"]["p50"] == pytest.approx(1e-3)
    assert ideal["tpot_s"]["p50"] == pytest.approx(1e-3)
    assert timed["ttft_s"]["p50"] == pytest.approx(1e-3 + 2e-4 + 8 * 1e-5)
    assert timed["tpot_s"]["p50"] == pytest.approx(1e-3 + 5e-4 + 2.5e-4)


def test_all_eager_launch_prices_decodes_as_eager_steps():
    # launch="eager": no CUDA graphs, so a decode step costs the eager formula (0.2 ms + 1 token x 10 us)
    m = simulate_serving("tinyllama-1.1b", "h200-sxm-141gb", one_request(8, 5), step_time=constant_step,
                         scheduler="continuous", engine=ENGINE, step_options={"launch": "eager"}).metrics
    assert m["tpot_s"]["p50"] == pytest.approx(1e-3 + 2e-4 + 1e-5)


def test_engines_load_and_refuse_by_name():
    assert {"ideal", "torch-loop"} <= set(engine_names())
    assert load_engine("ideal").step_s(True, 64, 64) == 0.0
    loop = load_engine("torch-loop")
    assert loop.measured is not None and loop.graph_step_s > 0
    with pytest.raises(ValueError, match="engine: 'vllm-v9'; allowed: "):
        load_engine("vllm-v9")


def _results(params: dict, model: str, rng) -> dict:
    """Recorded steps whose host split follows ``params`` exactly (decode-only and prefill steps)."""
    steps = []
    for b in rng.integers(1, 128, 40):
        host = params["graph_step_s"] + params["graph_per_request_s"] * b
        steps.append({"decodes": int(b), "chunks": [], "schedule_s": 0.1 * host, "prep_s": 0.3 * host,
                      "issue_s": 0.6 * host})
    for t in rng.integers(16, 2048, 40):
        host = params["prefill_step_s"] + params["prefill_per_token_s"] * t
        steps.append({"decodes": 0, "chunks": [[int(t), 0]], "schedule_s": 0.5 * host, "prep_s": 0.5 * host,
                      "issue_s": 1.0})  # an eager step's issue is its forward's launches: not the engine's
    return {"runs": [{"model": model, "steps": steps}]}


def test_fit_recovers_constructed_host_times_and_checks_another_model():
    rng = np.random.default_rng(7)
    want = {"graph_step_s": 4.5e-4, "graph_per_request_s": 5e-6, "prefill_step_s": 2.2e-4, "prefill_per_token_s": 1.6e-7}
    data = _results(want, "a", rng)
    data["runs"] += _results(want, "b", rng)["runs"]
    got = fit.fit(data, "a")
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=1e-9)
    held = fit.check(got, data, "b")
    assert held["graph"]["abs_error_p90_s"] < 1e-12 and abs(held["prefill"]["total_rel_error"]) < 1e-9


def test_fit_refuses_runs_without_the_host_split():
    with pytest.raises(ValueError, match="model: no recorded step of 'a' carries the host split"):
        fit.fit({"runs": [{"model": "a", "steps": [{"decodes": 1, "chunks": [], "time_s": 1.0}]}]}, "a")


def test_attention_call_fit_round_trips():
    # eager steps "measured" as the predictor's forward with 120 us a call plus known host work: the
    # bisection finds 120 us back
    from costmodel.step import predict_batch

    gpu = "h200-sxm-141gb-measured"
    chunks = [[[300, 0]], [[64, 0], [900, 0]], [[512, 0]], [[128, 0]], [[40, 0]]]
    steps = []
    for ch in chunks:
        new = [[m for m, _ in ch]]
        fwd = float(predict_batch("tinyllama-1.1b", gpu, new, [[0] * len(ch)], launch="eager",
                                  attention_host_per_call_s=1.2e-4).time_s[0])
        steps.append({"decodes": 0, "decode_ctx_sum": 0, "chunks": ch, "schedule_s": 1e-5, "prep_s": 2e-4,
                      "issue_s": fwd, "time_s": fwd + 1e-5 + 2e-4})
    data = {"runs": [{"model": "tinyllama-1.1b", "steps": steps}]}
    assert fit.fit_attention_call(data, "tinyllama-1.1b", gpu) == pytest.approx(1.2e-4, rel=1e-6)


def test_graph_prefill_fit_counts_the_issue_as_host_time():
    # with prefill graphs (setup prefill_launch: graph) a prefill step's issue (copies, replay) is host
    # work the GPU waits for: the constructed steps put 40 % of the host time there
    rng = np.random.default_rng(11)
    want = {"graph_step_s": 4.0e-4, "graph_per_request_s": 4e-6, "prefill_step_s": 6e-4, "prefill_per_token_s": 3e-7}
    data = _results(want, "a", rng)
    for s in data["runs"][0]["steps"]:
        if s["chunks"]:
            host = want["prefill_step_s"] + want["prefill_per_token_s"] * s["chunks"][0][0]
            s["schedule_s"], s["prep_s"], s["issue_s"] = 0.2 * host, 0.4 * host, 0.4 * host
    data["setup"] = {"prefill_launch": "graph"}
    got = fit.fit(data, "a", gpu="h200-sxm-141gb-measured")
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=1e-9)
    assert "eager_attention_call_s" not in got  # graphs have no per-call host work to fit


def test_prefill_graphs_pad_tokens_to_their_bucket():
    # 300 + 45 = 345 new tokens pad to 352 (a multiple of 16): one more request of 7 tokens, no context
    eng = EngineHost(name="g", description="graphs", graph_step_s=0, graph_per_request_s=0, prefill_step_s=0,
                     prefill_per_token_s=0, prefill_launch="graph", prefill_token_multiple=16)
    new, ctx = eng.pad_prefill(np.array([[300, 45], [16, 0]]), np.array([[0, 700], [5, 0]]))
    assert new.tolist() == [[300, 45, 7], [16, 0, 0]]
    assert ctx.tolist() == [[0, 700, 0], [5, 0, 0]]
    assert not eng.is_ideal
    eager = eng.model_copy(update={"prefill_launch": "eager"})
    assert eager.pad_prefill(np.array([[300]]), np.array([[0]]))[0].tolist() == [[300]]


def test_simulated_prefill_graph_step_is_priced_padded():
    # one 8-token prompt alone: with prefill graphs padded to 16 its first token takes the graph-launched
    # step of a batch of 8 + 8 padding tokens (predict_batch asked directly) plus the engine's host time
    from costmodel.step import predict_batch

    gpu = "h200-sxm-141gb-measured"
    eng = EngineHost(name="g", description="graphs", graph_step_s=1e-4, graph_per_request_s=0, prefill_step_s=3e-4,
                     prefill_per_token_s=0, prefill_launch="graph", prefill_token_multiple=16)
    m = simulate_serving("tinyllama-1.1b", gpu, one_request(8, 3), scheduler="continuous", engine=eng,
                         resolution_bits=None).metrics
    want = float(predict_batch("tinyllama-1.1b", gpu, [[8, 8]], [[0, 0]], launch="graph").time_s[0]) + 3e-4
    assert m["ttft_s"]["p50"] == pytest.approx(want, rel=1e-9)
