"""Bad input, fuzzed: every subcommand's numeric options and every spec / model YAML field, given
extreme, negative, NaN, infinite, huge or wrongly typed values, end in exit 0 with one JSON object,
or in exit 2 with one line on stderr and a JSON error object on stdout; never a traceback.
And every calculator gives, on int8 ... int64, unsigned and float32 inputs, what it gives on the
same numbers as Python ints (issue: "no silent wrong number").

``calibrate`` and ``validate`` (without ``--repredict``) need a GPU and are left out of the fuzz;
their argument types are the shared ones fuzzed here.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from costmodel.cli import build_parser
from costmodel.cli import main as _main
from costmodel.cli.args import fraction, nonnegative_int, positive_float, positive_int
from costmodel.flops import forward_flops_per_token, matmul_params, training_flops
from costmodel.kvcache import kv_cache_bytes, kv_cache_bytes_per_token, max_batch_that_fits, paged_kv_cache_bytes
from costmodel.models import load_model
from costmodel.params import count_params_arrays
from costmodel.training_memory import training_memory
from hardware_specs.loader import _bundled_dir

NASTY = st.sampled_from([
    "0", "-1", "-7", "1", "3", "2.5", "-0.0", "1e-300", "1e308", "1e400", "nan", "NaN", "inf", "-inf",
    "9223372036854775807", "9223372036854775808", "99999999999999999999999999", "-99999999999999999999", "0x10",
    "abc", "", " ", "1_000", "1e3",
])
VALUES = NASTY | st.integers(-(10**25), 10**25).map(str) | st.floats(allow_nan=True, allow_infinity=True).map(repr)

# A valid base command line per subcommand; the fuzz adds numeric options to it.
# (gpus, models, params and report take no numeric option; their paths and names are the
# regression tests' business.)
BASES = {
    "roofline": [], "flops": ["--model", "gpt2"], "kv-cache": ["--model", "gpt2"], "memory": ["--model", "gpt2"],
    "attention": ["--batch", "1", "--heads", "2", "--seq-len", "256", "--head-dim", "64"],
}
NUMERIC_TYPES = (int, float, positive_int, positive_float, fraction, nonnegative_int)


def main(argv):
    """The exit status, whether argparse (SystemExit) or a later check (return value) gave it."""
    try:
        return _main(argv)
    except SystemExit as exc:
        return exc.code


def _numeric_options(command: str) -> list[str]:
    sub = build_parser()._subparsers._group_actions[0].choices[command]
    return sorted(o for a in sub._actions if a.type in NUMERIC_TYPES or getattr(a.type, "__name__", "") in (
        "_matmul_shape",) for o in a.option_strings if o.startswith("--"))


def _check_outcome(rc: int, out: str, err: str) -> None:
    assert rc in (0, 2), (rc, err)
    assert "Traceback" not in err and "Traceback" not in out
    if rc == 0:
        assert isinstance(json.loads(out), dict)
        return
    assert err.count("\n") == 1 and err.startswith("ioaware"), err
    payload = json.loads(out)
    assert set(payload) == {"error", "argument"} and payload["error"]


@pytest.mark.parametrize("command", sorted(BASES))
def test_fuzz_numeric_options(command, tmp_path, capsys):
    options = _numeric_options(command)
    assert options, f"{command} lost its numeric options"
    extra = []

    @settings(max_examples=40, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(st.lists(st.tuples(st.sampled_from(options), VALUES), min_size=1, max_size=3))
    def run(pairs):
        argv = [command, *BASES[command], *extra]
        for option, value in pairs:
            argv += [f"{option}={value}"]  # '=' so that '-1' and '' stay values
        rc = main(argv + ["--json"])
        out, err = capsys.readouterr()
        _check_outcome(rc, out, err)

    run()


def test_fuzz_sizing_options(tmp_path, capsys):
    """sizing writes a 5 MB page a call: fewer examples, same contract."""
    options = _numeric_options("sizing")

    @settings(max_examples=12, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(st.tuples(st.sampled_from(options), VALUES))
    def run(pair):
        rc = main(["sizing", "--model", "gpt2", "--out", str(tmp_path), f"{pair[0]}={pair[1]}", "--json"])
        out, err = capsys.readouterr()
        _check_outcome(rc, out, err)

    run()


SPEC_FIELDS = ["sm_count", "boost_clock_Hz", "fp32_lanes_per_sm", "smem_per_sm_bytes", "smem_per_block_max_bytes",
               "l2_bytes", "hbm_bytes", "hbm_bandwidth_Bps", "kernel_launch_s", "register_file_per_sm_bytes"]
MODEL_FIELDS = ["vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "ffn_dim", "max_seq_len",
                "sliding_window"]
YAML_VALUES = st.sampled_from([0, -1, 1, 3, 2.5, True, False, None, "x", float("nan"), float("inf"), -float("inf"),
                               2**63, 2**70, 10**30, [1, 2], {"a": 1}])


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(field=st.sampled_from(SPEC_FIELDS + ["peak_flops_per_s.fp32"]), value=YAML_VALUES)
def test_fuzz_spec_yaml_fields(field, value, tmp_path_factory, capsys):
    raw = yaml.safe_load(_bundled_dir("gpus").joinpath("a100-sxm4-80gb.yaml").read_text())
    if field.startswith("peak_flops_per_s."):
        raw["peak_flops_per_s"]["fp32"]["value"] = value
    else:
        raw[field]["value"] = value
    path = tmp_path_factory.mktemp("spec") / "gpu.yaml"
    path.write_text(yaml.safe_dump(raw))
    rc = main(["roofline", "--gpu", str(path), "--matmul", "256x256x256", "--json"])
    out, err = capsys.readouterr()
    _check_outcome(rc, out, err)


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(field=st.sampled_from(MODEL_FIELDS), value=YAML_VALUES,
       command=st.sampled_from(["params", "kv-cache", "flops", "memory"]))
def test_fuzz_model_yaml_fields(field, value, command, tmp_path_factory, capsys):
    raw = load_model("llama2-7b").model_dump()
    raw[field] = value
    path = tmp_path_factory.mktemp("model") / "model.yaml"
    path.write_text(yaml.safe_dump(raw))
    rc = main([command, "--model", str(path), "--json"])
    out, err = capsys.readouterr()
    _check_outcome(rc, out, err)


def test_argument_types_reject_what_they_should():
    for parse, text in ((positive_int, "0"), (positive_int, str(2**63)), (nonnegative_int, "-1"),
                        (positive_float, "nan"), (positive_float, "inf"), (fraction, "1")):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)


# ---------------------------------------------------------------- narrow integer dtypes

DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64, np.float32]
# A small model whose every number fits int8, so every dtype can hold the inputs; the products
# (params ~10^5, KV bytes ~10^5, FLOPs ~10^8) overflow int8 and int16 unless widened.
SHAPE = dict(vocab_size=120, d_model=64, n_layers=4, n_heads=8, n_kv_heads=2, head_dim=8, ffn_dim=96)


def _as(dtype, value):
    return np.array([value], dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: np.dtype(t).name)
def test_calculators_on_narrow_dtypes_equal_python_ints(dtype):
    cfg = load_model("llama2-7b")
    typed = {k: _as(dtype, v) for k, v in SHAPE.items()}
    assert count_params_arrays(**typed).total[0] == count_params_arrays(**SHAPE).total
    assert kv_cache_bytes_per_token(None, "bf16", n_layers=typed["n_layers"], n_kv_heads=typed["n_kv_heads"],
                                    head_dim=typed["head_dim"])[0] == 2 * 4 * 2 * 8 * 2
    seq = 100  # fits int8; 100 tokens x 512 KB a token passes 2^31
    assert kv_cache_bytes(cfg, _as(dtype, 3), _as(dtype, seq)).total_bytes[0] == kv_cache_bytes(cfg, 3, seq).total_bytes
    paged = paged_kv_cache_bytes(cfg, _as(dtype, seq), _as(dtype, 16))
    assert paged.total_paged_bytes == paged_kv_cache_bytes(cfg, np.array([seq]), 16).total_paged_bytes
    fit = max_batch_that_fits(cfg, 80 * 10**9, _as(dtype, seq))
    assert fit.max_batch[0] == max_batch_that_fits(cfg, 80 * 10**9, seq).max_batch
    assert forward_flops_per_token(cfg, _as(dtype, seq)).total[0] == pytest.approx(
        forward_flops_per_token(cfg, seq).total, rel=1e-12)
    assert matmul_params(cfg, **typed)[0] == matmul_params(cfg, **SHAPE)
    assert training_flops(cfg, _as(dtype, 120), _as(dtype, seq)).total_flops[0] == pytest.approx(
        training_flops(cfg, 120, seq).total_flops, rel=1e-12)
    got = training_memory(cfg, _as(dtype, 2), _as(dtype, seq)).total_bytes[0]
    assert got == pytest.approx(training_memory(cfg, 2, seq).total_bytes, rel=1e-12)


def test_issue_examples_int32_kv_and_llama3_70b_params():
    """The two wrong numbers the issue found: int32 shapes used to wrap around."""
    cfg = load_model("llama2-7b")
    assert kv_cache_bytes(cfg, 1, np.array([5000], np.int32)).per_sequence_bytes[0] == 5000 * 524288
    c70 = load_model("llama3-70b")
    shapes = {k: np.array([getattr(c70, k)], np.int32) for k in SHAPE}
    assert count_params_arrays(**shapes).total[0] == 70_553_706_496  # Meta's 70.6 B, counted tensor by tensor
    assert max_batch_that_fits(cfg, 80 * 10**9, np.array([4096], np.int32)).max_batch[0] > 0
