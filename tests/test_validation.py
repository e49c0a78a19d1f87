"""costmodel/validation/schema.py (the results format, reading, merging) and
costmodel/validation/compare.py (errors, summary per family, targets).

The sample file tests/data/validation_sample.json is synthetic: its numbers were made up
so that every relative error is a round number, checked here by hand.
"""
import copy
import json
from pathlib import Path

import numpy as np
import pytest

from costmodel.validation.compare import compare, relative_error, summarize, targets
from costmodel.validation.schema import ResultsError, load_results, parse_results


SAMPLE = Path(__file__).parent / "data" / "validation_sample.json"


@pytest.fixture(scope="module")
def raw():
    return json.loads(SAMPLE.read_text())


@pytest.fixture(scope="module")
def results():
    return load_results(SAMPLE)


def test_sample_is_marked_synthetic(raw):
    assert "SYNTHETIC" in raw["meta"]["command"] and any("SYNTHETIC" in n for n in raw["meta"]["notes"])


def test_relative_error_definition():
    assert relative_error(110.0, 100.0) == pytest.approx(0.10)
    assert relative_error(90.0, 100.0) == pytest.approx(-0.10)
    np.testing.assert_allclose(relative_error([2.0, 3.0], [4.0, 2.0]), [-0.5, 0.5])


def test_time_errors_recomputed_from_raw_numbers(raw, results):
    rows = compare(results)
    by_hand = [(r["predicted"]["time_s"] - r["measured"]["time_s"]) / r["measured"]["time_s"] for r in raw["records"]]
    assert [row.time_error for row in rows] == pytest.approx(by_hand)
    # The round numbers the sample was built with.
    assert by_hand == pytest.approx([0.05, -0.05, 0.08, -0.09, 0.40, 0.20, 0.15, 0.10, -0.10, 0.30])


def test_bytes_errors_only_where_ncu_measured(raw, results):
    rows = compare(results)
    for row, r in zip(rows, raw["records"]):
        m = r["measured"]
        if m["dram_read_bytes"] is None:
            assert row.bytes_error is None and row.measured_dram_bytes is None
        else:
            dram = m["dram_read_bytes"] + m["dram_write_bytes"]
            assert row.measured_dram_bytes == dram
            assert row.bytes_error == pytest.approx((r["predicted"]["hbm_bytes"] - dram) / dram)
    assert [r.bytes_error for r in rows[:4]] == pytest.approx([0.02, -0.03, 0.04, 0.06])


def test_summary_medians_and_worst_by_hand(results):
    s = summarize(results)
    assert list(s) == ["standard_fwd", "flash2_fwd", "flash_bwd", "torch_sdpa_flash", "torch_sdpa_math"]
    assert (s["standard_fwd"].n, s["flash2_fwd"].n, s["flash_bwd"].n) == (2, 3, 2)
    # flash2: |errors| 0.08, 0.09, 0.40 -> median 0.09, worst 0.40; bytes 0.04, 0.06 -> median 0.05.
    assert s["flash2_fwd"].median_abs_time_error == pytest.approx(0.09)
    assert s["flash2_fwd"].worst_abs_time_error == pytest.approx(0.40)
    assert s["flash2_fwd"].n_bytes == 2
    assert s["flash2_fwd"].median_abs_bytes_error == pytest.approx(0.05)
    assert s["flash2_fwd"].worst_abs_bytes_error == pytest.approx(0.06)
    # flash_bwd: 0.20 and 0.15 -> median 0.175; no bytes.
    assert s["flash_bwd"].median_abs_time_error == pytest.approx(0.175)
    assert s["flash_bwd"].median_abs_bytes_error is None
    assert s["standard_fwd"].median_abs_bytes_error == pytest.approx(0.025)
    assert s["torch_sdpa_flash"].median_abs_time_error == pytest.approx(0.10)


