"""costmodel/app: the web app's values, figures and callbacks, without a browser.

Expected numbers are worked out here from the model's shape (Kaplan et al. 2020 Table 1
for the matmul FLOPs) or taken from the simulator called with the shape derived in the test.
"""

import base64
import json
import sys

import numpy as np
import pytest

from costmodel.app import figures
from costmodel.app.inputs import UPLOAD_PREFIX, AppInputs, decode_upload
from costmodel.app.views import evaluate
from costmodel.models import load_model
from hardware_specs import load_gpu
from simulators import simulate_attention

PHASES = ("prefill", "decode", "train", "serving")


@pytest.fixture(scope="module")
def views():
    return {phase: evaluate(AppInputs(phase=phase, batch=2, seq_len=1024, model="llama2-7b", gpu="a100-sxm4-80gb"))
            for phase in PHASES}


def test_attention_rows_are_the_simulators(views):
    spec = load_gpu("a100-sxm4-80gb")
    # llama2-7b: 32 heads of 128, no GQA
    for phase, seq_len, causal, pass_ in (("prefill", 1024, True, "fwd"), ("decode", 1, False, "fwd"),
                                          ("train", 1024, True, "fwd+bwd")):
        rows = {r["label"]: r for r in views[phase]["attention"]["rows"]}
        step_impl = views[phase]["summary"]["step_attention_impl"]  # "auto": the step's backend, simulated too
        assert set(rows) == {"standard", "flash2", f"chosen: {step_impl}"}
        for impl in ("standard", "flash2", step_impl):
            row = rows.get(impl) or rows[f"chosen: {impl}"]
            r = simulate_attention(spec, impl, batch=2, heads=32, kv_heads=32, seq_len=seq_len, kv_len=1024,
                                   head_dim=128, dtype="bf16", causal=causal, pass_=pass_)
            assert row["hbm_bytes"] == r.hbm_bytes and row["l2_bytes"] == r.l2_bytes
            assert row["smem_bytes"] == r.smem_bytes and row["time_s"] == r.time_s


def test_chosen_implementation_is_added_beside_standard_and_fa2():
    v = evaluate(AppInputs(phase="decode", attention_impl="flash-decoding", seq_len=8192))
    assert [r["label"] for r in v["attention"]["rows"]] == ["standard", "flash2", "chosen: flash-decoding"]
    assert v["attention"]["rows"][2]["kernels"][0]["name"] == "decode"


def test_step_matmul_flops_follow_kaplan_table_1():
    """Forward matmul FLOPs over all layers: tokens x 2·(h(a+2g)d + a·d·h + 3·h·f) per layer (SwiGLU)."""
    v = evaluate(AppInputs(phase="prefill", batch=2, seq_len=1024, model="llama2-7b", gpu="a100-sxm4-80gb"))
    cfg = load_model("llama2-7b")
    h, a, g, d, f, n = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.ffn_dim, cfg.n_layers
    tokens = 2 * 1024
    per_layer = 2 * h * (a + 2 * g) * d + 2 * a * d * h + 2 * 3 * h * f
    got = sum(op["flops"] for op in v["ops"] if op["name"] in ("qkv", "out_proj", "gate_up", "down"))
    assert got == pytest.approx(tokens * per_layer * n, rel=1e-12)


def test_timeline_lays_the_ops_end_to_end(views):
    for phase in PHASES:
        v = views[phase]
        segs = v["timeline"]
        starts = np.array([s["start_s"] for s in segs])
        ends = np.array([s["end_s"] for s in segs])
        assert starts[0] == 0 and np.all(starts[1:] == ends[:-1])
        assert ends[-1] == pytest.approx(sum(op["time_s"] for op in v["ops"]), rel=1e-12)  # rows: summed over layers
        assert ends[-1] == pytest.approx(v["summary"]["gpu_time_s"], rel=1e-12)
        assert v["summary"]["time_s"] >= v["summary"]["gpu_time_s"]  # the step adds launch gaps
        layered = [s["layer"] for s in segs if s["layer"] is not None and s["part"] == "fwd"]
        assert layered == sorted(layered) and layered[-1] == 31  # llama2-7b's 32 layers, in order
    train = [s["part"] for s in views["train"]["timeline"]]
    assert train.index("bwd") > max(i for i, p in enumerate(train) if p == "fwd")  # backward after forward


