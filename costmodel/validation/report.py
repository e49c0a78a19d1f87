"""The validation report: one self-contained HTML page from a results file.

It answers "how close are the predictions?" and leads with the answer: first the project's
targets, passed or failed, and the error table by family; then predicted against measured
time (and DRAM bytes, where Nsight Compute measured them) on log-log axes with the y = x
line and ±10 % bands; then the GPU's roofline with each measured run placed at its measured
intensity and throughput (each family's worst-predicted run labelled, the rest on hover); last the
run's details: its meta, its notes once each, and the skipped configurations counted by
reason, the lists folded.

The page embeds plotly.js once, so it opens offline. PNGs of the figures are written
beside it (``<stem>-time.png`` ...) only where plotly's image export works; nothing else
is written.
"""

from __future__ import annotations

import html
from dataclasses import replace
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from costmodel.outputs import OutputError, check_writable, write_atomic
from costmodel.plots import RooflinePoint, png_bytes, roofline_figure
from costmodel.validation import FAMILIES, ComparisonRow, Results, compare, relative_error, summarize, targets
from hardware_specs import GPUSpec, SpecError, load_gpu

_BAND = 0.10  # the ±10 % band drawn around y = x
_PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
    "#7f7f7f", "#bcbd22", "#17becf", "#393b79",
)
_COLORS = dict(zip(FAMILIES, _PALETTE))


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.1f}%"


def _ms(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 1e3:.4g} ms"


def _abs_pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def parity_figure(rows: list[ComparisonRow], quantity: str) -> go.Figure:
    """Predicted (y) against measured (x), log-log, one trace per family.

    ``quantity`` is "time" (seconds) or "bytes" (DRAM bytes; rows without a measurement
    are left out).
    """
    if quantity == "time":
        pts = [(r, r.measured_time_s, r.predicted_time_s, r.time_error) for r in rows]
        unit, title = "s", "Predicted vs measured time"
    elif quantity == "bytes":
        pts = [(r, r.measured_dram_bytes, r.predicted_hbm_bytes, r.bytes_error)
               for r in rows if r.measured_dram_bytes]
        unit, title = "B", "Predicted HBM bytes vs DRAM bytes measured by Nsight Compute"
    else:
        raise ValueError(f"quantity: {quantity!r}; allowed: time, bytes")
    fig = go.Figure()
    if pts:
        values = np.array([[m, p] for _, m, p, _ in pts], dtype=float)
        lo, hi = values.min() / 1.5, values.max() * 1.5
        x = np.geomspace(lo, hi, 50)
        fig.add_trace(go.Scatter(x=x, y=x, mode="lines", name="y = x", line=dict(color="black", width=1),
                                 hoverinfo="skip"))
        for sign in (+1, -1):
            fig.add_trace(go.Scatter(
                x=x, y=x * (1 + sign * _BAND), mode="lines", line=dict(color="gray", width=1, dash="dash"),
                name=f"±{100 * _BAND:.0f}%", showlegend=sign > 0, legendgroup="band", hoverinfo="skip",
            ))
    for family in [f for f in FAMILIES if any(r.family == f for r, *_ in pts)]:
        mine = [p for p in pts if p[0].family == family]
        text = [
            f"<b>{html.escape(r.family)}</b><br>{html.escape(r.config)}<br>measured {m:.4g} {unit}"
            f"<br>predicted {p:.4g} {unit}<br>error {_pct(e)}<br>bound: {html.escape(r.bound)}"
            for r, m, p, e in mine
        ]
        fig.add_trace(go.Scatter(
            x=[m for _, m, _, _ in mine], y=[p for _, _, p, _ in mine], mode="markers", name=family,
            marker=dict(size=9, color=_COLORS.get(family), symbol="circle" if mine[0][0].source == "ours" else "diamond"),
            text=text, hovertemplate="%{text}<extra></extra>",
        ))
    fig.update_xaxes(type="log", title=f"measured ({unit})")
    fig.update_yaxes(type="log", title=f"predicted ({unit})")
    fig.update_layout(title=title, template="plotly_white", width=900, height=650, legend=dict(font=dict(size=10)))
    return fig


def report_spec(results: Results, gpu: str | None = None) -> tuple[GPUSpec | None, str]:
    """The spec to draw the roofline with, and a note saying which one and why.

    ``gpu`` overrides; otherwise meta.spec (the calibrated spec the predictions used),
    then the datasheet spec it was calibrated from (the name without "-measured" /
    "-calibrated").
    """
    tried = []
    candidates = [gpu] if gpu else [results.meta.spec]
    if not gpu:
        base = results.meta.spec
        for suffix in ("-measured", "-calibrated"):
            if Path(base).stem.endswith(suffix):
                candidates.append(Path(base).stem[: -len(suffix)])
    for name in candidates:
        try:
            spec = load_gpu(name)
        except SpecError:
            tried.append(name)
            continue
        note = f"roofline of {spec.name} ({'calibrated' if spec.measured else 'datasheet'} spec)"
        if tried:
            note += f"; {', '.join(tried)} not found, fell back to the datasheet spec"
        return spec, note
    return None, f"no roofline: spec {', '.join(tried)} not found (pass --gpu NAME)"


