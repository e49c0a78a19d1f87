"""Tests for hardware_specs: the bundled GPU files, the schema's rejections, user files, overlays.

Anchors come from the sources the spec files cite (datasheets, whitepapers, the CUDA C++
Programming Guide, the seed lecture, the FlashAttention paper); each cross-check recomputes a
published number from other published numbers, so a typo in one file shows up as a mismatch.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from hardware_specs import GPUSpec, SpecError, calibrate, list_gpus, load_gpu, spec_to_raw, spec_to_yaml
from hardware_specs.loader import _read_raw
from hardware_specs.schema import _SOURCED_FIELDS

BUNDLED = (
    "a100-sxm4-40gb", "a100-sxm4-80gb", "h100-sxm5-80gb", "h100-pcie-80gb", "h200-sxm-141gb",
    "v100-sxm2-32gb", "l4", "rtx-4090", "mi300x",
)
GiB = 2**30


def _write(tmp_path: Path, raw: dict, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _raw(name: str = "l4") -> dict:
    """A bundled spec's raw mapping (each number still beside its source), to edit in a test."""
    return _read_raw(name)


# --- every bundled spec loads, every number has a source ---------------------------------------


def test_bundled_names_are_the_documented_set():
    assert set(BUNDLED) <= set(list_gpus())


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_spec_loads(name):
    spec = load_gpu(name)
    assert spec.name == name
    assert spec.measured == {}  # datasheet files hold no measurements
    assert spec.smem_per_block_max_bytes <= spec.smem_per_sm_bytes


@pytest.mark.parametrize("name", BUNDLED)
def test_every_number_has_a_nonempty_source(name):
    spec = load_gpu(name)
    for field in _SOURCED_FIELDS:
        if getattr(spec, field) is not None:
            assert spec.sources[field].strip(), field
    for unit in spec.peak_flops_per_s:
        assert spec.sources[f"peak_flops_per_s.{unit}"].strip(), unit


@pytest.mark.parametrize("name", BUNDLED)
def test_every_source_cites_a_tag_from_its_file_header(name):
    """Each value's source names one of the [TAG]s the file's header comment defines."""
    text = (Path(__file__).parent.parent / "hardware_specs" / "gpus" / f"{name}.yaml").read_text()
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    spec = load_gpu(name)
    for key, source in spec.sources.items():
        tags = [tok.split("]")[0] + "]" for tok in source.split("[")[1:]]
        assert tags, f"{name}: {key} cites no [TAG]"
        for tag in tags:
            assert tag in header, f"{name}: {key} cites {tag}, which the header does not define"


def test_number_without_source_is_rejected_naming_the_field(tmp_path):
    raw = _raw()
    raw["hbm_bandwidth_Bps"] = 300e9  # a bare number
    with pytest.raises(SpecError, match=r"no source: .*hbm_bandwidth_Bps"):
        load_gpu(_write(tmp_path, raw))


def test_peak_without_source_is_rejected_naming_the_unit(tmp_path):
    raw = _raw()
    raw["peak_flops_per_s"]["fp32"] = {"value": 30.3e12}
    with pytest.raises(SpecError, match=r"no source: .*peak_flops_per_s\.fp32"):
        load_gpu(_write(tmp_path, raw))


def test_empty_source_is_rejected(tmp_path):
    raw = _raw()
    raw["hbm_bandwidth_Bps"] = {"value": 300e9, "source": ""}
    with pytest.raises(SpecError, match="hbm_bandwidth_Bps"):
        load_gpu(_write(tmp_path, raw))


# --- bad values are rejected with a message that names the field and the value ------------------


def test_negative_bandwidth_is_rejected(tmp_path):
    raw = _raw()
    raw["hbm_bandwidth_Bps"] = {"value": -1.0, "source": "typo"}
    with pytest.raises(SpecError, match=r"hbm_bandwidth_Bps: .*greater than 0.*-1\.0"):
        load_gpu(_write(tmp_path, raw))


def test_efficiency_above_one_is_rejected(tmp_path):
    raw = _raw()
    raw["efficiency"] = {"hbm": 1.5}
    with pytest.raises(SpecError, match=r"efficiency\.hbm: must be in \(0, 1\], got 1\.5"):
        load_gpu(_write(tmp_path, raw))


def test_unknown_compute_unit_is_rejected(tmp_path):
    raw = _raw()
    raw["peak_flops_per_s"]["fp4_tensor"] = {"value": 1e15, "source": "a later GPU"}
    with pytest.raises(SpecError, match=r"peak_flops_per_s: unknown unit 'fp4_tensor'"):
        load_gpu(_write(tmp_path, raw))


