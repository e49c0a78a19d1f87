"""``ioaware app`` in a real browser: change the controls, read the page, compare with the Python API.

Headless Debian chromium through Dash's testing plugin (``dash[testing]``, selenium). The
expected numbers are computed here from the library's own entry points (the step predictor,
``simulate_attention``, ``kv_cache_bytes``) with the attention shape derived in the test,
then formatted as the page formats them; the page must show exactly those.
"""

import shutil

import pytest

pytest.importorskip("dash", reason="the app extra (dash) is not installed")
pytest.importorskip("dash.testing", reason="dash[testing] is not installed")
pytestmark = pytest.mark.skipif(
    not (shutil.which("chromium") and shutil.which("chromedriver")),
    reason="Debian's chromium and chromium-driver are not installed (.ci/run installs them)")

from selenium.webdriver.common.keys import Keys  # noqa: E402

from costmodel.app import create_app  # noqa: E402
from costmodel.app.tables import fmt_bytes, fmt_mb, fmt_time  # noqa: E402
from costmodel.app.inputs import DEFAULT_GPU, DEFAULT_MODEL  # noqa: E402
from costmodel.models import load_model  # noqa: E402
from hardware_specs import load_gpu  # noqa: E402
from simulators import simulate_attention  # noqa: E402


def _step(cfg, spec, phase, batch, seq_len, dtype="bf16", tp=1):
    from costmodel.step import predict_step

    r = predict_step(cfg, spec, phase=phase, batch=batch, seq_len=seq_len, dtype=dtype, tensor_parallel=tp)
    return float(r.time_s), float(r.tokens_per_s), float(r.memory_bytes)


def _choose(dash_duo, selector, value):
    """Pick a dropdown option by its label (Dash 4's dropdown: open it, click the option)."""
    from selenium.webdriver.common.by import By

    dash_duo.find_element(selector).click()
    dash_duo.wait_for_element(".dash-dropdown-option", timeout=5)
    options = [o for o in dash_duo.driver.find_elements(By.CSS_SELECTOR, ".dash-dropdown-option")
               if o.text.strip() == str(value)]
    assert options, f"{selector}: no option {value!r}"
    dash_duo.driver.execute_script("arguments[0].click();", options[0])
    dash_duo.find_element("header").click()  # close the menu so it covers nothing
    dash_duo.wait_for_contains_text(selector, str(value), timeout=5)


def _click(dash_duo, selector):
    dash_duo.driver.execute_script("arguments[0].click();", dash_duo.find_element(selector))


def _set_number(dash_duo, selector, value):
    box = dash_duo.find_element(selector)
    dash_duo.clear_input(box)
    box.send_keys(str(value), Keys.ENTER)