def roofline_points(results: Results) -> list[RooflinePoint]:
    """Each record at its measured throughput (flops / measured time) and intensity.

    Intensity is flops / measured DRAM bytes where Nsight Compute measured them, else
    flops / predicted HBM bytes (said in the point's name). Each family's run with the largest
    |time error| carries a label (family, N, error) drawn on the plot: one per family, so the
    labels spread over the plot instead of piling up where one family is far off.
    """
    points, errors = [], []
    for r in results.records:
        dram = r.measured.dram_bytes
        bytes_moved = dram if dram else r.predicted.hbm_bytes
        if not (r.flops > 0 and bytes_moved > 0):
            continue
        error = relative_error(r.predicted.time_s, r.measured.time_s)
        points.append(RooflinePoint(
            name=f"{r.family} {r.config.label()}" + ("" if dram else " (bytes predicted)"),
            flops=r.flops, hbm_bytes=bytes_moved, time_s=r.measured.time_s, bound=r.predicted.bound,
            kind="measured", group=r.family, label=f"{r.family} N={r.config.seq_len}: {_pct(error)}",
        ))
        errors.append(abs(error))
    worst = {max((i for i, p in enumerate(points) if p.group == family), key=errors.__getitem__)
             for family in dict.fromkeys(p.group for p in points)}
    return [p if i in worst else replace(p, label="") for i, p in enumerate(points)]