def test_memory_view_against_the_capacity(views):
    spec = load_gpu("a100-sxm4-80gb")
    for v in views.values():
        mem = v["memory"]
        assert mem["capacity_bytes"] == spec.hbm_bytes
        assert mem["total_bytes"] == pytest.approx(sum(mem["terms_bytes"].values()))
        assert v["summary"]["fits"] == (mem["total_bytes"] <= spec.hbm_bytes)
    # 2 (K, V) · 32 layers · 32 heads · 128 · 2 B · batch 2 · (1024 cached + 1 new) tokens
    assert views["decode"]["memory"]["terms_bytes"]["kv_cache"] == 2 * 32 * 32 * 128 * 2 * 2 * 1025


def test_parallel_view_is_predict_inference():
    """With TP x PP > 1 the parallelism panel holds predict_inference's numbers on the GPU's cluster."""
    v = evaluate(AppInputs(phase="decode", tensor_parallel=2, pipeline_parallel=2, batch=4, seq_len=2048))
    figures.parallel_figure(v)
    from costmodel.parallel.inference import predict_inference

    r = predict_inference("llama3-8b", "dgx-h200", phase="decode", batch=4, seq_len=2048, tp=2, pp=2)
    par = v["parallel"]
    assert (par["cluster"], par["gpus"]) == ("dgx-h200", 4)
    assert par["time_s"] == r.time_s and par["tokens_per_s"] == r.tokens_per_s and par["memory_bytes"] == r.memory_bytes
    assert sum(t.x[0] for t in figures.parallel_figure(v).data) == pytest.approx(
        1e3 * sum(r.breakdown[k] for k in ("compute_s", "tp_comm_s", "pp_comm_s")))
    assert evaluate(AppInputs(phase="decode"))["parallel"] is None  # one GPU: no panel


def test_serving_view_is_the_simulators(views):
    """The serving panel's numbers are simulate_serving's for the same request stream."""
    from costmodel.serving import simulate_serving

    got = views["serving"]["serving"]
    r = simulate_serving("llama2-7b", "a100-sxm4-80gb", rate_per_s=4.0, n_requests=got["requests"],
                         prompt_len="1024", output_len="128", seed=0)
    assert got["latency_s"]["ttft_s"] == r.metrics["ttft_s"] and got["latency_s"]["tpot_s"] == r.metrics["tpot_s"]
    assert got["metrics"]["output_tokens_per_s"] == r.metrics["output_tokens_per_s"]
    assert views["prefill"]["serving"] is None
    assert len(figures.serving_figure(views["serving"]).data) == len(got["latency_s"])


@pytest.mark.parametrize("update, field", [
    ({"tensor_parallel": 3}, "tensor_parallel"), ({"attention_impl": "flash-decoding"}, "attention_impl"),
    ({"gpu": "no-such-gpu"}, "gpu"), ({"model": "no-such-model"}, "unknown model"),
])
def test_bad_inputs_name_the_field(update, field):
    with pytest.raises(ValueError, match=field):
        evaluate(AppInputs(**update))