def test_smem_per_block_above_per_sm_is_rejected(tmp_path):
    raw = _raw()
    raw["smem_per_block_max_bytes"] = {"value": 200000, "source": "typo"}
    with pytest.raises(SpecError, match=r"smem_per_block_max_bytes \(200000\) exceeds smem_per_sm_bytes \(102400\)"):
        load_gpu(_write(tmp_path, raw))


def test_unknown_gpu_name_lists_the_bundled_names():
    with pytest.raises(SpecError, match="unknown GPU 'b300'") as err:
        load_gpu("b300")
    for name in BUNDLED:
        assert name in str(err.value)


# --- a user's own file, calibrated overlays, calibrate(), round trip ----------------------------


def test_users_own_yaml_loads_by_path(tmp_path):
    raw = _raw("l4")
    raw["name"] = "my-l4-lowclock"
    raw["boost_clock_Hz"] = {"value": 1.8e9, "source": "my lab's locked clock"}
    spec = load_gpu(_write(tmp_path, raw, "mine.yaml"))
    assert spec.name == "my-l4-lowclock"
    assert spec.boost_clock_Hz == 1.8e9
    assert spec.sources["boost_clock_Hz"] == "my lab's locked clock"
    assert spec.hbm_bandwidth_Bps == load_gpu("l4").hbm_bandwidth_Bps


OVERLAY = """\
base: h100-sxm5-80gb
hbm_bandwidth_Bps: {value: 3.0e12, measured: {method: "device-to-device copy, 4 GiB", date: 2026-01-02}}
peak_flops_per_s:
  fp32: {value: 60.0e12, measured: {method: "FFMA loop, 132 x 1024 threads", date: 2026-01-02}}
"""


def test_calibrated_overlay_keeps_base_and_marks_measured(tmp_path):
    path = tmp_path / "h100-mine.yaml"
    path.write_text(OVERLAY)
    spec, base = load_gpu(path), load_gpu("h100-sxm5-80gb")
    # measured values replace the datasheet's
    assert spec.hbm_bandwidth_Bps == 3.0e12
    assert spec.peak_flops_per_s["fp32"] == 60.0e12
    # everything else comes from the base, sources included
    assert spec.peak_flops_per_s["fp16_tensor"] == base.peak_flops_per_s["fp16_tensor"]
    assert spec.l2_bytes == base.l2_bytes
    assert spec.sources["l2_bytes"] == base.sources["l2_bytes"]
    # the measured ones carry date and method, and no longer the datasheet's source
    for key in ("hbm_bandwidth_Bps", "peak_flops_per_s.fp32"):
        assert spec.measured[key].date == dt.date(2026, 1, 2)
        assert spec.measured[key].method
        assert spec.sources[key].startswith("measured 2026-01-02")
        assert "[DS]" not in spec.sources[key] and "[WP]" not in spec.sources[key]
    assert set(spec.measured) == {"hbm_bandwidth_Bps", "peak_flops_per_s.fp32"}


def test_calibrated_overlay_without_name_is_named_like_calibrate(tmp_path):
    path = tmp_path / "h100-mine.yaml"
    path.write_text(OVERLAY)
    assert load_gpu(path).name == "h100-sxm5-80gb-calibrated"


def test_calibrate_programmatic_and_yaml_round_trip(tmp_path):
    spec = calibrate(
        "h100-sxm5-80gb",
        measurements={"hbm_bandwidth_Bps": 3.0e12, "peak_flops_per_s.fp32": 60.0e12},
        methods={"hbm_bandwidth_Bps": "copy kernel", "peak_flops_per_s.fp32": "FFMA loop"},
        date=dt.date(2026, 1, 2), info={"driver": "580.159"},
    )
    base = load_gpu("h100-sxm5-80gb")
    assert spec.name == "h100-sxm5-80gb-calibrated"
    assert spec.hbm_bandwidth_Bps == 3.0e12 and spec.peak_flops_per_s["fp32"] == 60.0e12
    assert spec.measured["hbm_bandwidth_Bps"].value_datasheet == base.hbm_bandwidth_Bps
    assert spec.measured["peak_flops_per_s.fp32"].value_datasheet == base.peak_flops_per_s["fp32"]
    assert spec.sources["hbm_bandwidth_Bps"] == "measured 2026-01-02: copy kernel"
    assert spec.sources["l2_bytes"] == base.sources["l2_bytes"]
    assert spec.calibration == {"date": "2026-01-02", "driver": "580.159"}
    path = tmp_path / "rt.yaml"
    path.write_text(spec_to_yaml(spec))
    assert load_gpu(path) == spec


