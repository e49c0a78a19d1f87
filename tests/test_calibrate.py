"""kernels/calibrate.py in numba's CUDA simulator: each microkernel computes what it should,
and a calibration at tiny sizes writes a spec that loads and marks its measured fields.
Timings in the simulator mean nothing and are not checked beyond being positive.
"""
import json
import math

import numpy as np
import pytest
from numba import cuda

from kernels import calibrate as cal
from hardware_specs import load_gpu

BLOCKS, THREADS = 2, 32


def test_copy_kernel_copies_exactly():
    rng = np.random.default_rng(1)
    n = 1000  # not a multiple of blocks x threads x UNROLL: the tail is exercised
    src = rng.integers(0, 2**63, n, dtype=np.uint64)
    d_src, d_dst = cuda.to_device(src), cuda.to_device(np.zeros(n, dtype=np.uint64))
    cal.copy_kernel[BLOCKS, THREADS](d_src, d_dst)
    np.testing.assert_array_equal(d_dst.copy_to_host(), src)


def test_fill_kernel_pattern():
    d = cuda.device_array(300, dtype=np.uint64)
    cal.fill_kernel[BLOCKS, THREADS](d)
    np.testing.assert_array_equal(d.copy_to_host(), np.arange(300, dtype=np.uint64) * np.uint64(2654435761))


def test_l2_kernel_reads_every_word_every_pass():
    data = (np.arange(777, dtype=np.uint64) % 13) + 1
    out = cuda.device_array(BLOCKS, dtype=np.uint64)
    passes = 3
    cal.l2_read_kernel[BLOCKS, THREADS](cuda.to_device(data), np.int64(passes), out)
    assert int(out.copy_to_host().sum()) == passes * int(data.sum())


def test_fma_kernel_matches_the_recurrence_in_numpy():
    iters = 3
    out = cuda.device_array(BLOCKS * THREADS, dtype=np.float32)
    cal.fma_kernel[BLOCKS, THREADS](cuda.to_device(cal.SEED), cal.FMA_MUL, cal.FMA_ADD, np.int64(iters), out)
    x = cal.SEED.astype(np.float64)
    for _ in range(iters * cal.STEPS_PER_ITER):
        x = x * float(cal.FMA_MUL) + float(cal.FMA_ADD)
    np.testing.assert_allclose(out.copy_to_host(), np.full(BLOCKS * THREADS, x.sum()), rtol=1e-6)


def test_exp_kernel_matches_the_recurrence_in_numpy():
    iters = 2
    out = cuda.device_array(BLOCKS * THREADS, dtype=np.float32)
    cal.exp_kernel[BLOCKS, THREADS](cuda.to_device(cal.SEED), np.int64(iters), out)
    x = cal.SEED.astype(np.float64)
    for _ in range(iters * cal.STEPS_PER_ITER):
        x = np.exp(-x)
    np.testing.assert_allclose(out.copy_to_host(), np.full(BLOCKS * THREADS, x.sum()), rtol=1e-5)
    # The chains head for the fixed point of x = exp(-x) (the omega constant), never overflow.
    assert abs(x[0] - 0.5671432904) < 0.1


def test_time_launches_gives_positive_samples():
    samples = cal.time_launches(lambda: cal.empty_kernel_noargs[1, 1](), repeats=3, warmup=1)
    assert len(samples) == 3 and all(s > 0 for s in samples)


@pytest.mark.parametrize("name, base", [
    ("NVIDIA H100 80GB HBM3", "h100-sxm5-80gb"),
    ("NVIDIA H100 PCIe", "h100-pcie-80gb"),
    ("NVIDIA H200", "h200-sxm-141gb"),
    ("NVIDIA A100-SXM4-40GB", "a100-sxm4-40gb"),
    ("NVIDIA A100-SXM4-80GB", "a100-sxm4-80gb"),
])
def test_default_base_from_the_gpu_name(name, base):
    assert cal.default_base(name) == base


def test_default_base_unknown_gpu():
    with pytest.raises(ValueError, match="--base"):
        cal.default_base("Some Future GPU")


