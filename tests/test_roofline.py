"""Tests for costmodel/roofline.py: the seed lecture's worked examples, the A100 ridge points by hand,
the max/sum rule, efficiency, and properties (hypothesis) every roofline must have.

Seed lecture (000_*.txt, end of "Brief Intro to GPU architecture"): "two matrices of size 100 by 100
... 20000 elements, amounts to 80KB ... Compute is 2 x 100^3 = 20 million ... Arithmetic intensity =
20e6 / 80e3 = 250 ... Ops-per-Byte = 19e12 / 1e12 = 19", then the 100 x 100 matrix scaled by 2 at
10000 / 40000 = 0.25. 2 x 100^3 is 2 million, not 20: the intensity is 25 FLOP/B. Both 25 and 250 lie
above the lecture's 19, so its conclusion (compute-bound) stands.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware_specs.roofline import (
    Work, arithmetic_intensity, attainable_flops_per_s, elementwise_work, level_report, matmul_work,
    ridge_point, roofline_time,
)
from hardware_specs import GPUSpec, list_gpus, load_gpu, spec_to_raw

A100 = load_gpu("a100-sxm4-40gb")
LECTURE_OPS_PER_BYTE = 19e12 / 1e12  # the lecture's "19 x 10^12 / 1 x 10^12 = 19"


def with_efficiency(spec: GPUSpec, **efficiency: float) -> GPUSpec:
    raw = spec_to_raw(spec)
    raw["efficiency"] = efficiency
    return GPUSpec.model_validate(raw)


# --- the seed lecture's worked examples ---------------------------------------------------------


def test_seed_lecture_100x100_fp32_matmul_intensity_is_25_not_250():
    flops = 2 * 100**3                 # 2,000,000 (the lecture writes "20 million")
    bytes_in = 2 * 100**2 * 4          # two 100 x 100 FP32 inputs: 80 KB
    assert flops / bytes_in == 25.0
    assert 20e6 / 80e3 == 250.0        # the lecture's figure, from the factor-of-ten slip
    work = matmul_work(100, 100, 100, dtype="fp32", tensor_cores=False, count_output=False)
    assert float(work.flops) == flops and float(work.hbm_bytes) == bytes_in
    assert float(arithmetic_intensity(work.flops, work.hbm_bytes)) == 25.0


def test_seed_lecture_100x100_fp32_matmul_is_compute_bound_on_a100():
    """25 FLOP/B lies above the A100's FP32/HBM ridge (12.54) and above the lecture's 19."""
    work = matmul_work(100, 100, 100, dtype="fp32", tensor_cores=False, count_output=False)
    intensity = float(arithmetic_intensity(work.flops, work.hbm_bytes))
    assert intensity > ridge_point(A100, "fp32", "hbm")
    assert intensity > LECTURE_OPS_PER_BYTE
    report = level_report(A100, work)
    assert report["hbm"]["bound"] == "compute"
    assert report["hbm"]["attainable_flops_per_s"] == A100.peak_flops_per_s["fp32"]
    assert roofline_time(A100, work).bound == "fp32"


def test_seed_lecture_matmul_on_tf32_tensor_cores_is_memory_bound():
    """The same matmul on the A100's TF32 tensor cores (156 TFLOP/s) meets a ridge of 100 FLOP/B:
    the faster unit turns the lecture's compute-bound example memory-bound."""
    work = matmul_work(100, 100, 100, dtype="fp32", tensor_cores=True, count_output=False)
    assert work.matmul_unit == "tf32_tensor"
    assert ridge_point(A100, "tf32_tensor", "hbm") == pytest.approx(156e12 / 1.555e12)
    assert level_report(A100, work)["hbm"]["bound"] == "memory"
    assert roofline_time(A100, work).bound == "hbm"


