"""The search's figure: time per iteration against memory per GPU, one point per fitting layout, and
the Pareto front (no other layout is both faster and smaller). Plotting is an edge: values in, figure out."""

from __future__ import annotations

import numpy as np

from costmodel.parallel.search import RECOMPUTE, pareto_front


def search_figure(result: dict, memory_limit_bytes: float | None = None):
    import plotly.graph_objects as go

    t = result["table"]
    idx = result["order"]
    fig = go.Figure()
    text = [f"TP {t['tp'][i]} PP {t['pp'][i]} DP {t['dp'][i]} b {t['micro_batch'][i]} v {t['virtual_stages'][i]}"
            f" SP {'on' if t['sequence_parallel'][i] else 'off'} rc {RECOMPUTE[int(t['recompute'][i])]}"
            f" ZeRO {t['zero_stage'][i]} ({t['gpus'][i]} GPUs)" for i in idx]
    for tp in np.unique(t["tp"][idx]) if len(idx) else []:
        sel = [k for k, i in enumerate(idx) if t["tp"][i] == tp]
        fig.add_trace(go.Scattergl(x=t["memory_bytes"][idx[sel]] / 1e9, y=t["time_s"][idx[sel]], mode="markers",
                                   name=f"TP {tp}", text=[text[k] for k in sel], marker=dict(size=5, opacity=0.6),
                                   hovertemplate="%{text}<br>%{x:.1f} GB, %{y:.3f} s<extra></extra>"))
    if len(idx):
        front = idx[pareto_front(t["time_s"][idx], t["memory_bytes"][idx])]
        fig.add_trace(go.Scatter(x=t["memory_bytes"][front] / 1e9, y=t["time_s"][front], mode="lines+markers",
                                 name="Pareto front", line=dict(color="black", width=2, shape="hv"),
                                 marker=dict(size=7, color="black")))
    if memory_limit_bytes:
        fig.add_vline(x=memory_limit_bytes / 1e9, line_dash="dash", annotation_text="memory limit")
    fig.update_xaxes(title="memory per GPU (GB)")
    fig.update_yaxes(title="time per iteration (s)", type="log")
    fig.update_layout(title=f"{result['model']} on {result['cluster']}: {result['fitting']} of {result['count']} "
                            f"layouts fit (global batch {result['global_batch']} x {result['seq_len']} tokens)",
                      template="plotly_white", width=1000, height=650)
    return fig


__all__ = ["search_figure"]
