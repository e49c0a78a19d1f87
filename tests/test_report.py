"""costmodel/validation/report.py: the HTML report built from the synthetic results sample."""
import json
import os
import re
from pathlib import Path

import pytest

from costmodel.cli import main
from costmodel.validation.compare import summarize, targets
from costmodel.validation.report import build_report, report_spec, roofline_points, write_report
from costmodel.validation.schema import load_results, parse_results

SAMPLE = Path(__file__).parent / "data" / "validation_sample.json"


def _listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture(scope="module")
def results():
    return load_results(SAMPLE)


def test_report_has_every_section(results, tmp_path):
    out = tmp_path / "report.html"
    write_report(results, out, png=False)
    page = out.read_text()
    for section in ("meta", "targets", "errors", "time", "bytes", "roofline"):
        assert f'<section id="{section}">' in page
    for div in ("error-table", "record-table", "fig-time", "fig-bytes", "fig-roofline"):
        assert f'id="{div}"' in page
    # The error table holds the families and their numbers; the targets say pass and fail.
    assert "flash2_fwd" in page and "40.0%" in page and "17.5%" in page
    assert "PASS" in page and "FAIL" in page and "no data" in page
    assert "SYNTHETIC" in page


def test_report_is_self_contained(results, tmp_path):
    out = tmp_path / "report.html"
    write_report(results, out, png=False)
    page = out.read_text()
    assert page.count("<html") == 1
    assert not re.search(r"<script[^>]*\bsrc=", page)  # no script fetched from elsewhere
    assert len(page) > 1_000_000  # plotly.js is embedded, once
    assert page.count("Plotly.newPlot") == 3  # not a dedicated count of the library: one call per figure


def test_report_writes_nothing_else(results, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "keep.txt").write_text("x")
    before_tmp, before_cwd = _listing(tmp_path), set(os.listdir(Path.cwd()))
    written = write_report(results, work / "out" / "report.html")  # PNGs too, where export works
    after = _listing(tmp_path) - before_tmp
    expected = {"work/out", "work/out/report.html"} | {f"work/out/{p.name}" for p in written[1:]}
    assert after == expected
    assert all(p.name.startswith("report-") and p.suffix == ".png" for p in written[1:])
    assert set(os.listdir(Path.cwd())) == before_cwd


def test_roofline_points_use_measured_bytes_where_present(results):
    points = roofline_points(results)
    raw = json.loads(SAMPLE.read_text())["records"]
    first, last = points[0], points[-1]
    # Record 0: measured DRAM bytes 3e8 + 1e8; record 9: none, so the predicted 9e8.
    assert first.intensity == pytest.approx(raw[0]["flops"] / 4.0e8)
    assert first.flops_per_s == pytest.approx(raw[0]["flops"] / raw[0]["measured"]["time_s"])
    assert last.intensity == pytest.approx(raw[9]["flops"] / 9.0e8)
    assert "bytes predicted" in last.name and "bytes predicted" not in first.name


def test_roofline_spec_falls_back_to_the_datasheet(results):
    data = json.loads(SAMPLE.read_text())
    data["meta"]["spec"] = "a100-sxm4-40gb-measured"  # not calibrated here
    spec, note = report_spec(parse_results(data))
    assert spec.name == "a100-sxm4-40gb" and "fell back" in note
    data["meta"]["spec"] = "no-such-gpu"
    spec, note = report_spec(parse_results(data))
    assert spec is None and "not found" in note
    text, figures = build_report(parse_results(data))
    assert "roofline" not in figures and '<section id="roofline">' in text


def test_report_command(tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", str(SAMPLE), "--out", str(out), "--no-png", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["written"] == [str(out)] and out.is_file()
    assert data["summary"]["flash2_fwd"]["worst_abs_time_error"] == pytest.approx(0.40)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"meta": {}, "records": []}))
    assert main(["report", str(bad), "--out", str(tmp_path / "x.html")]) == 2
    assert "meta.gpu" in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()


def test_report_leads_with_its_answer(results):
    """Targets and errors first, then the parity plots, the roofline, and the run's details last."""
    page, _ = build_report(results)
    order = [page.index(f'<section id="{s}">') for s in ("targets", "errors", "time", "bytes", "roofline", "meta")]
    assert order == sorted(order)
    judged = [t for t in targets(summarize(results)) if t.passed is not None]
    assert f"{sum(t.passed for t in judged)} of {len(judged)} targets met" in page


def test_report_folds_notes_once_and_counts_skips_by_reason(results):
    meta = results.meta.model_copy(update={
        "notes": ["note A", "note B", "note A", "note A"],
        "skipped": ["flash2_fwd N8192: time budget (240 s) spent", "decode B16: out of memory",
                    "flash1_fwd N8192: time budget (240 s) spent", "flash2_fwd N8192: time budget (240 s) spent"]})
    page, _ = build_report(results.model_copy(update={"meta": meta}))
    assert page.count("<li>note A</li>") == 1 and "Run notes (2)" in page
    assert page.index('id="notes"') < page.index("</details>", page.index('id="notes"'))  # folded
    assert "Skipped 3 configurations" in page
    assert "2 × time budget (240 s) spent" in page and "1 × out of memory" in page
    assert page.index("2 × time budget") < page.index("1 × out of memory")  # most common reason first


def test_roofline_labels_each_familys_worst_run(results):
    points = roofline_points(results)
    raw = json.loads(SAMPLE.read_text())["records"]
    errors = [abs(r["predicted"]["time_s"] / r["measured"]["time_s"] - 1) for r in raw]  # by hand
    families = {r["family"] for r in raw}
    labelled = [i for i, p in enumerate(points) if p.label]
    assert sorted(raw[i]["family"] for i in labelled) == sorted(families)  # one label per family
    for i in labelled:  # ... on its largest |time error| (ties either way)
        worst = max(e for e, r in zip(errors, raw) if r["family"] == raw[i]["family"])
        assert errors[i] == pytest.approx(worst, abs=1e-12)
    _, figures = build_report(results)
    shown = [a.text for a in figures["roofline"].layout.annotations]
    assert len(shown) == len(families) and all("%" in t for t in shown)
