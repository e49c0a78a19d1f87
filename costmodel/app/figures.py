"""The app's figures, drawn from ``views.evaluate``'s values (plotly only; no Dash, no computing).

One function per view: the per-op breakdown (bar or treemap), the step timeline, memory
stacked against the GPU's capacity, ops and attention kernels on the hierarchical roofline,
and attention's bytes per memory level for standard, FlashAttention-2 and the chosen kernel.
"""

from __future__ import annotations

import plotly.graph_objects as go

from costmodel.plots import RooflinePoint, label_few, roofline_figure
from hardware_specs import GPUSpec

_PART_COLORS = {"fwd": "#1f77b4", "bwd": "#ff7f0e", "optimizer": "#2ca02c"}
_OP_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf")
_LAYOUT = dict(template="plotly_white", margin=dict(l=60, r=20, t=40, b=50), height=380,
               legend=dict(font=dict(size=10)), title_font=dict(size=13), title_x=0.01)


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.4g} ms"


TOP_OPS = 14  # the bar chart names this many ops per part; the rest are one "other" bar


def ops_figure(view: dict, style: str = "bar") -> go.Figure:
    """GPU time per op over the whole step (rows are summed over layers), by part; "bar" or "treemap"."""
    rows: dict[tuple[str, str], float] = {}
    for op in view["ops"]:
        key = (op["part"], op["name"])
        rows[key] = rows.get(key, 0.0) + op["time_s"]
    total = sum(rows.values()) or 1.0
    parts = list(dict.fromkeys(p for p, _ in rows))
    if style == "treemap":
        ids = parts + [f"{p}/{n}" for p, n in rows]
        fig = go.Figure(go.Treemap(
            ids=ids, labels=parts + [n for _, n in rows], parents=[""] * len(parts) + [p for p, _ in rows],
            values=[1e3 * sum(v for (p2, _), v in rows.items() if p2 == p) for p in parts] + [v * 1e3 for v in rows.values()],
            branchvalues="total", texttemplate="%{label}<br>%{value:.3g} ms<br>%{percentRoot:.1%}",
            hovertemplate="%{id}: %{value:.4g} ms<extra></extra>"))
        height = _LAYOUT["height"]
    elif style == "bar":
        fig = go.Figure()
        n_bars = 0
        for part in parts:
            mine = sorted(((n, v) for (p, n), v in rows.items() if p == part), key=lambda nv: -nv[1])
            if len(mine) > TOP_OPS + 1:
                rest = mine[TOP_OPS:]
                mine = mine[:TOP_OPS] + [(f"{part}: {len(rest)} other ops", sum(v for _, v in rest))]
            n_bars += len(mine)
            fig.add_trace(go.Bar(
                y=[n for n, _ in mine], x=[v * 1e3 for _, v in mine], orientation="h", name=part,
                marker_color=_PART_COLORS.get(part), text=[f"{v / total:.1%}" for _, v in mine], textposition="auto",
                hovertemplate="%{y}: %{x:.4g} ms<extra>" + part + "</extra>"))
        fig.update_layout(yaxis=dict(autorange="reversed", automargin=True), xaxis_title="GPU time in the step (ms)")
        height = max(_LAYOUT["height"], 90 + 17 * n_bars)
    else:
        raise ValueError(f"style: {style!r}; allowed: bar, treemap")
    fig.update_layout(title=f"{_ms(total)} of GPU time, per op (summed over layers)", **{**_LAYOUT, "height": height})
    return fig


_KIND_COLORS = {"matmul": "#1f77b4", "attention": "#d62728", "memory-bound": "#bcbd22"}
_PART_SHADES = {"fwd": "rgba(31,119,180,0.06)", "bwd": "rgba(255,127,14,0.08)", "optimizer": "rgba(44,160,44,0.10)"}


