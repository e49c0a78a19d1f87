"""Each case of the bad-input issue as a named regression test: the API raises a ValueError
(pydantic's ValidationError is one) naming the argument, the command line exits 2 with one line
naming the option (and with --json a JSON error object on stdout), or the answer is right."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from costmodel.cli import main as _main
from costmodel.flops import model_flops_utilization
from costmodel.models import load_model
from costmodel.params import count_params_arrays
from costmodel.training_memory import training_memory
from hardware_specs import SpecError, load_gpu
from hardware_specs.loader import _bundled_dir
from hardware_specs.roofline import Work, matmul_work, roofline_time
from simulators import simulate_attention

A100 = "a100-sxm4-80gb"
ATTN = ["attention", "--batch", "1", "--heads", "2", "--seq-len", "512", "--head-dim", "64"]


def main(argv):
    """The exit status, whether argparse (SystemExit) or a later check (return value) gave it."""
    try:
        return _main(argv)
    except SystemExit as exc:
        return exc.code


def run_cli(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def assert_refused(capsys, argv, option):
    rc, out, err = run_cli(capsys, *argv, "--json")
    assert rc == 2, (rc, out, err)
    assert "Traceback" not in err and err.count("\n") == 1 and option in err, err
    payload = json.loads(out)
    assert option in payload["error"]
    return payload


def spec_file(tmp_path, **edits):
    raw = yaml.safe_load(_bundled_dir("gpus").joinpath(f"{A100}.yaml").read_text())
    for key, value in edits.items():
        raw[key]["value"] = value
    path = tmp_path / "gpu.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


# ---------------------------------------------------------------- accepted nonsense


@pytest.mark.parametrize("field, value", [("hbm_bandwidth_Bps", float("inf")), ("kernel_launch_s", float("inf")),
                                          ("sm_count", True), ("l2_bytes", 2**70)])
def test_spec_yaml_refuses_inf_bool_and_huge_counts(tmp_path, field, value):
    with pytest.raises(SpecError, match=field):
        load_gpu(spec_file(tmp_path, **{field: value}))


def test_spec_yaml_refuses_inf_peak(tmp_path):
    raw = yaml.safe_load(_bundled_dir("gpus").joinpath(f"{A100}.yaml").read_text())
    raw["peak_flops_per_s"]["fp32"]["value"] = float("inf")
    (tmp_path / "g.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(SpecError, match="peak_flops_per_s"):
        load_gpu(tmp_path / "g.yaml")


def test_spec_yaml_refuses_duplicate_keys(tmp_path):
    text = _bundled_dir("gpus").joinpath(f"{A100}.yaml").read_text() + "\nsm_count: {value: 10, source: typo}\n"
    (tmp_path / "g.yaml").write_text(text)
    with pytest.raises(SpecError, match="'sm_count' appears twice"):
        load_gpu(tmp_path / "g.yaml")


def test_model_yaml_refuses_duplicate_keys(tmp_path):
    text = yaml.safe_dump(load_model("gpt2").model_dump()) + "d_model: 1\n"
    (tmp_path / "m.yaml").write_text(text)
    with pytest.raises(ValueError, match="'d_model' appears twice"):
        load_model(tmp_path / "m.yaml")


@pytest.mark.parametrize("work", [dict(hbm_bytes=-1e9), dict(matmul_flops=float("nan")), dict(l2_bytes=float("inf"))])
def test_work_refuses_negative_nan_and_inf(work):
    with pytest.raises(ValueError, match=next(iter(work))):
        Work(**work)


def test_negative_matmul_shape_refused():
    with pytest.raises(ValueError, match="matmul_flops"):
        roofline_time(load_gpu(A100), matmul_work(-4096, 4096, 4096))


@pytest.mark.parametrize("shape, name", [
    (dict(n_heads=33, d_model=4096), "n_heads"),
    (dict(n_heads=8, n_kv_heads=16, d_model=4096), "n_kv_heads"),
    (dict(n_heads=8192, d_model=4096), "n_heads"),
    (dict(n_heads=12, n_kv_heads=8, d_model=4096, head_dim=128), "n_kv_heads"),
])
def test_count_params_arrays_holds_model_config_rules(shape, name):
    with pytest.raises(ValueError, match=name):
        count_params_arrays(vocab_size=100, n_layers=2, ffn_dim=64, **shape)


def test_training_memory_tensor_parallel_must_split_heads():
    with pytest.raises(ValueError, match="tensor_parallel"):
        training_memory(load_model("llama2-7b"), 1, 512, tensor_parallel=3)


def test_training_memory_flags_must_be_bools():
    with pytest.raises(ValueError, match="flash_attention"):
        training_memory(load_model("llama2-7b"), 1, 512, flash_attention="no")


def test_global_tokens_below_one_refused(capsys):
    assert_refused(capsys, ATTN + ["--pattern", "global", "--global-tokens", "-1"], "--global-tokens")
    with pytest.raises(ValueError, match="global_tokens"):
        simulate_attention(A100, "flash2", batch=1, heads=1, seq_len=256, head_dim=64, pattern=["global"],
                           pattern_options={"global_tokens": -1})


@pytest.mark.parametrize("knob", [dict(elementwise_block=-5), dict(elementwise_block=0), dict(regs_per_thread=0),
                                  dict(dropout_mask_bytes=-1)])
def test_schedule_knobs_must_be_positive(knob):
    with pytest.raises(ValueError, match=next(iter(knob)).replace("_", "-")):
        simulate_attention(A100, "standard", batch=1, heads=1, seq_len=128, head_dim=64, **knob)


def test_mfu_above_one_refused():
    cfg = load_model("llama2-7b")
    assert 0 < model_flops_utilization(cfg, 3000, 312e12, 4096) < 1
    with pytest.raises(ValueError, match="tokens_per_s"):
        model_flops_utilization(cfg, 3e6, 312e12, 4096)


# ---------------------------------------------------------------- tracebacks


def test_outputs_to_a_folder_or_under_a_file_refused(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert_refused(capsys, ["roofline", "--plot", str(tmp_path)], "--plot")
    assert_refused(capsys, ["roofline", "--plot", str(afile / "x.html")], "--plot")
    assert_refused(capsys, ["report", "tests/data/validation_sample.json", "--out", str(afile / "r.html")], "--out")
    assert_refused(capsys, ["sizing", "--model", "gpt2", "--out", str(afile)], "--out")
    assert_refused(capsys, ["validate", "--repredict", "tests/data/validation_sample.json", "--out",
                            str(afile / "v.json")], "--out")


def test_output_to_an_unwritable_place_refused(capsys):
    assert_refused(capsys, ["roofline", "--plot", "/proc/ioaware-roofline.html"], "--plot")


def test_png_without_image_export_is_one_line(tmp_path, capsys):
    pytest.importorskip("plotly")
    try:
        import kaleido  # noqa: F401
        pytest.skip("kaleido is installed: PNG export may work here")
    except ImportError:
        pass
    assert_refused(capsys, ["roofline", "--plot", str(tmp_path / "r.png")], "--plot")
    assert not (tmp_path / "r.png").exists()


def test_kv_cache_huge_batch_paged_in_constant_memory(capsys):
    rc, out, _ = run_cli(capsys, "kv-cache", "--model", "llama2-7b", "--seq-len", "4000", "--batch",
                         str(10**12), "--block-size", "16", "--json")
    assert rc == 0
    paged = json.loads(out)["paged"]
    assert paged["paged_bytes"] == 10**12 * 250 * 16 * 524288  # 250 blocks of 16 tokens, 512 KiB a token


def test_attention_seq_len_2_to_40_refused_up_front(capsys):
    payload = assert_refused(capsys, ATTN[:5] + ["--seq-len", str(2**40), "--head-dim", "64"], "--seq-len")
    assert "(2^60)" in payload["error"]


@pytest.mark.parametrize("argv, option", [
    (["kv-cache", "--model", "gpt2", "--batch", str(2**63)], "--batch"),
    (ATTN + ["--window", str(2**64)], "--window"),
    (["flops", "--model", "gpt2", "--seq-len", str(10**30)], "--seq-len"),
])
def test_integers_past_int64_refused(capsys, argv, option):
    assert_refused(capsys, argv, option)


def test_model_sliding_window_past_int64_refused(tmp_path):
    raw = load_model("mistral-7b").model_dump()
    raw["sliding_window"] = 2**70
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="sliding_window"):
        load_model(tmp_path / "m.yaml")


@pytest.mark.parametrize("spec", [None, 5, object()])
def test_simulate_attention_spec_must_be_a_spec(spec):
    with pytest.raises(ValueError, match="spec"):
        simulate_attention(spec, "flash2", batch=1, heads=1, seq_len=128, head_dim=64)


def test_calculators_refuse_a_config_given_as_a_string():
    from costmodel.kvcache import kv_cache_bytes
    from costmodel.params import count_params

    for call in (lambda: kv_cache_bytes("llama2-7b", 1, 100), lambda: count_params("llama2-7b")):
        with pytest.raises(ValueError, match="not a ModelConfig"):
            call()


# ---------------------------------------------------------------- runaways


def test_one_token_tiles_at_a_million_tokens_refused(capsys):
    assert_refused(capsys, ATTN[:5] + ["--seq-len", "1000000", "--head-dim", "64", "--block-r", "1", "--block-c",
                                       "1"], "--block-r")


def test_enumerating_a_million_tokens_in_16_tiles_refused(capsys):
    payload = assert_refused(capsys, ATTN[:5] + ["--seq-len", "1000000", "--head-dim", "64", "--block-r", "16",
                                                 "--block-c", "16", "--path", "enumerate"], "--path")
    assert "3,906,250,000" in payload["error"]


# ---------------------------------------------------------------- misleading messages


@pytest.mark.parametrize("gpu", ["a100-sxm4-80gb", "h100-sxm5-80gb"])
def test_fa1_backward_default_tiles_fit_at_d128(gpu):
    r = simulate_attention(gpu, "flash1", batch=1, heads=16, seq_len=4096, head_dim=128, pass_="bwd")
    spec = load_gpu(gpu)
    assert all(k.smem_per_block_bytes <= spec.smem_per_block_max_bytes for k in r.kernels)


def test_given_tiles_that_do_not_fit_name_the_tiles(capsys):
    assert_refused(capsys, ATTN[:7] + ["--head-dim", "128", "--impl", "flash1", "--pass", "bwd", "--block-r", "128",
                                       "--block-c", "163"], "--block-r")


def test_seed_below_zero_names_seed(capsys):
    assert_refused(capsys, ATTN + ["--pattern", "random", "--seed", "-1"], "--seed")


def test_reserve_that_leaves_no_room_is_named(capsys):
    rc, out, _ = run_cli(capsys, "kv-cache", "--model", "llama2-7b", "--gpu", "h100-sxm5-80gb",
                         "--reserve-fraction", "0.9999999")
    assert rc == 0 and "reserve" in out.splitlines()[-1] and "do not fit" not in out


def test_self_referencing_overlay_refused(tmp_path):
    (tmp_path / "self.yaml").write_text("base: self.yaml\n")
    with pytest.raises(SpecError, match="an overlay's base must be a datasheet spec"):
        load_gpu(tmp_path / "self.yaml")


def test_chained_overlay_refused(tmp_path):
    (tmp_path / "one.yaml").write_text(f"base: {A100}\nname: one\n")
    (tmp_path / "two.yaml").write_text("base: one.yaml\nname: two\n")
    with pytest.raises(SpecError, match="an overlay's base must be a datasheet spec"):
        load_gpu(tmp_path / "two.yaml")


def test_relative_base_resolves_beside_the_overlay(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a100.yaml").write_text(_bundled_dir("gpus").joinpath(f"{A100}.yaml").read_text())
    (tmp_path / "sub" / "over.yaml").write_text(
        "base: ../a100.yaml\nhbm_bandwidth_Bps: {value: 1.5e12, measured: {method: copy, date: 2025-01-01}}\n")
    monkeypatch.chdir("/")
    assert load_gpu(tmp_path / "sub" / "over.yaml").hbm_bandwidth_Bps == 1.5e12


def test_report_unknown_gpu_exits_2(tmp_path, capsys):
    assert_refused(capsys, ["report", "tests/data/validation_sample.json", "--out", str(tmp_path / "r.html"),
                            "--gpu", "nope"], "--gpu")


@pytest.mark.parametrize("argv", [["roofline", "--gpu", "{f}"], ["params", "--model", "{f}"],
                                  ["report", "{f}", "--out", "{o}"]])
def test_binary_file_named_in_the_error(tmp_path, capsys, argv):
    f = tmp_path / "blob.bin"
    f.write_bytes(bytes(range(256)) * 4)
    argv = [a.format(f=f, o=tmp_path / "r.html") for a in argv]
    rc, out, err = run_cli(capsys, *argv, "--json")
    assert rc == 2 and str(f) in err and "UTF-8" in err and "Traceback" not in err


# ---------------------------------------------------------------- silently ignored flags


@pytest.mark.parametrize("extra, option", [
    (["--impl", "flash2", "--splits", "4"], "--splits"),
    (["--impl", "standard", "--block-r", "64"], "--block-r"),
    (["--impl", "standard", "--block-c", "64"], "--block-c"),
    (["--impl", "flash-decoding", "--seq-len", "1", "--kv-len", "512", "--dropout", "0.1"], "--dropout"),
])
def test_options_an_implementation_ignores_are_refused(capsys, extra, option):
    argv = [a for a in ATTN]
    if "--seq-len" in extra:
        i = argv.index("--seq-len")
        del argv[i:i + 2]
    assert_refused(capsys, argv + extra, option)


@pytest.mark.parametrize("extra, option", [(["--reserve-fraction", "0.1"], "--reserve-fraction"),
                                           (["--weight-dtype", "int4"], "--weight-dtype")])
def test_kv_cache_gpu_options_without_gpu_refused(capsys, extra, option):
    assert_refused(capsys, ["kv-cache", "--model", "llama2-7b"] + extra, option)


# ---------------------------------------------------------------- overwrites


def test_repredict_refuses_to_overwrite_its_input(tmp_path, capsys):
    src = tmp_path / "v.json"
    src.write_text(open("tests/data/validation_sample.json").read())
    before = src.read_bytes()
    assert_refused(capsys, ["validate", "--repredict", str(src), "--out", str(src)], "--out")
    assert src.read_bytes() == before


def test_overwrite_is_said_and_atomic(tmp_path, capsys):
    out = tmp_path / "r.html"
    assert run_cli(capsys, "roofline", "--plot", str(out))[0] == 0
    rc, text, _ = run_cli(capsys, "roofline", "--plot", str(out))
    assert rc == 0 and "replaced" in text
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]  # no temporary file left beside it


# ---------------------------------------------------------------- --json errors, start-up


def test_json_error_object_on_stdout(capsys):
    payload = assert_refused(capsys, ["params", "--model", "nope"], "--model")
    assert payload["argument"] == "--model"


def test_command_line_imports_no_numba():
    """``ioaware --help`` and the calculators must not pay numba's import (about 2 s)."""
    code = ("import sys; from costmodel.cli import main; import contextlib, io\n"
            "with contextlib.redirect_stdout(io.StringIO()): main(['params', '--model', 'gpt2'])\n"
            "print(sorted(m for m in ('numba', 'networkx', 'plotly') if m in sys.modules))")
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert got == "[]"


def test_int32_seq_len_accepted_by_max_batch():
    from costmodel.kvcache import max_batch_that_fits

    fit = max_batch_that_fits(load_model("llama2-7b"), 80 * 10**9, np.int32(4096))
    assert fit.max_batch == max_batch_that_fits(load_model("llama2-7b"), 80 * 10**9, 4096).max_batch > 0