def test_app_follows_the_controls_and_names_bad_fields(dash_duo, tmp_path):
    dash_duo.start_server(create_app())
    spec, cfg = load_gpu(DEFAULT_GPU), load_model(DEFAULT_MODEL)

    # Defaults: prefill, batch 1, 4096 tokens, bf16, TP 1, FlashAttention-2.
    time_s, tokens_per_s, memory_bytes = _step(cfg, spec, "prefill", 1, 4096)
    dash_duo.wait_for_text_to_equal("#summary-time", fmt_time(time_s), timeout=20)
    assert dash_duo.find_element("#summary-tokens").text == f"{tokens_per_s:,.0f}"
    assert dash_duo.find_element("#summary-memory").text == fmt_bytes(memory_bytes)
    fa2 = simulate_attention(spec, "flash2", batch=1, heads=32, kv_heads=8, seq_len=4096, kv_len=4096, head_dim=128,
                             dtype="bf16", causal=True)
    assert (cfg.n_heads, cfg.n_kv_heads, cfg.head_dim) == (32, 8, 128)  # the shape the line above assumes
    row = dash_duo.find_element("#attention-row-flash2").text
    assert fmt_mb(fa2.hbm_bytes) in row and fmt_time(fa2.time_s) in row

    # Another model, a larger batch, decode against a 2048-token cache, split over 2 GPUs.
    _choose(dash_duo, "#model", value="llama2-7b")
    _click(dash_duo, "#phase input[value='decode']")
    _set_number(dash_duo, "#batch", 8)
    _set_number(dash_duo, "#seq-len", 2048)
    _choose(dash_duo, "#tensor-parallel", value="2")
    cfg = load_model("llama2-7b")
    time_s, tokens_per_s, memory_bytes = _step(cfg, spec, "decode", 8, 2048, tp=2)
    dash_duo.wait_for_text_to_equal("#summary-time", fmt_time(time_s), timeout=20)
    assert dash_duo.find_element("#summary-tokens").text == f"{tokens_per_s:,.0f}"
    assert dash_duo.find_element("#seq-len-label").text == "Cache length (tokens)"
    std = simulate_attention(spec, "standard", batch=8, heads=16, kv_heads=16, seq_len=1, kv_len=2048,
                             head_dim=128, dtype="bf16")  # llama2-7b: 32 heads of 128, halved by TP 2
    assert fmt_mb(std.hbm_bytes) in dash_duo.find_element("#attention-row-standard").text
    assert dash_duo.find_element("#error").text == ""

    # An uploaded spec (an overlay: the H200 with half its HBM bandwidth) is chosen and used.
    overlay = tmp_path / "half-bandwidth.yaml"
    overlay.write_text("base: h200-sxm-141gb\nname: h200-half-hbm\n"
                       "hbm_bandwidth_Bps: {value: 2.4e12, measured: {method: what-if, date: 2026-12-02}}\n")
    dash_duo.find_element("#gpu-upload input[type=file]").send_keys(str(overlay))
    dash_duo.wait_for_contains_text("#gpu", "half-bandwidth.yaml (uploaded)", timeout=20)
    time_s, tokens_per_s, _ = _step(cfg, load_gpu(overlay), "decode", 8, 2048, tp=2)
    dash_duo.wait_for_text_to_equal("#summary-time", fmt_time(time_s), timeout=20)
    assert dash_duo.find_element("#summary-tokens").text == f"{tokens_per_s:,.0f}"
    _choose(dash_duo, "#gpu", value=DEFAULT_GPU)
    dash_duo.wait_for_text_to_equal("#summary-time", fmt_time(_step(cfg, spec, "decode", 8, 2048, tp=2)[0]), timeout=20)

    # The parallel and serving panels hold their APIs' numbers.
    from costmodel.app import serving_view
    from costmodel.parallel.inference import predict_inference
    from costmodel.serving import simulate_serving

    par = predict_inference(cfg, "dgx-h200", phase="decode", batch=8, seq_len=2048, tp=2, pp=1)
    dash_duo.wait_for_contains_text("#parallel-row-1", fmt_time(par.time_s), timeout=20)
    _click(dash_duo, "#phase input[value='serving']")
    srv = simulate_serving(cfg, spec, rate_per_s=4.0, n_requests=serving_view.SERVING_REQUESTS, prompt_len="2048",
                           output_len="128", seed=serving_view.SEED, tensor_parallel=2, dtype="bf16")
    dash_duo.wait_for_contains_text("#serving-row-0", fmt_time(srv.metrics["ttft_s"]["p50"]), timeout=30)
    _click(dash_duo, "#phase input[value='decode']")

    # The JSON buttons download what the panels show.
    import json
    import time
    from pathlib import Path

    dash_duo.driver.execute_cdp_cmd("Page.setDownloadBehavior",
                                    {"behavior": "allow", "downloadPath": dash_duo.download_path})
    _click(dash_duo, "#download-summary-button")
    target = Path(dash_duo.download_path) / "ioaware-summary.json"
    end = time.time() + 20
    while not target.exists() and time.time() < end:
        time.sleep(0.2)
    summary = json.loads(target.read_text())["summary"]
    assert summary["time_s"] == pytest.approx(_step(cfg, spec, "decode", 8, 2048, tp=2)[0], rel=1e-12)
    assert (summary["model"], summary["batch"], summary["seq_len"], summary["tensor_parallel"]) == ("llama2-7b", 8,
                                                                                                      2048, 2)

    # Bad input: the page names the field and what is allowed (one browser session for all,
    # since starting Chromium is most of the cost).
    _set_number(dash_duo, "#seq-len", 0)
    dash_duo.wait_for_contains_text("#error", "seq_len", timeout=20)
    assert "greater than 0" in dash_duo.find_element("#error").text
    _set_number(dash_duo, "#seq-len", 1024)
    _choose(dash_duo, "#attention-impl", value="flash-decoding")  # valid for decode, not for prefill
    dash_duo.wait_for_text_to_equal("#error", "", timeout=20)
    _click(dash_duo, "#phase input[value='prefill']")
    dash_duo.wait_for_contains_text("#error", "attention_impl", timeout=20)
    assert dash_duo.get_logs() == [] or all(e["level"] != "SEVERE" for e in dash_duo.get_logs())
