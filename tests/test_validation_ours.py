"""costmodel/validation/ours.py and fit_ours.py: our kernels timed with the fitted ``numba_kernels``
section, the fit's closed forms, and the committed H200 fit re-made from its raw files."""
import json

import numpy as np
import pytest

from costmodel.validation import fit_ours
from costmodel.validation.ours import efficiency_name, time_our_kernel
from costmodel.validation.predict import predict_case, simulate_ours
from costmodel.validation.sweep import Case, _cfg
from hardware_specs import load_gpu

SPEC = load_gpu("h200-sxm-141gb-measured")


def test_kernel_time_is_matmul_over_efficiency_plus_rest():
    """Step 5 of the fit assumes t(e) = M / e + R for a compute-bound kernel: check it at a third e."""
    res = simulate_ours(SPEC, Case("flash2_fwd", _cfg(4, 32, 4096, 64, block_r=64, block_c=64)))
    (k,) = res.kernels
    t1, t2, t3 = (time_our_kernel(SPEC, SPEC.numba_kernels, k, 64, 4.0, efficiency=e).time_s for e in (1.0, 0.5, 0.3))
    m, rest = t2 - t1, 2 * t1 - t2
    assert m > 0 and t3 == pytest.approx(m / 0.3 + rest, rel=1e-9)


def test_warps_to_saturate_least_squares_through_the_origin():
    """Rates r_k = 4k / w exactly (w = 20 warps): the fit returns w."""
    w = 20.0
    cal = {"numba_tiled_fp32_flops_per_s": {"value": 1e13, "by_blocks_per_sm": {
        str(k): 1e13 * 4 * k / w for k in (1, 2, 3, 4)}}}
    assert fit_ours.w_saturate(SPEC.model_copy(update={"calibration": cal})) == pytest.approx(w)


def test_parameter_names_by_kernel():
    assert efficiency_name("flash2_fwd", 128) == "flash2_fwd_efficiency_d128"
    assert efficiency_name("decode", 64) == "decode_efficiency"
    assert efficiency_name("bwd_preprocess", 64) == "bwd_preprocess_memory_efficiency"
    assert efficiency_name("something_else", 64) is None


def test_fit_split_holds_out_whole_sequence_lengths():
    from costmodel.validation.schema import load_results

    recs = [r for r in load_results(fit_ours.RAW[0]).records if r.source == "ours" and r.family != "window_fwd"]
    fit = {r.config.seq_len for r in recs if fit_ours.is_fit(r)}
    held = {r.config.seq_len for r in recs if not fit_ours.is_fit(r)}
    assert fit <= set(fit_ours.FIT_SEQ_LENS) and not fit & held


def test_committed_section_is_the_fit_of_the_committed_raw_files():
    """Refit from the raw results and the decode bench (steps 2 to 5, at the committed
    warps_to_saturate: the grid search of step 1 takes half a minute): the spec holds the same values."""
    from costmodel.validation.schema import load_results, merge_results

    results = merge_results([load_results(p) for p in fit_ours.RAW])
    bench = json.loads(fit_ours.BENCH.read_text())
    w = SPEC.numba_kernels.value("warps_to_saturate")
    assert w in fit_ours.W_GRID
    params = fit_ours.fit(SPEC.model_copy(update={"numba_kernels": None}), results, bench, w_sat=w)
    assert set(params) == set(SPEC.numba_kernels.params)
    for name, p in params.items():
        assert p["value"] == pytest.approx(SPEC.numba_kernels.params[name].value, rel=1e-9), name
        assert SPEC.numba_kernels.params[name].measured.gpu == "NVIDIA H200"


def test_held_out_errors_of_the_fused_kernels_within_target():
    """The fit's held-out records (N 1024, 4096, 16384; decode L 4096; the whole sliding window)."""
    errs = SPEC.numba_kernels.fit["errors"]
    for fam in ("standard_fwd", "flash2_fwd", "flash_bwd", "window_fwd", "flash_decoding"):
        assert errs[fam]["held_out"]["median"] <= 0.10 and errs[fam]["held_out"]["worst"] <= 0.25, fam


def test_split_kv_decode_faster_with_few_heads():
    """B*H = 32 blocks cannot pull the HBM: Little's law of one K tile in flight per block (H200,
    validation-fixes.json: 182 us unsplit, 52 us with 8 splits, B 1, H 32, 16k cache, d 64, fp32)."""
    shape = dict(kv_heads=8, kv_len=16384)
    one = predict_case(SPEC, Case("decode", _cfg(1, 32, 1, 64, **shape)))[1]
    eight = predict_case(SPEC, Case("flash_decoding", _cfg(1, 32, 1, 64, splits=8, **shape)))[1]
    assert one["kernels"][0]["bound"] == "latency"
    assert one["time_s"] / eight["time_s"] > 2.5
    assert np.isclose(one["time_s"], 182e-6, rtol=0.15) and np.isclose(eight["time_s"], 52e-6, rtol=0.15)


def test_write_section_keeps_the_sections_around_it(tmp_path):
    # the calibrated spec holds sections other fits write after numba_kernels: (gemm:, memory_ops:);
    # rewriting numba_kernels: must replace that block only
    import yaml

    from costmodel.validation.fit_ours import write_section

    path = tmp_path / "spec.yaml"
    path.write_text("name: x\nimplementations:\n  a: 1\nnumba_kernels:\n  params:\n    old: 1\n"
                    "gemm:\n  eff: 0.5\nmemory_ops:\n  bw: 3\n")
    write_section(path, {"params": {"new": 2}})
    assert yaml.safe_load(path.read_text()) == {"name": "x", "implementations": {"a": 1},
                                                "numba_kernels": {"params": {"new": 2}},
                                                "gemm": {"eff": 0.5}, "memory_ops": {"bw": 3}}
    path.write_text("name: x\n")  # no block yet: appended
    write_section(path, {"params": {"new": 2}})
    assert yaml.safe_load(path.read_text()) == {"name": "x", "numba_kernels": {"params": {"new": 2}}}