def timeline_figure(view: dict) -> go.Figure:
    """The step's kernels end to end: a row per kind of op, the parts (fwd, bwd, optimizer) shaded."""
    fig = go.Figure()
    segs_all = view["timeline"]
    for kind, color in _KIND_COLORS.items():
        segs = [s for s in segs_all if s["kind"] == kind]
        if not segs:
            continue
        fig.add_trace(go.Bar(
            base=[s["start_s"] * 1e3 for s in segs], x=[(s["end_s"] - s["start_s"]) * 1e3 for s in segs],
            y=[kind] * len(segs), orientation="h", name=kind, marker=dict(color=color, line=dict(width=0)),
            customdata=[[s["name"], s["part"], "-" if s["layer"] is None else s["layer"], s["start_s"] * 1e3]
                        for s in segs],
            hovertemplate="%{customdata[0]} (%{customdata[1]}, layer %{customdata[2]}): starts %{customdata[3]:.4g} ms, "
                          "takes %{x:.4g} ms<extra></extra>"))
    for part in dict.fromkeys(s["part"] for s in segs_all):
        mine = [s for s in segs_all if s["part"] == part]
        fig.add_vrect(x0=mine[0]["start_s"] * 1e3, x1=mine[-1]["end_s"] * 1e3, fillcolor=_PART_SHADES.get(part),
                      line_width=0, layer="below", annotation_text=part, annotation_position="top left")
    s = view["summary"]
    fig.update_layout(barmode="overlay", bargap=0.3, xaxis_title="GPU time (ms)", showlegend=False,
                      title=f"{_ms(s['gpu_time_s'])} of kernels; step {_ms(s['time_s'])} with {s['launch']} launches",
                      **{**_LAYOUT, "height": 260})
    fig.update_yaxes(categoryorder="array", categoryarray=list(_KIND_COLORS)[::-1])
    return fig


def memory_figure(view: dict) -> go.Figure:
    """Memory per term stacked in one horizontal bar, against the GPU's capacity line."""
    mem = view["memory"]
    fig = go.Figure()
    for i, (term, value) in enumerate(mem["terms_bytes"].items()):
        if value <= 0:
            continue
        fig.add_trace(go.Bar(y=["per GPU"], x=[value / 1e9], name=f"{term} {value / 1e9:.3g} GB", orientation="h",
                             marker_color=_OP_PALETTE[i % len(_OP_PALETTE)],
                             hovertemplate=term + ": %{x:.4g} GB<extra></extra>"))
    cap = mem["capacity_bytes"] / 1e9
    fig.add_vline(x=cap, line=dict(color="#cf222e", dash="dash", width=2),
                  annotation_text=f"capacity {cap:.3g} GB", annotation_position="top left")
    verdict = "fits" if mem["total_bytes"] <= mem["capacity_bytes"] else "does NOT fit"
    fig.update_layout(barmode="stack", title=f"{mem['total_bytes'] / 1e9:.3g} GB per GPU: {verdict}",
                      xaxis_title="GB", xaxis_range=[0, 1.08 * max(cap, mem["total_bytes"] / 1e9)],
                      **{**_LAYOUT, "height": 260, "legend": dict(orientation="h", y=-0.35, font=dict(size=11))})
    return fig


def roofline_view_figure(view: dict, spec: GPUSpec) -> go.Figure:
    """Ops (labelled) and attention kernels (hover) on the GPU's hierarchical roofline."""
    pts = [RooflinePoint(name=p["name"], flops=p["flops"], hbm_bytes=p["hbm_bytes"], time_s=p["time_s"],
                         bound=p["bound"], group=p["group"]) for p in view["roofline"]["points"]]
    ops = label_few([p for p in pts if p.group == "model ops"], n=8)
    kernels = [p for p in pts if p.group != "model ops"]
    ai = [p.intensity for p in pts] or [1.0]
    fig = roofline_figure(spec, ops + kernels, intensity_range=(min(1e-1, min(ai) / 3), max(1e4, max(ai) * 3)),
                          title=f"Ops (the 8 slowest named) and attention kernels on {spec.display_name}")
    fig.update_layout(width=None, height=500, margin=dict(l=60, r=20, t=40, b=50), title_font=dict(size=13),
                      title_x=0.01)
    return fig