def test_seed_lecture_100x100_scaling_is_memory_bound():
    """Scaling a 100 x 100 FP32 matrix by 2: 10^4 FLOP over 40 KB of reads = 0.25 FLOP/B."""
    work = elementwise_work(100 * 100, flops_per_element=1, dtype="fp32", writes_per_element=0)
    intensity = float(arithmetic_intensity(work.flops, work.hbm_bytes))
    assert intensity == 10_000 / 40_000 == 0.25
    assert intensity < ridge_point(A100, "fp32", "hbm")
    assert intensity < LECTURE_OPS_PER_BYTE
    assert level_report(A100, work)["hbm"]["bound"] == "memory"
    assert roofline_time(A100, work).bound == "hbm"
    assert float(attainable_flops_per_s(A100, intensity)) == pytest.approx(0.25 * 1.555e12)


# --- ridge points by hand -------------------------------------------------------------------------


def test_a100_40gb_ridge_points_by_hand():
    """A100 datasheet: FP32 19.5 TFLOP/s, FP16 tensor 312 TFLOP/s, HBM 1,555 GB/s."""
    assert ridge_point(A100, "fp32", "hbm") == pytest.approx(19.5e12 / 1.555e12)
    assert ridge_point(A100, "fp32", "hbm") == pytest.approx(12.54, abs=0.005)
    assert ridge_point(A100, "fp16_tensor", "hbm") == pytest.approx(200.6, abs=0.05)


def test_a100_80gb_ridge_is_lower_for_its_faster_hbm():
    a100_80 = load_gpu("a100-sxm4-80gb")
    assert ridge_point(a100_80, "fp32", "hbm") == pytest.approx(19.5e12 / 2.039e12)
    assert ridge_point(a100_80, "fp32", "hbm") < ridge_point(A100, "fp32", "hbm")


def test_ridge_against_l2_and_smem_uses_those_levels_bandwidth():
    assert ridge_point(A100, "fp16_tensor", "l2") == pytest.approx(312e12 / (5120 * 1.41e9))
    assert ridge_point(A100, "fp16_tensor", "smem") == pytest.approx(312e12 / (128 * 108 * 1.41e9))


# --- the max rule, the binding resource, overlap=False, efficiency -------------------------------


def test_roofline_time_is_the_max_and_names_the_binding_resource():
    work = Work(matmul_flops=312e12, matmul_unit="fp16_tensor", hbm_bytes=1.555e12 * 2, l2_bytes=1e9)
    t = roofline_time(A100, work)
    assert t.times_s["fp16_tensor"] == pytest.approx(1.0)
    assert t.times_s["hbm"] == pytest.approx(2.0)
    assert t.times_s["l2"] == pytest.approx(1e9 / 7.2192e12)
    assert t.time_s == pytest.approx(2.0)
    assert t.bound == "hbm"
    assert set(t.times_s) == {"fp16_tensor", "hbm", "l2"}  # levels and units with nothing to do are left out


def test_exp_on_the_sfu_can_bind():
    """FlashAttention-2 §3.1: exponentials run on the SFU (A100: 16/clk/SM x 108 x 1.41 GHz = 2.4e12/s)."""
    work = Work(other_flops=1e9, exp_ops=2.4364e12)
    t = roofline_time(A100, work)
    assert A100.sfu_exp_per_s == pytest.approx(16 * 108 * 1.41e9)
    assert t.bound == "sfu_exp"
    assert t.time_s == pytest.approx(2.4364e12 / (16 * 108 * 1.41e9))


def test_matmul_and_other_flops_on_the_same_unit_share_it():
    work = Work(matmul_flops=19.5e12, matmul_unit="fp32", other_flops=19.5e12, other_unit="fp32")
    assert roofline_time(A100, work).times_s["fp32"] == pytest.approx(2.0)


def test_overlap_false_sums_the_resources():
    work = Work(matmul_flops=312e12, matmul_unit="fp16_tensor", hbm_bytes=1.555e12)
    assert roofline_time(A100, work, overlap=True).time_s == pytest.approx(1.0)
    assert roofline_time(A100, work, overlap=False).time_s == pytest.approx(2.0)


def test_no_work_takes_no_time():
    t = roofline_time(A100, Work())
    assert t.time_s == 0.0 and t.bound == "none"


