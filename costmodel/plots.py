"""Figures: the hierarchical roofline of a GPU with work placed on it, and saving figures.

Plotting is an edge: these functions take values computed elsewhere and only draw them.
HTML is always written (self-contained, viewable offline); PNG only where plotly's image
export works on this machine (it needs kaleido and a browser), and its absence is reported,
not raised.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from costmodel.outputs import OutputError, check_writable, write_atomic
from hardware_specs.roofline import attainable_flops_per_s
from hardware_specs.schema import GPUSpec, MEMORY_LEVELS

_LEVEL_NAMES = {"hbm": "HBM", "l2": "L2", "smem": "shared memory"}
_UNIT_NAMES = {
    "fp64": "FP64", "fp64_tensor": "FP64 tensor", "fp32": "FP32 SIMT", "fp16": "FP16 SIMT", "bf16": "BF16 SIMT",
    "tf32_tensor": "TF32 tensor", "fp16_tensor": "FP16 tensor", "bf16_tensor": "BF16 tensor",
    "fp8_tensor": "FP8 tensor", "int8_tensor": "INT8 tensor",
}


@dataclass(frozen=True)
class RooflinePoint:
    """A piece of work placed on the roofline.

    ``flops / hbm_bytes`` is its HBM intensity and ``flops / time_s`` its throughput
    (predicted or measured, as ``kind`` says); ``bound`` the binding resource, if known.
    """

    name: str
    flops: float
    hbm_bytes: float
    time_s: float
    bound: str = ""
    kind: str = "predicted"
    group: str = ""
    label: str = ""  # short text drawn beside the point (empty: hover only)

    @property
    def intensity(self) -> float:
        return self.flops / self.hbm_bytes

    @property
    def flops_per_s(self) -> float:
        return self.flops / self.time_s


def roofline_figure(spec: GPUSpec, points: list[RooflinePoint] = (), units: list[str] | None = None,
                    levels: list[str] | None = None, title: str | None = None,
                    intensity_range: tuple[float, float] = (1e-2, 1e4)) -> go.Figure:
    """Log-log roofline: one roof per compute unit against one slope per memory level.

    Each memory level's line is bandwidth × intensity capped by the highest roof; each
    unit's roof is a horizontal line from its ridge point (against HBM) on. Points carry a hover text with their name,
    intensity, throughput, bound and time; those with a ``label`` also show it on the plot, as an annotation
    with an arrow (keep that to the few that matter: ``label_few`` picks them).
    """
    units = units or [u for u in ("fp32", "tf32_tensor", "fp16_tensor", "fp8_tensor") if u in spec.peak_flops_per_s]
    levels = levels or [lv for lv in MEMORY_LEVELS if spec.bandwidth_Bps(lv) is not None]
    x = np.logspace(np.log10(intensity_range[0]), np.log10(intensity_range[1]), 400)
    top = max(spec.attainable_rate(u) for u in units)
    fig = go.Figure()
    for level in levels:
        bw = spec.attainable_rate(level)
        fig.add_trace(go.Scatter(
            x=x, y=np.minimum(x * bw, top), mode="lines", line=dict(dash="dot"),
            name=f"{_LEVEL_NAMES[level]} {bw / 1e12:.2f} TB/s",
            hovertemplate=f"{_LEVEL_NAMES[level]}: %{{x:.3g}} FLOP/B → %{{y:.3g}} FLOP/s<extra></extra>",
        ))
    for unit in units:
        rate = spec.attainable_rate(unit)
        ridge = rate / spec.attainable_rate("hbm")
        # Only the flat part, from the ridge on: the slope left of it is the HBM line's, which
        # a unit's own copy of it would hide.
        xs = np.concatenate([[ridge], x[x > ridge]])
        fig.add_trace(go.Scatter(
            x=xs, y=attainable_flops_per_s(spec, xs, unit, "hbm"), mode="lines",
            name=f"{_UNIT_NAMES.get(unit, unit)} {rate / 1e12:.1f} TFLOP/s (ridge {ridge:.3g} FLOP/B)",
            hovertemplate=f"{_UNIT_NAMES.get(unit, unit)} on HBM: %{{x:.3g}} FLOP/B → %{{y:.3g}} FLOP/s<extra></extra>",
        ))
    groups: dict[str, list[RooflinePoint]] = {}
    for p in points:
        groups.setdefault(p.group or p.kind, []).append(p)
    for group, pts in groups.items():
        text = [
            f"<b>{p.name}</b><br>intensity {p.intensity:.3g} FLOP/B (HBM)<br>{p.flops_per_s / 1e12:.3g} TFLOP/s"
            f" {p.kind}<br>time {p.time_s * 1e3:.4g} ms<br>bound: {p.bound or 'n/a'}"
            for p in pts
        ]
        fig.add_trace(go.Scatter(
            x=[p.intensity for p in pts], y=[p.flops_per_s for p in pts], name=group, mode="markers",
            marker=dict(size=9, symbol="circle" if pts[0].kind == "predicted" else "diamond"),
            customdata=[[t] for t in text], hovertemplate="%{customdata[0]}<extra></extra>",
        ))
    _add_labels(fig, [p for p in points if p.label])
    fig.update_xaxes(type="log", title="arithmetic intensity (FLOP per HBM byte)")
    fig.update_yaxes(type="log", title="throughput (FLOP/s)", exponentformat="SI")
    fig.update_layout(title=title or f"Roofline: {spec.display_name}", template="plotly_white",
                      legend=dict(font=dict(size=10)), width=1000, height=650)
    return fig


# Pixel offsets of a label from its point, taken in turn (points sorted by intensity), so
# labels of nearby points sit on different sides, each joined to its point by a short arrow.
_OFFSETS = ((-50, -45), (55, 40), (-60, 45), (60, -45), (0, -70), (0, 70), (-95, 0), (95, 0))


def _add_labels(fig: go.Figure, points: list[RooflinePoint]) -> None:
    """Each labelled point's text as an annotation with an arrow (log axes take log10 positions)."""
    for k, p in enumerate(sorted(points, key=lambda p: (p.intensity, p.flops_per_s))):
        ax, ay = _OFFSETS[k % len(_OFFSETS)]
        fig.add_annotation(x=np.log10(p.intensity), y=np.log10(p.flops_per_s), text=p.label, ax=ax, ay=ay,
                           showarrow=True, arrowhead=0, arrowwidth=1, arrowcolor="#57606a",
                           font=dict(size=10), bgcolor="rgba(255,255,255,0.85)", borderpad=1)


