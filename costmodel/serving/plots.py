"""Figures of a simulated serving run: latency CDFs, and batch size and KV-cache use over time.

Plotting is an edge: these take a ``ServingResult`` and draw it (plotly, imported here only).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MAX_POINTS = 20000  # steps drawn per trace; longer timelines are thinned evenly


def _cdf(values: np.ndarray):
    v = np.sort(np.asarray(values, dtype=np.float64)[np.isfinite(values)])
    return v, (np.arange(1, v.size + 1) / max(v.size, 1))


def latency_cdf_figure(result, title: str | None = None):
    """Empirical CDFs of TTFT, TPOT and end-to-end latency (ms, log x)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=3, subplot_titles=("time to first token", "time per output token",
                                                        "end-to-end latency"))
    for col, key in enumerate(("ttft_s", "tpot_s", "e2e_s"), start=1):
        x, y = _cdf(result.requests[key])
        step = max(1, x.size // MAX_POINTS)
        fig.add_trace(go.Scatter(x=x[::step] * 1e3, y=y[::step], mode="lines", name=key.replace("_s", ""),
                                 showlegend=False), row=1, col=col)
        fig.update_xaxes(title_text="ms", type="log", row=1, col=col)
    fig.update_yaxes(title_text="fraction of requests", row=1, col=1)
    c = result.config
    fig.update_layout(title=title or f"{c['model']} on {c['gpu']} x{c['tensor_parallel']}, {c['scheduler']}: "
                      f"{c['workload']}", height=420)
    return fig


def timeline_figure(result, title: str | None = None):
    """Requests per step, new tokens per step and KV blocks in use, against simulated time."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    tl = result.timeline
    t = np.frombuffer(tl.start_s, dtype=np.float64)
    step = max(1, t.size // MAX_POINTS)
    blocks = result.capacity["num_blocks"]
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=("requests in the batch", "new tokens in the batch", "KV cache in use"))
    rows = ((np.frombuffer(tl.batch, dtype=np.int64), "requests", 1, 1.0),
            (np.frombuffer(tl.tokens, dtype=np.int64), "tokens", 2, 1.0),
            (np.frombuffer(tl.used_blocks, dtype=np.int64), "KV share", 3, 1.0 / blocks))
    for values, name, row, scale in rows:
        fig.add_trace(go.Scattergl(x=t[::step], y=values[::step] * scale, mode="lines", name=name,
                                   line_shape="hv", showlegend=False), row=row, col=1)
    fig.update_yaxes(tickformat=".0%", row=3, col=1)
    fig.update_xaxes(title_text="simulated time (s)", row=3, col=1)
    c = result.config
    fig.update_layout(title=title or f"{c['model']} on {c['gpu']} x{c['tensor_parallel']}, {c['scheduler']}",
                      height=700)
    return fig


def save_run_figures(result, path_stem: str | Path) -> list[Path]:
    """Write ``STEM-latency.html`` and ``STEM-timeline.html`` (self-contained, ``costmodel.plots``)."""
    from costmodel.plots import save_figure

    stem = Path(path_stem)
    stem = stem.with_suffix("") if stem.suffix == ".html" else stem
    out = []
    for suffix, fig in (("latency", latency_cdf_figure(result)), ("timeline", timeline_figure(result))):
        out += save_figure(fig, stem.parent / f"{stem.name}-{suffix}.html", png=False)
    return out


__all__ = ["latency_cdf_figure", "save_run_figures", "timeline_figure"]