def test_calibration_writes_a_spec_that_loads(tmp_path):
    out = tmp_path / "h100-sxm5-80gb-measured.yaml"
    raw_json = tmp_path / "raw.json"
    summary = cal.calibrate_gpu(base="h100-sxm5-80gb", out=out, raw_json=raw_json, sizes=cal.Sizes.tiny(),
                                command="pytest")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h100-sxm5-80gb-measured.yaml", "raw.json"]
    spec = load_gpu(out)
    base = load_gpu("h100-sxm5-80gb")
    measured = {"hbm_bandwidth_Bps", "l2_bandwidth_Bps", "peak_flops_per_s.fp32", "sfu_exp_per_clk_per_sm",
                "kernel_launch_s"}
    assert measured <= set(spec.measured)
    assert spec.name == "h100-sxm5-80gb-measured" and summary["spec"] == spec.name
    assert spec.measured["hbm_bandwidth_Bps"].value_datasheet == base.hbm_bandwidth_Bps
    assert spec.measured["peak_flops_per_s.fp32"].value_datasheet == base.peak_flops_per_s["fp32"]
    assert "copy" in spec.sources["hbm_bandwidth_Bps"] and "FMA" in spec.sources["peak_flops_per_s.fp32"]
    # Unmeasured values stay the datasheet's; tensor rates too, without torch.
    assert spec.sm_count == base.sm_count and spec.peak_flops_per_s["bf16_tensor"] == base.peak_flops_per_s["bf16_tensor"]
    # The SFU rate is exps/s over the base spec's SMs x clock, so sfu_exp_per_s is the measurement.
    raw = json.loads(raw_json.read_text())
    exp = next(c for c in raw["ceilings"] if c["field"] == "sfu_exp_per_clk_per_sm")
    assert spec.sfu_exp_per_s == pytest.approx(exp["extra"]["exp_per_s"])
    assert spec.calibration["command"] == "pytest" and spec.calibration["gpu"] == "CUDA simulator"
    for key in ("date", "driver", "cuda_runtime", "numba", "numba_cuda", "numpy", "torch"):
        assert key in spec.calibration
    assert all(len(c["samples_s"]) >= 1 and all(s > 0 for s in c["samples_s"]) for c in raw["ceilings"])
    assert math.isclose(summary["ceilings"][0]["measured"], spec.hbm_bandwidth_Bps)


def test_calibration_of_a_field_the_base_lacks():
    import datetime as dt

    base = load_gpu("h100-sxm5-80gb")
    base = base.model_copy(update={"l2_bandwidth_Bps": None,
                                   "sources": {k: v for k, v in base.sources.items() if k != "l2_bandwidth_Bps"}})
    c = cal.Ceiling("l2_bandwidth_Bps", 7e12, "test method", [1e-3], 7e9)
    spec = cal.calibrated_spec(base, [c], dt.date(2025, 1, 1), {"gpu": "test"}, "x-measured")
    assert spec.l2_bandwidth_Bps == 7e12
    assert spec.measured["l2_bandwidth_Bps"].value_datasheet is None
    assert spec.sources["l2_bandwidth_Bps"] != "placeholder"


def test_calibrate_command(tmp_path, monkeypatch, capsys):
    from costmodel.cli import main

    monkeypatch.setattr(cal.Sizes, "quick", classmethod(lambda cls: cls.tiny()))  # the simulator's sizes
    out = tmp_path / "mine.yaml"
    assert main(["calibrate", "--quick", "--base", "a100-sxm4-40gb", "--out", str(out), "--repeats", "2",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["out"] == str(out) and data["raw_json"] == str(tmp_path / "mine.raw.json")
    assert load_gpu(out).name == "mine" and load_gpu(out).calibration["command"].startswith("ioaware")
    assert {c["field"] for c in data["ceilings"]} >= {"hbm_bandwidth_Bps", "kernel_launch_s"}
    assert main(["calibrate", "--quick", "--base", "no-such-gpu", "--out", str(out)]) == 2
    assert "no-such-gpu" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["calibrate", "--quick"], ["validate", "--quick"]])
def test_measuring_commands_without_a_gpu_exit_2_with_one_line(argv, monkeypatch, capsys):
    from numba import cuda

    from costmodel.cli import main

    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "0")
    monkeypatch.setattr(cuda, "is_available", lambda: False)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no CUDA GPU" in err and "--repredict" in err