@pytest.mark.parametrize("name", BUNDLED)
def test_spec_to_yaml_round_trips_every_bundled_spec(tmp_path, name):
    spec = load_gpu(name)
    path = tmp_path / f"{name}.yaml"
    path.write_text(spec_to_yaml(spec))
    assert load_gpu(path) == spec


def test_calibrate_needs_a_method_for_each_measurement():
    with pytest.raises(SpecError, match="hbm_bandwidth_Bps has no method"):
        calibrate("l4", {"hbm_bandwidth_Bps": 2.5e11}, {}, dt.date(2026, 1, 2))


# --- cross-checks: published numbers recomputed from other published numbers --------------------


@pytest.mark.parametrize("name", BUNDLED)
def test_fp32_peak_is_two_flops_per_lane_per_clock(name):
    """Datasheet FP32 peak = 2 (FMA) x FP32 lanes/SM x SMs x boost clock, to the datasheet's rounding.

    Each file cites the lanes, SMs and clock to a whitepaper table and the peak to a datasheet;
    they agree within 0.5% (V100: 2 x 64 x 80 x 1.53 GHz = 15.67 vs 15.7)."""
    s = load_gpu(name)
    derived = 2 * s.fp32_lanes_per_sm * s.sm_count * s.boost_clock_Hz
    assert derived == pytest.approx(s.peak_flops_per_s["fp32"], rel=5e-3)


def test_a100_fp32_peak_whitepaper_table_4():
    """A100 whitepaper Table 4: 2 x 64 x 108 x 1.41 GHz = 19.49 TFLOP/s, the datasheet's 19.5."""
    assert 2 * 64 * 108 * 1.41e9 == pytest.approx(load_gpu("a100-sxm4-40gb").peak_flops_per_s["fp32"], rel=1e-3)


def test_h100_sxm_fp32_peak_whitepaper_table_3():
    """H100 whitepaper Table 3: 2 x 128 x 132 x 1.98 GHz = 66.9 TFLOP/s."""
    spec = load_gpu("h100-sxm5-80gb")
    assert 2 * 128 * 132 * 1.98e9 == pytest.approx(66.9e12, rel=1e-3)
    assert spec.peak_flops_per_s["fp32"] == pytest.approx(2 * 128 * 132 * 1.98e9, rel=1e-3)


def test_h100_sxm_tensor_peak_is_1024_flop_per_tensor_core_at_1830_mhz():
    """The H100 tensor peaks are rated at 1.83 GHz (file header): 4 tensor cores/SM x 132 SMs x 1024
    dense FP16 FLOP/clk (the Scaling Book's "each H100 TC can do ~1024 bf16 FLOPs/cycle") x 1.83 GHz."""
    spec = load_gpu("h100-sxm5-80gb")
    assert 4 * 132 * 1024 * 1.83e9 == pytest.approx(spec.peak_flops_per_s["fp16_tensor"], rel=1e-3)
    assert spec.peak_flops_per_s["fp8_tensor"] == pytest.approx(2 * spec.peak_flops_per_s["fp16_tensor"], rel=1e-3)


@pytest.mark.parametrize("name, sparse_tflops", [
    ("h100-sxm5-80gb", 1979), ("h100-pcie-80gb", 1513), ("h200-sxm-141gb", 1979), ("l4", 242),
])
def test_dense_fp16_tensor_is_half_the_datasheets_sparsity_figure(name, sparse_tflops):
    """Datasheets print tensor peaks "with sparsity"; the specs hold dense = half, to rounding."""
    assert 2 * load_gpu(name).peak_flops_per_s["fp16_tensor"] == pytest.approx(sparse_tflops * 1e12, rel=2e-3)


def test_a100_smem_bandwidth_is_flashattention_figure_1_sram_19_tbps():
    """FlashAttention (Dao et al. 2022) Figure 1: A100 "SRAM: 19 TB/s".
    CUDA guide: 32 banks x 4 B per clock per SM; x 108 SMs x 1.41 GHz = 19.5 TB/s."""
    spec = load_gpu("a100-sxm4-40gb")
    assert spec.smem_bandwidth_Bps == pytest.approx(32 * 4 * 108 * 1.41e9)
    assert spec.smem_bandwidth_Bps == pytest.approx(19e12, rel=0.03)


