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
    intensity, throughput, bound and time.
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
            x=[p.intensity for p in pts], y=[p.flops_per_s for p in pts], mode="markers", name=group,
            marker=dict(size=9, symbol="circle" if pts[0].kind == "predicted" else "diamond"),
            text=text, hovertemplate="%{text}<extra></extra>",
        ))
    fig.update_xaxes(type="log", title="arithmetic intensity (FLOP per HBM byte)")
    fig.update_yaxes(type="log", title="throughput (FLOP/s)", exponentformat="SI")
    fig.update_layout(title=title or f"Roofline: {spec.display_name}", template="plotly_white",
                      legend=dict(font=dict(size=10)), width=1000, height=650)
    return fig


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