def test_efficiency_from_the_spec_lowers_the_attainable_rate():
    slow = with_efficiency(A100, hbm=0.8, fp32=0.5)
    assert slow.attainable_rate("hbm") == pytest.approx(0.8 * 1.555e12)
    assert ridge_point(slow, "fp32", "hbm") == pytest.approx((0.5 * 19.5e12) / (0.8 * 1.555e12))
    assert float(attainable_flops_per_s(slow, 1.0)) == pytest.approx(0.8 * float(attainable_flops_per_s(A100, 1.0)))
    assert float(attainable_flops_per_s(slow, 1e6)) == pytest.approx(0.5 * 19.5e12)
    work = Work(hbm_bytes=1.555e12)
    assert roofline_time(slow, work).time_s == pytest.approx(1 / 0.8)


def test_a_level_with_work_but_no_bandwidth_raises():
    """The L4 spec gives no L2 bandwidth (nothing citable): asking for L2 time must fail loudly."""
    with pytest.raises(ValueError, match="l4 has no rate for 'l2'"):
        roofline_time(load_gpu("l4"), Work(l2_bytes=1e6))


def test_a_unit_the_gpu_lacks_raises():
    """V100 has no BF16 tensor cores."""
    with pytest.raises(ValueError, match="no rate for 'bf16_tensor'"):
        roofline_time(load_gpu("v100-sxm2-32gb"), matmul_work(64, 64, 64, dtype="bf16"))


def test_matmul_work_counts_the_output_unless_asked_not_to():
    with_c = matmul_work(100, 200, 300, dtype="fp16")
    assert float(with_c.hbm_bytes) == 2 * (100 * 300 + 300 * 200 + 100 * 200)
    assert float(with_c.matmul_flops) == 2 * 100 * 200 * 300
    assert with_c.matmul_unit == "fp16_tensor"


def test_work_adds_per_resource():
    a = elementwise_work(1000)
    total = a + a
    assert float(total.hbm_bytes) == 2 * float(a.hbm_bytes)
    assert float(total.flops) == 2 * float(a.flops)


# --- properties ------------------------------------------------------------------------------------

SPECS = [load_gpu(n) for n in list_gpus()]
amounts = st.floats(min_value=0.0, max_value=1e15, allow_nan=False, allow_infinity=False)
specs = st.sampled_from(SPECS)


def _work(hbm=0.0, smem=0.0, matmul=0.0, other=0.0, exp=0.0, unit="fp16_tensor"):
    return Work(matmul_flops=matmul, matmul_unit=unit, other_flops=other, exp_ops=exp, hbm_bytes=hbm, smem_bytes=smem)


@settings(deadline=None)
@given(specs, amounts, amounts, amounts, amounts, amounts, st.booleans())
def test_time_is_monotone_non_decreasing_in_bytes(spec, hbm, smem, flops, d_hbm, d_smem, overlap):
    unit = "fp16_tensor" if "fp16_tensor" in spec.peak_flops_per_s else "fp32"
    before = roofline_time(spec, _work(hbm, smem, flops, unit=unit), overlap=overlap).time_s
    after = roofline_time(spec, _work(hbm + d_hbm, smem + d_smem, flops, unit=unit), overlap=overlap).time_s
    assert after >= before


@settings(deadline=None)
@given(specs, amounts, amounts, amounts, amounts, amounts, st.booleans())
def test_time_is_monotone_non_decreasing_in_flops(spec, hbm, matmul, other, d_matmul, d_other, overlap):
    unit = "fp16_tensor" if "fp16_tensor" in spec.peak_flops_per_s else "fp32"
    before = roofline_time(spec, _work(hbm, 0.0, matmul, other, unit=unit), overlap=overlap).time_s
    after = roofline_time(spec, _work(hbm, 0.0, matmul + d_matmul, other + d_other, unit=unit), overlap=overlap).time_s
    assert after >= before


@settings(deadline=None)
@given(specs, st.floats(min_value=0.0, max_value=1e6, allow_nan=False), st.sampled_from(["fp32", "fp16_tensor"]),
       st.sampled_from(["hbm", "smem"]))