def attention_figure(view: dict) -> go.Figure:
    """Bytes per memory level of one layer's attention, one bar group per implementation."""
    levels = (("global_bytes", "global (requested)"), ("l2_bytes", "L2"), ("hbm_bytes", "DRAM (HBM)"),
              ("smem_bytes", "shared memory"))
    fig = go.Figure()
    for row in view["attention"]["rows"]:
        fig.add_trace(go.Bar(
            x=[label for _, label in levels], y=[row[key] / 1e6 for key, _ in levels], name=row["label"],
            text=[f"{row[key] / 1e6:,.0f}" if row[key] >= 1e8 else f"{row[key] / 1e6:.3g}" for key, _ in levels],
            textposition="outside", textfont=dict(size=9),
            hovertemplate=row["label"] + " %{x}: %{y:.4g} MB<extra></extra>"))
    call = view["attention"]["call"]
    fig.update_layout(barmode="group", yaxis_type="log", yaxis_title="MB per layer",
                      title=(f"One layer's attention ({call['pass_']}): B={call['batch']} H={call['heads']} "
                             f"N={call['seq_len']} L={call['kv_len']} d={call['head_dim']}"),
                      **{**_LAYOUT, "legend": dict(orientation="h", y=-0.12, font=dict(size=11))})
    return fig


def serving_figure(view: dict) -> go.Figure:
    """Latency percentiles of the simulated requests (ms, log scale): TTFT, TPOT, end to end."""
    fig = go.Figure()
    serving = view.get("serving")
    if not serving:
        fig.add_annotation(text="choose the serving phase",
                           showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font=dict(size=13))
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
        fig.update_layout(**{**_LAYOUT, "height": 200})
        return fig
    names = {"ttft_s": "time to first token", "tpot_s": "time per output token", "e2e_s": "end to end",
             "queue_s": "queueing"}
    for i, (key, pct) in enumerate(serving["latency_s"].items()):
        levels = [k for k in ("p50", "p90", "p99") if k in pct]
        fig.add_trace(go.Bar(x=levels, y=[pct[k] * 1e3 for k in levels], name=names.get(key, key),
                             marker_color=_OP_PALETTE[i % len(_OP_PALETTE)],
                             text=[f"{pct[k] * 1e3:,.0f}" if pct[k] >= 1 else f"{pct[k] * 1e3:.3g}" for k in levels],
                             textposition="outside", textfont=dict(size=9),
                             hovertemplate=names.get(key, key) + " %{x}: %{y:.4g} ms<extra></extra>"))
    m = serving["metrics"]
    fig.update_layout(barmode="group", yaxis_type="log", yaxis_title="ms",
                      title=(f"{serving['requests']} requests: {m['requests_per_s']:.3g} req/s served, "
                             f"{m['output_tokens_per_s']:,.0f} output tokens/s"), **_LAYOUT)
    return fig


def parallel_figure(view: dict) -> go.Figure:
    """One multi-GPU step's latency split into compute, TP all-reduces and PP sends (ms)."""
    fig = go.Figure()
    par = view.get("parallel")
    if not par or "breakdown_s" not in par:
        text = (par or {}).get("note") or "choose tensor or pipeline parallel > 1"
        fig.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font=dict(size=12))
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
        fig.update_layout(**{**_LAYOUT, "height": 200})
        return fig
    names = {"compute_s": "compute", "tp_comm_s": "TP all-reduces", "pp_comm_s": "PP sends"}
    for i, (key, label) in enumerate(names.items()):
        value = par["breakdown_s"].get(key, 0.0)
        fig.add_trace(go.Bar(y=["latency"], x=[value * 1e3], name=f"{label} {_ms(value)}", orientation="h",
                             marker_color=_OP_PALETTE[i], hovertemplate=label + ": %{x:.4g} ms<extra></extra>"))
    fig.update_layout(barmode="stack", xaxis_title="ms",
                      title=(f"TP {par['tp']} x PP {par['pp']} on {par['cluster']}: {_ms(par['time_s'])} per step, "
                             f"{par['tokens_per_s']:,.0f} tokens/s with the pipeline full"),
                      **{**_LAYOUT, "height": 230, "legend": dict(orientation="h", y=-0.45, font=dict(size=11))})
    return fig