def _table(header: tuple[str, ...], rows: list[tuple], table_id: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.pass { color: #1a7f37; font-weight: bold; } .fail { color: #cf222e; font-weight: bold; } .nodata { color: #777; }
.meta td { text-align: left; }
.verdict { font-size: 1.2em; } details summary { cursor: pointer; }
"""


def build_report(results: Results, gpu: str | None = None) -> tuple[str, dict[str, go.Figure]]:
    """The report's HTML text and its figures by name ("time", "bytes", "roofline")."""
    rows = compare(results)
    summary = summarize(results)
    checks = targets(summary)
    figures = {"time": parity_figure(rows, "time")}
    if any(r.measured_dram_bytes for r in rows):
        figures["bytes"] = parity_figure(rows, "bytes")
    spec, spec_note = report_spec(results, gpu)
    if spec is not None:
        points = roofline_points(results)
        ai = [p.intensity for p in points] or [1.0]
        lo, hi = min(1e-2, min(ai) / 3), max(1e4, max(ai) * 3)
        figures["roofline"] = roofline_figure(spec, points, intensity_range=(lo, hi),
                                              title=f"Measured runs on the roofline of {spec.display_name}")

    def plot(name: str, first: bool) -> str:
        return figures[name].to_html(full_html=False, include_plotlyjs=first, div_id=f"fig-{name}")

    m = results.meta
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>ioaware validation: {html.escape(m.gpu)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Predicted vs measured: {html.escape(m.gpu)}</h1>",
        _targets_section(checks),
        _errors_section(summary, rows),
        f'<section id="time"><h2>Time</h2>{plot("time", True)}</section>',
    ]
    if "bytes" in figures:
        parts.append(f'<section id="bytes"><h2>DRAM bytes</h2>{plot("bytes", False)}</section>')
    else:
        parts.append('<section id="bytes"><h2>DRAM bytes</h2><p>No run has Nsight Compute byte counts '
                     "(run <code>ioaware validate --ncu</code>).</p></section>")
    parts.append(f'<section id="roofline"><h2>Roofline</h2><p>{html.escape(spec_note)}. Each run sits at its measured '
                 "throughput (FLOPs / measured time) and its intensity over measured DRAM bytes, or predicted HBM "
                 f"bytes where none were measured. Each family's worst-predicted run is named with its time error; "
                 "hover for the others.</p>"
                 + (plot("roofline", False) if "roofline" in figures else "") + "</section>")
    parts.append(_run_section(m))
    parts.append("</body></html>")
    return "\n".join(parts), figures


def _targets_section(checks) -> str:
    """The answer first: how many targets passed, then each one."""
    judged = [c for c in checks if c.passed is not None]
    passed = sum(c.passed for c in judged)
    cls = "pass" if judged and passed == len(judged) else "fail"
    out = [f'<section id="targets"><h2>Targets</h2><p class="verdict"><span class="{cls}">{passed} of {len(judged)} '
           "targets met</span></p><ul>"]
    for name in dict.fromkeys(c.target for c in checks):
        mine = [c for c in checks if c.target == name]
        for c in sorted((c for c in mine if c.passed is not None), key=lambda c: c.passed):
            verdict, cls = ("PASS", "pass") if c.passed else ("FAIL", "fail")
            out.append(f'<li><span class="{cls}">{verdict}</span> {html.escape(name)}: {html.escape(c.family)} '
                       f"{_abs_pct(c.value)} (limit {_abs_pct(c.threshold)})</li>")
        missing = [c.family for c in mine if c.passed is None]
        if missing:
            out.append(f'<li><span class="nodata">no data</span> {html.escape(name)}: '
                       f"{html.escape(', '.join(missing))}</li>")
    out.append("</ul></section>")
    return "".join(out)


def _errors_section(summary, rows) -> str:
    return ('<section id="errors"><h2>Errors by family</h2>'
            "<p>Relative error = (predicted − measured) / measured. Time: CUDA events around one call, "
            "host-side launch work included; GPU time: Nsight Compute's kernel durations against the "
            "predicted kernels less their launch cost.</p>"
            + _table(
                ("family", "source", "n", "median |time err|", "worst |time err|", "n bytes", "median |bytes err|",
                 "worst |bytes err|", "n GPU time", "median |GPU time err|", "worst |GPU time err|"),
                [(s.family, s.source, s.n, _abs_pct(s.median_abs_time_error), _abs_pct(s.worst_abs_time_error),
                  s.n_bytes, _abs_pct(s.median_abs_bytes_error), _abs_pct(s.worst_abs_bytes_error), s.n_gpu_time,
                  _abs_pct(s.median_abs_gpu_time_error), _abs_pct(s.worst_abs_gpu_time_error))
                 for s in summary.values()],
                "error-table")
            + f"<details><summary>Every run ({len(rows)})</summary>" + _table(
                ("family", "config", "measured", "predicted", "time err", "GPU time", "predicted GPU time",
                 "GPU time err", "DRAM bytes", "predicted HBM bytes", "bytes err", "bound"),
                [(r.family, r.config, f"{r.measured_time_s * 1e3:.4g} ms", f"{r.predicted_time_s * 1e3:.4g} ms",
                  _pct(r.time_error), _ms(r.measured_gpu_time_s), _ms(r.predicted_gpu_time_s), _pct(r.gpu_time_error),
                  "n/a" if r.measured_dram_bytes is None else f"{r.measured_dram_bytes:.4g}",
                  f"{r.predicted_hbm_bytes:.4g}", _pct(r.bytes_error), r.bound) for r in rows],
                "record-table")
            + "</details></section>")


def skipped_by_reason(skipped: list[str]) -> dict[str, list[str]]:
    """Skipped configurations ("<config>: <reason>") grouped by reason, most common first."""
    groups: dict[str, list[str]] = {}
    for entry in dict.fromkeys(skipped):
        config, _, reason = entry.partition(": ")
        groups.setdefault(reason or "no reason recorded", []).append(config)
    return dict(sorted(groups.items(), key=lambda kv: -len(kv[1])))


def _run_section(m) -> str:
    """What ran where: the meta table, the notes once each, the skips counted by reason (lists folded)."""
    meta_rows = [("GPU", m.gpu), ("spec used for predictions", m.spec), ("date", str(m.date)),
                 ("driver", m.driver), ("CUDA runtime", m.cuda_runtime), ("numba", m.numba),
                 ("numba-cuda", m.numba_cuda), ("numpy", m.numpy), ("torch", m.torch or "not installed"),
                 ("Nsight Compute bytes", "yes" if m.ncu else "no"), ("command", m.command)]
    out = ['<section id="meta"><h2>Run</h2><table class="meta">'
           + "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in meta_rows)
           + "</table>"]
    notes = list(dict.fromkeys(m.notes))
    if notes:
        out.append(f'<details id="notes"><summary>Run notes ({len(notes)})</summary><ul>'
                   + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul></details>")
    groups = skipped_by_reason(m.skipped)
    if groups:
        total = sum(len(v) for v in groups.values())
        out.append(f'<div id="skipped"><p>Skipped {total} configuration{"s" * (total != 1)}:</p><ul>')
        for reason, configs in groups.items():
            out.append(f"<li><details><summary>{len(configs)} × {html.escape(reason)}</summary><ul>"
                       + "".join(f"<li>{html.escape(c)}</li>" for c in configs) + "</ul></details></li>")
        out.append("</ul></div>")
    out.append("</section>")
    return "".join(out)


def write_report(results: Results, out: str | Path, gpu: str | None = None, png: bool = True) -> list[Path]:
    """Write the HTML page to ``out`` and, where image export works, ``<stem>-<figure>.png`` beside it."""
    out = Path(out)
    if out.suffix != ".html":
        raise ValueError(f"--out: {str(out)!r}; a path ending in .html is accepted")
    check_writable(out, "--out")
    text, figures = build_report(results, gpu)
    write_atomic(out, text, "--out")
    written = [out]
    if png:
        for name, fig in figures.items():
            path = out.with_name(f"{out.stem}-{name}.png")
            try:
                data = png_bytes(fig)
            except OutputError:  # no kaleido or no browser: the HTML stands alone
                break
            write_atomic(path, data, "--out")
            written.append(path)
    return written
