"""``ioaware serve-sim`` / ``serve-search``, ``simulate_serving``'s KV capacity and ``max_rate_at_slo``."""

import contextlib
import io
import json

import numpy as np
import pytest

from costmodel.cli import main
from costmodel.models import load_model
from costmodel.params import count_params
from costmodel.serving import simulate_serving
from costmodel.serving.capacity import kv_capacity
from costmodel.serving.search import max_rate_at_slo
from costmodel.serving.workload import Workload
from hardware_specs import load_gpu

SIM = ["serve-sim", "--model", "llama3-8b", "--gpu", "h200-sxm-141gb"]


def run_json(argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(argv + ["--json"]) == 0
    text = out.getvalue()
    assert len(text.strip().splitlines()) == 1
    return json.loads(text)


def exit_code_and_stderr(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def test_serve_sim_json_has_the_issue_fields(tmp_path):
    data = run_json(SIM + ["--rate", "4", "--requests", "60", "--prompt-len", "uniform:128:512",
                           "--output-len", "32", "--slo-ttft", "0.5", "--plot", str(tmp_path / "run")])
    for key in ("requests_per_s", "output_tokens_per_s", "mean_in_system", "kv_utilization", "preemptions"):
        assert key in data
    for key in ("ttft_s", "tpot_s"):
        s = data[key]
        assert 0 < s["p50"] <= s["p90"] <= s["p99"] and s["mean"] > 0
    assert data["output_tokens_per_s"] == pytest.approx(data["requests_per_s"] * 32)
    assert data["config"]["step_predictor"] == "costmodel.step.predict_batch"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run-latency.html", "run-timeline.html"]


@pytest.mark.parametrize("extra,option", [
    (["--rate", "4", "--prompt-len", "uniform:9"], "--prompt-len"),
    (["--rate", "4", "--output-len", "lognormal:0:1"], "--output-len"),
    ([], "--rate"),
    (["--rate", "4", "--tp", "3"], "--tp"),
])
def test_serve_sim_bad_input_is_one_line_naming_the_option(extra, option, capsys):
    code, err = exit_code_and_stderr(SIM + extra, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and option in err


def test_kv_capacity_from_published_numbers():
    # Llama-3-8B: 8,030,261,248 parameters (the HF checkpoint's count); K/V per token 2 x 32 layers x
    # 8 heads x 128 x 2 B = 131,072 B; H200 141 GiB; vLLM's 0.9 utilization.
    cfg, gpu = load_model("llama3-8b"), load_gpu("h200-sxm-141gb")
    assert count_params(cfg).total == 8_030_261_248
    free = 0.9 * 141 * 2**30 - 2 * 8_030_261_248
    cap = kv_capacity(cfg, gpu, block_size=16)
    assert cap["num_blocks"] == int(free // (16 * 131_072))
    cap2 = kv_capacity(cfg, gpu, block_size=16, tensor_parallel=2)  # half the weights and heads per GPU
    assert cap2["num_blocks"] == int((0.9 * 141 * 2**30 - 8_030_261_248) // (16 * 65_536))
    cap16 = kv_capacity(cfg, gpu, block_size=16, tensor_parallel=16)  # 8 KV heads over 16 GPUs: replicated
    assert cap16["replicated_kv"] and cap16["kv_heads_per_gpu"] == 1


def test_max_rate_at_slo_matches_md1():
    # static batches of one, 4 steps of 10 ms a request (prefill + 3 decodes): M/D/1 with S = 40 ms.
    # Mean TTFT = Wq + 10 ms, Wq = rho S / (2 (1 - rho)); TTFT <= 30 ms  <=>  Wq <= 20 ms  <=>  rho = 1/2.
    found = max_rate_at_slo("llama3-8b", "h200-sxm-141gb", slo_ttft_s=0.030, stat="mean", start_rate_per_s=2.0,
                            rel_tol=0.02, n_requests=5000, prompt_len="8", output_len="4", scheduler="static",
                            max_seqs=1, step_time=lambda new, ctx: 0.01)
    assert found["saturation_rate_per_s"] == pytest.approx(25.0, rel=1e-6)  # 1 / S
    assert found["limited_by"] == "slo"
    assert found["max_rate_per_s"] == pytest.approx(0.5 / 0.040, rel=0.06)
    assert np.all(np.diff([t["rate_per_s"] for t in found["trials"][:3]]) > 0)


def test_tp_communication_hook_adds_to_every_step():
    # one request, prompt 8, 3 output tokens; every step 1 s plus 0.25 s of collectives for its 8 (prefill)
    # or 1 (decode) tokens: the hook sees each step's tokens
    seen = []

    def comm(tokens):
        seen.extend(np.atleast_1d(tokens).tolist())
        return 0.25 * np.ones_like(tokens)

    w = Workload(np.array([0.0]), np.array([8]), np.array([3]), "one request")
    r = simulate_serving("llama3-8b", "h200-sxm-141gb", w, scheduler="chunked", tensor_parallel=2,
                         step_time=lambda new, ctx: 1.0, tp_comm_s=comm)
    assert r.requests["ttft_s"][0] == 1.25 and r.requests["e2e_s"][0] == 3.75
    assert set(seen) == {8.0, 1.0}


def test_serve_sim_reads_a_trace(tmp_path):
    (tmp_path / "t.csv").write_text("arrival_s,prompt_len,output_len\n0.0,100,5\n0.5,300,1\n0.25,50,12\n")
    data = run_json(SIM + ["--trace", str(tmp_path / "t.csv"), "--scheduler", "continuous", "--per-request"])
    assert data["requests"] == 3 and data["config"]["workload"].startswith("trace")
    assert data["output_tokens_per_s"] == pytest.approx(18 / data["span_s"])
    assert data["span_s"] > 0.5  # the last arrival is at 0.5 s
    per = data["per_request"]
    assert per["arrival_s"] == [0.0, 0.25, 0.5] and per["output_len"] == [5, 12, 1]  # sorted by arrival
    assert per["tpot_s"][2] is None  # one output token: no TPOT
    assert all(t <= e for t, e in zip(per["ttft_s"], per["e2e_s"]))


def test_kv_capacity_subtracts_the_profile_forward_peak():
    # vLLM's profile run at 2048 tokens over 256 sequences, Llama-3-8B bf16 by hand: the MLP's moment
    # holds the most, x (h) plus gate, up, their product and silu (4 f) = 2048 x 2 B x (4096 + 4 x 14336)
    # = 251,658,240 B, beside cuBLAS's 32 MiB workspace (costmodel/step/memory.py)
    cfg, gpu = load_model("llama3-8b"), load_gpu("h200-sxm-141gb")
    free = 0.9 * 141 * 2**30 - 2 * 8_030_261_248 - 251_658_240 - 32 * 2**20
    cap = kv_capacity(cfg, gpu, block_size=16, profile_tokens=2048, profile_sequences=256)
    assert cap["profile_peak_bytes_per_gpu"] == 251_658_240 + 32 * 2**20
    assert cap["num_blocks"] == int(free // (16 * 131_072))