def test_targets_on_the_synthetic_sample(results):
    checks = {(c.metric, c.family): c for c in targets(summarize(results))}
    verdict = {k: c.passed for k, c in checks.items()}
    assert verdict[("median_abs_time_error", "standard_fwd")] is True
    assert verdict[("median_abs_time_error", "flash2_fwd")] is True  # 9% <= 10%
    assert verdict[("worst_abs_time_error", "flash2_fwd")] is False  # 40% > 30%
    assert verdict[("median_abs_time_error", "flash_bwd")] is False  # 17.5% > 10%
    assert verdict[("worst_abs_time_error", "flash_bwd")] is True
    assert verdict[("worst_abs_bytes_error", "standard_fwd")] is True  # 3% <= 5%
    assert verdict[("worst_abs_bytes_error", "flash2_fwd")] is False  # 6% > 5%
    assert verdict[("median_abs_time_error", "torch_sdpa_flash")] is True  # 10% <= 15%
    assert verdict[("median_abs_time_error", "torch_sdpa_cudnn")] is None  # no data
    assert checks[("worst_abs_time_error", "flash2_fwd")].value == pytest.approx(0.40)
    # The math backend has no target.
    assert not any(f == "torch_sdpa_math" for _, f in checks)


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d["meta"].pop("gpu"), "meta.gpu"),
    (lambda d: d["records"][0]["measured"].__setitem__("time_s", -1.0), "records.0.measured.time_s"),
    (lambda d: d["records"][1].__setitem__("family", "flash9_fwd"), "family"),
    (lambda d: d["records"][7].__setitem__("source", "ours"), "source"),
    (lambda d: d["records"][2]["config"].__setitem__("kv_heads", 5), "kv_heads"),
    (lambda d: d["records"][2]["config"].__setitem__("dtype", "fp64"), "records.2.config.dtype"),
    (lambda d: d["records"][3]["predicted"].pop("bound"), "records.3.predicted.bound"),
    (lambda d: d["records"][0]["measured"].__setitem__("time_samples_s", []), "records.0.measured.time_samples_s"),
    (lambda d: d["meta"].__setitem__("date", "yesterday"), "meta.date"),
    (lambda d: d["records"][0].__setitem__("extra_field", 1), "records.0.extra_field"),
])
def test_bad_results_rejected_naming_the_field(raw, mutate, field):
    data = copy.deepcopy(raw)
    mutate(data)
    with pytest.raises(ResultsError, match=field.replace(".", r"\.")):
        parse_results(data)


def test_bad_files_rejected(tmp_path):
    (tmp_path / "a.json").write_text("{not json")
    with pytest.raises(ResultsError, match="not valid JSON"):
        load_results(tmp_path / "a.json")
    (tmp_path / "b.json").write_text("[1, 2]")
    with pytest.raises(ResultsError, match="one JSON object"):
        load_results(tmp_path / "b.json")
    with pytest.raises(ResultsError, match="cannot read"):
        load_results(tmp_path / "missing.json")



# ---------------------------------------------------------------- merging


def test_merge_keeps_the_last_measurement_of_a_configuration(raw):
    from costmodel.validation.schema import merge_results

    first, second = parse_results(copy.deepcopy(raw)), copy.deepcopy(raw)
    second["meta"]["command"] = "second run"
    second["records"] = second["records"][:2]
    second["records"][0]["measured"]["time_s"] = 123.0
    second["meta"]["skipped"] = ["not run here: budget"]
    merged = merge_results([first, parse_results(second)])
    assert len(merged.records) == len(raw["records"])  # the two repeated configurations counted once
    label = f"{raw['records'][0]['family']} {merged.records[-2].config.label()}"
    assert f"{merged.records[-2].family} {merged.records[-2].config.label()}" == label
    assert merged.records[-2].measured.time_s == 123.0
    assert "second run" in merged.meta.notes[0] and "not run here: budget" in merged.meta.skipped


def test_merge_refuses_another_gpu(raw):
    from costmodel.validation.schema import merge_results

    other = copy.deepcopy(raw)
    other["meta"]["gpu"] = "Some Other GPU"
    with pytest.raises(ResultsError, match="meta.gpu"):
        merge_results([parse_results(raw), parse_results(other)])


def test_gpu_time_error_leaves_the_launch_cost_out(raw):
    """Nsight Compute times kernels on the GPU alone: the prediction it is held against is the
    predicted kernels' times less their (host-side) launch cost."""
    data = copy.deepcopy(raw)
    rec = data["records"][2]
    rec["predicted"]["kernels"] = [{"name": "fa2", "time_s": 1.5e-3, "hbm_bytes": 1.0, "bound": "fp32",
                                    "launch_s": 0.5e-3}]
    rec["measured"]["ncu_kernels"] = [{"name": "fa2", "dram_read_bytes": 1.0, "dram_write_bytes": 0.0,
                                       "time_s": 0.8e-3}]
    rows = compare(parse_results(data))
    assert rows[2].predicted_gpu_time_s == pytest.approx(1.0e-3)
    assert rows[2].measured_gpu_time_s == pytest.approx(0.8e-3)
    assert rows[2].gpu_time_error == pytest.approx(0.25)
    assert rows[4].gpu_time_error is None  # no ncu run: no GPU-time comparison
    s = summarize(parse_results(data))["flash2_fwd"]
    assert s.n_gpu_time >= 1 and s.worst_abs_gpu_time_error == pytest.approx(0.25)
