"""costmodel/validation/calibrate.py in numba's CUDA simulator: a calibration at tiny sizes
writes a spec that loads and marks its measured fields; the device name picks the base spec.
Timings in the simulator mean nothing and are not checked beyond being positive.
"""
import json
import math

import pytest

from costmodel.validation import calibrate as cal
from costmodel.validation.ceilings import Ceiling, Sizes
from costmodel.validation.device import default_base
from hardware_specs import load_gpu


@pytest.mark.parametrize("name, base", [
    ("NVIDIA H100 80GB HBM3", "h100-sxm5-80gb"),
    ("NVIDIA H100 PCIe", "h100-pcie-80gb"),
    ("NVIDIA H200", "h200-sxm-141gb"),
    ("NVIDIA A100-SXM4-40GB", "a100-sxm4-40gb"),
    ("NVIDIA A100-SXM4-80GB", "a100-sxm4-80gb"),
])
def test_default_base_from_the_gpu_name(name, base):
    assert default_base(name) == base


def test_default_base_unknown_gpu():
    with pytest.raises(ValueError, match="--base"):
        default_base("Some Future GPU")


def test_calibration_writes_a_spec_that_loads(tmp_path):
    out = tmp_path / "h100-sxm5-80gb-measured.yaml"
    raw_json = tmp_path / "raw.json"
    import io

    from costmodel.progress import Progress

    err = io.StringIO()
    bar = Progress(None, "calibrate", enabled=True, stream=err)  # as `ioaware calibrate` on a terminal
    summary = cal.calibrate_gpu(base="h100-sxm5-80gb", out=out, raw_json=raw_json, sizes=Sizes.tiny(),
                                command="pytest", progress=bar)
    bar.close()
    assert bar.total == 7 and bar.done == 7 and "7/7" in err.getvalue()  # 5 SIMT ceilings, tensor, launch
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
    c = Ceiling("l2_bandwidth_Bps", 7e12, "test method", [1e-3], 7e9)
    spec = cal.calibrated_spec(base, [c], dt.date(2025, 1, 1), {"gpu": "test"}, "x-measured")
    assert spec.l2_bandwidth_Bps == 7e12
    assert spec.measured["l2_bandwidth_Bps"].value_datasheet is None
    assert spec.sources["l2_bandwidth_Bps"] != "placeholder"


def test_calibrate_command(tmp_path, monkeypatch, capsys):
    from costmodel.cli import main

    monkeypatch.setattr(Sizes, "quick", classmethod(lambda cls: cls.tiny()))  # the simulator's sizes
    out = tmp_path / "mine.yaml"
    assert main(["calibrate", "--quick", "--base", "a100-sxm4-40gb", "--out", str(out), "--repeats", "2",
                 "--json"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert captured.err == ""  # --json: no log lines, no progress bar
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