def test_attainable_never_exceeds_the_roof_and_is_intensity_times_bandwidth_below_the_ridge(spec, intensity, unit,
                                                                                            level):
    if unit not in spec.peak_flops_per_s:
        unit = "fp32"
    peak, bw = spec.attainable_rate(unit), spec.attainable_rate(level)
    got = float(attainable_flops_per_s(spec, intensity, unit, level))
    assert got <= peak
    if intensity < ridge_point(spec, unit, level):
        assert got == pytest.approx(intensity * bw, rel=1e-12)
    else:
        assert got == pytest.approx(peak, rel=1e-12)


@settings(deadline=None)
@given(specs, st.lists(st.tuples(amounts, amounts, amounts), min_size=1, max_size=8), st.booleans())
def test_array_inputs_broadcast_and_equal_a_loop_over_scalars(spec, rows, overlap):
    # A last row of ones keeps every column from being all zeros (see the xfail test below).
    rows = rows + [(1.0, 1.0, 1.0)]
    hbm = np.array([r[0] for r in rows])
    flops = np.array([r[1] for r in rows])
    exp = np.array([r[2] for r in rows]) * 1e-3
    unit = "fp16_tensor" if "fp16_tensor" in spec.peak_flops_per_s else "fp32"
    # (n,) amounts against a scalar smem amount: broadcasting happens inside roofline_time
    batched = roofline_time(spec, Work(matmul_flops=flops, matmul_unit=unit, exp_ops=exp, hbm_bytes=hbm,
                                       smem_bytes=1e6), overlap=overlap)
    for i in range(len(rows)):
        one = roofline_time(spec, Work(matmul_flops=flops[i], matmul_unit=unit, exp_ops=exp[i],
                                       hbm_bytes=hbm[i], smem_bytes=1e6), overlap=overlap)
        assert np.asarray(batched.time_s)[i] == pytest.approx(one.time_s, rel=1e-12)
        if overlap and one.time_s > 0:
            assert np.asarray(batched.bound)[i] == one.bound


def test_array_intensities_broadcast_in_attainable_flops():
    intensity = np.array([0.25, 12.0, 25.0, 1000.0])
    got = attainable_flops_per_s(A100, intensity)
    assert got.shape == (4,)
    np.testing.assert_allclose(got, [float(attainable_flops_per_s(A100, x)) for x in intensity])
    grid = attainable_flops_per_s(A100, intensity[:, None] * np.ones((1, 3)))
    assert grid.shape == (4, 3)


def test_an_all_zero_array_amount_keeps_the_broadcast_shape():
    """An (n,) array of zeros adds no time, but the result's shape must follow the shapes of the
    inputs, not their values (roofline_time once dropped it and returned a scalar)."""
    t = roofline_time(A100, Work(hbm_bytes=np.zeros(3), smem_bytes=1e6))
    assert np.shape(t.time_s) == (3,)


def test_roofline_figure_names_only_the_labelled_points():
    """label_few keeps text for the n slowest points; the rest are hover-only (empty text)."""
    from costmodel.plots import RooflinePoint, label_few, roofline_figure

    spec = load_gpu("a100-sxm4-80gb")
    times = [3e-3, 1e-3, 5e-3, 2e-3]
    pts = label_few([RooflinePoint(f"op{i}", 1e9, 1e8, t, group="ops") for i, t in enumerate(times)], n=2)
    assert [p.label for p in pts] == ["op0", "", "op2", ""]
    fig = roofline_figure(spec, pts)
    assert sorted(a.text for a in fig.layout.annotations) == ["op0", "op2"]
    assert fig.layout.annotations[0].x == pytest.approx(np.log10(10.0))  # log axes: log10 positions
    trace = [t for t in fig.data if t.name == "ops"][0]
    assert "op1" in trace.customdata[1][0]  # hover still names every point
    assert not roofline_figure(spec, [RooflinePoint("x", 1e9, 1e8, 1e-3)]).layout.annotations
