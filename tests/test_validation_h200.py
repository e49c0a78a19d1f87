"""The H200 results committed under costmodel/validation/results/ (measured 2026-12-01), checked without a GPU.

The merged file's errors are recomputed from its raw numbers by hand, its predictions are made
again from the three raw run files with the current model (so a model change that is not
re-recorded fails here), and the report is built from it into a temporary folder only.
"""
from pathlib import Path

import numpy as np
import pytest

from costmodel.validation.compare import compare, summarize
from costmodel.validation.schema import load_results, merge_results

RESULTS = Path(__file__).resolve().parent.parent / "costmodel" / "validation" / "results"
MERGED = RESULTS / "h200-validation.json"
RAW = [RESULTS / "h200" / f"validation-{part}.json" for part in ("main", "long", "decode")] + [
    RESULTS / "h200" / "issue17" / "validation-fixes.json"]  # 2026-12-02: flash_bwd N <= 2048, decode, flash_decoding


@pytest.fixture(scope="module")
def merged():
    return load_results(MERGED)


def test_h200_results_are_a_real_gpu_run(merged):
    assert merged.meta.gpu == "NVIDIA H200" and merged.meta.ncu
    assert merged.meta.spec == "h200-sxm-141gb-measured"
    assert len(merged.records) >= 150
    assert all(r.measured.rel_error_vs_reference is None or r.measured.rel_error_vs_reference < 1e-2
               for r in merged.records)  # every checked output matched the float64 reference


def test_h200_errors_recomputed_from_the_raw_numbers(merged):
    rows = compare(merged)
    for row, r in zip(rows, merged.records):
        assert row.time_error == pytest.approx((r.predicted.time_s - r.measured.time_s) / r.measured.time_s)
        if r.measured.dram_read_bytes is not None:
            dram = r.measured.dram_read_bytes + r.measured.dram_write_bytes
            assert row.bytes_error == pytest.approx((r.predicted.hbm_bytes - dram) / dram)
    fa2 = [row.time_error for row in rows if row.family == "flash2_fwd"]
    assert summarize(merged)["flash2_fwd"].median_abs_time_error == pytest.approx(float(np.median(np.abs(fa2))))


def test_h200_merged_file_is_the_raw_runs_predicted_by_the_current_model(merged):
    from costmodel.validation.predict import repredict

    again = repredict(merge_results([load_results(p) for p in RAW]), "h200-sxm-141gb-measured")
    assert len(again.records) == len(merged.records)
    for new, old in zip(again.records, merged.records):
        assert (new.family, new.config) == (old.family, old.config)
        assert new.measured == old.measured
        assert new.predicted.time_s == pytest.approx(old.predicted.time_s, rel=1e-9), (new.family, new.config)
        assert new.predicted.hbm_bytes == pytest.approx(old.predicted.hbm_bytes, rel=1e-9)


def test_h200_report_builds_and_writes_only_its_output(merged, tmp_path):
    from costmodel.validation.report import write_report

    out = tmp_path / "report" / "h200.html"
    written = write_report(merged, out, png=False)
    assert written == [out] and out.stat().st_size > 1_000_000
    assert {p for p in tmp_path.rglob("*") if p.is_file()} == {out}
    page = out.read_text()
    assert "NVIDIA H200" in page and "flash2_fwd" in page and "GPU time" in page