def test_seed_lecture_tf32_figure_vs_datasheet():
    """Seed lecture: 512 TF32 "cores" x 2 FLOP x 1.4 GHz x 108 SMs = 154.8 TFLOP/s ("154 TF32 TFLOPS");
    the datasheet's 156 (at 1.41 GHz) is within 1%."""
    lecture = 512 * 2 * 1.4e9 * 108
    assert lecture == pytest.approx(154.8e12, rel=1e-3)
    assert lecture == pytest.approx(load_gpu("a100-sxm4-40gb").peak_flops_per_s["tf32_tensor"], rel=0.01)
    assert lecture != pytest.approx(156e12, rel=1e-3)  # the difference is the clock, not rounding


def test_a100_l2_bandwidth_is_whitepaper_bytes_per_clock():
    """A100 whitepaper, "A100 L2 Cache": 5120 B/clk read (V100: 2048 B/clk), times the boost clock."""
    for name in ("a100-sxm4-40gb", "a100-sxm4-80gb"):
        assert load_gpu(name).l2_bandwidth_Bps == pytest.approx(5120 * 1.41e9)
    assert load_gpu("v100-sxm2-32gb").l2_bandwidth_Bps == pytest.approx(2048 * 1.53e9, rel=1e-4)


def test_mi300x_rates_are_cdna3_whitepaper_table_1_per_cu_per_clock():
    """CDNA 3 white paper Table 1 gives FLOPS/clock/CU; x 304 CUs x 2.1 GHz = the peak column.
    L2: 2 KB/clk per XCD x 8 XCDs x 2.1 GHz = "up to 34.4 TB/s aggregate read bandwidth"."""
    s = load_gpu("mi300x")
    per_cu_per_clk = {"fp64": 128, "fp64_tensor": 256, "fp32": 256, "tf32_tensor": 1024,
                      "fp16_tensor": 2048, "bf16_tensor": 2048, "fp8_tensor": 4096, "int8_tensor": 4096}
    for unit, flops in per_cu_per_clk.items():
        assert flops * 304 * 2.1e9 == pytest.approx(s.peak_flops_per_s[unit], rel=1e-3), unit
    assert 8 * 2048 * 2.1e9 == pytest.approx(s.l2_bandwidth_Bps, rel=1e-3)
    assert s.l2_bytes == 8 * 4 * 2**20


@pytest.mark.parametrize("name, marketed_gb", [
    ("a100-sxm4-40gb", 40), ("a100-sxm4-80gb", 80), ("h100-sxm5-80gb", 80), ("h100-pcie-80gb", 80),
    ("h200-sxm-141gb", 141), ("v100-sxm2-32gb", 32), ("l4", 24), ("rtx-4090", 24), ("mi300x", 192),
])
def test_memory_capacity_is_the_marketed_number_in_gib(name, marketed_gb):
    """Convention of every file: a vendor's "N GB" of device memory is N GiB."""
    assert load_gpu(name).hbm_bytes == marketed_gb * GiB


def test_lent_h100_readings_fit_the_spec():
    """The lent H100 (device KINDS.md): 132 SMs and 50 MB of L2 (PyTorch), 81559 MiB in nvidia-smi;
    the driver reserves a little of the 80 GiB."""
    spec = load_gpu("h100-sxm5-80gb")
    assert spec.sm_count == 132
    assert spec.l2_bytes == 50 * 2**20
    assert 0.99 * spec.hbm_bytes < 81559 * 2**20 < spec.hbm_bytes


def test_seed_lecture_a100_table_matches_the_80gb_part():
    """Seed lecture table: A100, 108 SMs, 40 MB L2, 80 GB HBM, "up to 2 TB/s" (the 80 GB part's 2,039 GB/s)."""
    spec = load_gpu("a100-sxm4-80gb")
    assert spec.sm_count == 108
    assert spec.l2_bytes == 40 * 2**20
    assert spec.hbm_bytes == 80 * GiB
    assert spec.hbm_bandwidth_Bps == pytest.approx(2e12, rel=0.02)


def test_sfu_exp_rate_is_16_per_clock_per_sm_on_every_nvidia_part():
    """CUDA C++ Programming Guide, arithmetic-instruction throughput: 16 exp2 results/clk/SM, cc 7.x-9.0."""
    for name in BUNDLED:
        spec = load_gpu(name)
        if spec.vendor == "nvidia":
            assert spec.sfu_exp_per_clk_per_sm == 16
            assert spec.sfu_exp_per_s == pytest.approx(16 * spec.sm_count * spec.boost_clock_Hz)


def test_spec_from_raw_validates_like_a_file():
    """spec_to_raw gives what a file would hold; GPUSpec validates it back to an equal spec."""
    spec = load_gpu("mi300x")
    assert GPUSpec.model_validate(spec_to_raw(spec)) == spec