def test_figures_draw_every_view(views):
    spec = load_gpu("a100-sxm4-80gb")
    for v in views.values():
        bar, tree = figures.ops_figure(v, "bar"), figures.ops_figure(v, "treemap")
        total_ms = 1e3 * v["summary"]["gpu_time_s"]
        assert sum(sum(t.x) for t in bar.data) == pytest.approx(total_ms)
        parts = len({op["part"] for op in v["ops"]})
        assert sum(tree.data[0].values[:parts]) == pytest.approx(total_ms)
        assert len(figures.timeline_figure(v).data) == len({s["kind"] for s in v["timeline"]})
        assert len(figures.memory_figure(v).data) == sum(b > 0 for b in v["memory"]["terms_bytes"].values())
        roof = figures.roofline_view_figure(v, spec)
        ops = [p for p in v["roofline"]["points"] if p["group"] == "model ops"]
        assert len(roof.layout.annotations) == min(8, len(ops))
        assert len(figures.attention_figure(v).data) == len(v["attention"]["rows"])
    with pytest.raises(ValueError, match="style"):
        figures.ops_figure(views["decode"], "pie")


def _upload_value(text: str) -> str:
    return "data:application/x-yaml;base64," + base64.b64encode(text.encode()).decode()


def test_uploaded_gpu_overlay_is_used():
    pytest.importorskip("dash")
    from costmodel.app.callbacks import upload

    overlay = ("base: a100-sxm4-80gb\nname: slow-a100\n"
               "hbm_bandwidth_Bps: {value: 1.0e12, measured: {method: test, date: 2026-01-01}}\n")
    options, value, held, error = upload(_upload_value(overlay), "slow.yaml", [], {}, "gpu")
    assert error == "" and value == UPLOAD_PREFIX + "slow.yaml" and held == {"slow.yaml": overlay}
    assert {"label": "slow.yaml (uploaded)", "value": value} in options
    slow = evaluate(AppInputs(gpu=value, phase="decode"), gpu_uploads=held)
    assert slow["summary"]["gpu"] == "slow-a100"
    fast = evaluate(AppInputs(gpu="a100-sxm4-80gb", phase="decode"))
    assert slow["summary"]["time_s"] > fast["summary"]["time_s"]  # a decode step reads every weight from HBM


def test_bad_upload_names_the_file_and_field():
    pytest.importorskip("dash")
    from costmodel.app.callbacks import upload

    *_, error = upload(_upload_value("name: x\nd_model: -1\n"), "bad-model.yaml", [], {}, "model")
    assert error.startswith("bad-model.yaml:") and "d_model" in error
    *_, error = upload(_upload_value("base: a100-sxm4-80gb\nsm_count: {value: 0, measured: {method: t, date: 2026-01-01}}\n"),
                       "bad-gpu.yaml", [], {}, "gpu")
    assert "bad-gpu.yaml" in error and "sm_count" in error and "ioaware-gpu-" not in error
    with pytest.raises(ValueError, match="upload"):
        decode_upload("no comma here")


def test_download_is_the_view_as_json(views):
    pytest.importorskip("dash")
    from costmodel.app.callbacks import download
    from costmodel.app.layout import VIEWS

    for key, _ in VIEWS:
        payload = download(views["train"], key)
        assert payload["filename"] == f"ioaware-{key}.json"
        assert json.loads(payload["content"])[key] == json.loads(json.dumps(views["train"][key]))


def test_empty_number_box_names_the_field():
    pytest.importorskip("dash")
    from costmodel.app.callbacks import compute

    views, error = compute("h200-sxm-141gb", "llama3-8b", "prefill", None, 4096, 4.0, 128, "bf16", 1, 1, "flash2", {}, {})
    assert views is None and error.startswith("batch:")
    views, error = compute("h200-sxm-141gb", "llama3-8b", "prefill", 1, 0, 4.0, 128, "bf16", 1, 1, "flash2", {}, {})
    assert views is None and "seq_len" in error and "greater than 0" in error


def test_cli_app_without_dash_says_how_to_install(monkeypatch, capsys):
    from costmodel.cli import main

    monkeypatch.setitem(sys.modules, "dash", None)  # import dash now raises ImportError
    assert main(["app", "--port", "8099"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'ioaware[app]'" in err and err.count("\n") == 1