def label_few(points: list[RooflinePoint], n: int = 6, key=None) -> list[RooflinePoint]:
    """The points with their ``label`` set (to ``name`` where empty) for the ``n`` that matter most.

    "Matter most" is the largest ``key`` (default: time, the work that costs the step the most);
    the rest keep an empty label and are read by hovering.
    """
    from dataclasses import replace

    key = key or (lambda p: p.time_s)
    chosen = set(sorted(range(len(points)), key=lambda i: key(points[i]), reverse=True)[:n])
    return [replace(p, label=p.label or p.name) if i in chosen else replace(p, label="")
            for i, p in enumerate(points)]


def save_figure(fig: go.Figure, path_stem: str | Path, png: bool = True, option: str = "--out") -> list[Path]:
    """Write ``<stem>.html`` (self-contained) and, where image export works, ``<stem>.png``.

    Returns the paths written. A path ending in .html or .png writes that format only; a .png
    asked for explicitly fails with a one-line error naming ``option`` when image export does not
    work here (plotly >= 6.1 needs kaleido >= 1 and a Chrome or Chromium). Files are written
    whole or not at all (``costmodel.outputs.write_atomic``).
    """
    path = Path(path_stem)
    written: list[Path] = []
    if path.suffix == ".png":
        check_writable(path, option)
        write_atomic(path, png_bytes(fig, option), option)
        return [path]
    html = path if path.suffix == ".html" else path.with_suffix(".html")
    write_atomic(html, fig.to_html(include_plotlyjs=True, full_html=True), option)
    written.append(html)
    if png and path.suffix != ".html":
        try:
            data = png_bytes(fig, option)
        except OutputError:  # no kaleido/browser: HTML only, as the module docstring says
            return written
        write_atomic(path.with_suffix(".png"), data, option)
        written.append(path.with_suffix(".png"))
    return written


def png_bytes(fig: go.Figure, option: str = "--out") -> bytes:
    """The figure as PNG bytes, or an ``OutputError`` saying why image export does not work here."""
    try:
        return fig.to_image(format="png")
    except Exception as exc:  # kaleido missing, too old, or no browser: plotly raises several types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise OutputError(f"{option}: PNG export does not work here ({first}); "
                          "install the 'png' extra (kaleido >= 1) and a Chrome/Chromium, or write .html") from None
