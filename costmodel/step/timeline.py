"""A predicted step drawn as a plotly Gantt of its kernels, or written as a Chrome trace.

Both come from ``costmodel.step.graph.schedule``: one bar (one trace event) per op instance on
the GPU row, and, for an eager step, the host's issue of each op on a second row, so a step
the host binds shows the GPU waiting. Open the trace in chrome://tracing or Perfetto.
"""

from __future__ import annotations

import json

from costmodel.step.graph import schedule, step_graph

_COLORS = {"gemm": "#1f77b4", "attention": "#d62728", "memory": "#2ca02c"}


def _kind(name: str) -> str:
    base = name.split(":")[-1].split(".")[0]
    if base == "attention":
        return "attention"
    if name.endswith(("dgrad", "wgrad")) or base in ("qkv", "q", "k", "v", "out_proj", "gate_up", "gate", "up",
                                                     "down", "fc", "proj", "lm_head"):
        return "gemm" if not name.endswith(("cast", "grad_cast")) else "memory"
    return "memory"


def events(result, graph_launch_s: float = 0.0, graph_per_kernel_s: float = 0.0) -> list[dict]:
    """Scheduled op instances of a scalar StepResult (see ``graph.schedule``)."""
    g = step_graph(result)
    out = schedule(g, result.launch, graph_launch_s, graph_per_kernel_s)
    for e, key in zip(out, g.graph["order"]):
        e["kind"] = _kind(g.nodes[key]["name"])
        e["host_s"] = g.nodes[key]["host_s"]
    return out


def chrome_trace(result) -> str:
    """Chrome trace JSON (``traceEvents``, complete events, microseconds): GPU on tid 1, host on tid 0."""
    evs = []
    for e in events(result):
        args = {"kernels": e["kernels"], "bound": e["bound"], "part": e["part"], "layer": e["layer"]}
        evs.append({"name": e["node"], "cat": e["kind"], "ph": "X", "pid": 0, "tid": 1,
                    "ts": e["start_s"] * 1e6, "dur": (e["end_s"] - e["start_s"]) * 1e6, "args": args})
        if result.launch == "eager":
            evs.append({"name": e["node"], "cat": "host", "ph": "X", "pid": 0, "tid": 0,
                        "ts": (e["issue_s"] - e["host_s"]) * 1e6, "dur": e["host_s"] * 1e6, "args": {}})
    meta = [{"name": "thread_name", "ph": "M", "pid": 0, "tid": 1, "args": {"name": "GPU (predicted)"}},
            {"name": "thread_name", "ph": "M", "pid": 0, "tid": 0, "args": {"name": "host issue (eager)"}}]
    return json.dumps({"traceEvents": meta + evs, "displayTimeUnit": "ms",
                       "otherData": {"model": result.model, "gpu": result.gpu, "phase": result.phase,
                                     "time_s": float(result.time_s)}})


def timeline_figure(result, max_layers: int | None = None):
    """A plotly figure: one horizontal bar per op instance, GPU row and (eager) host row.

    ``max_layers`` draws the start of the step only, up to layer ``max_layers`` (a 32-layer training step
    has thousands of bars); the title gives the whole step's time.
    """
    import plotly.graph_objects as go

    evs = events(result)
    if max_layers is not None:  # the start of the step: up to the first op of layer max_layers
        cut = next((i for i, e in enumerate(evs) if e["layer"] is not None and e["layer"] >= max_layers), len(evs))
        evs = evs[:cut]
    fig = go.Figure()
    for kind, color in _COLORS.items():
        sel = [e for e in evs if e["kind"] == kind]
        if not sel:
            continue
        fig.add_trace(go.Bar(
            name=kind, orientation="h", y=["GPU"] * len(sel), base=[e["start_s"] * 1e3 for e in sel],
            x=[(e["end_s"] - e["start_s"]) * 1e3 for e in sel], marker_color=color,
            hovertext=[f"{e['node']}<br>{(e['end_s'] - e['start_s']) * 1e6:.1f} us, {e['kernels']} kernel(s), "
                       f"bound: {e['bound']}" for e in sel], hoverinfo="text"))
    if result.launch == "eager":
        fig.add_trace(go.Bar(
            name="host issue", orientation="h", y=["host"] * len(evs),
            base=[(e["issue_s"] - e["host_s"]) * 1e3 for e in evs], x=[e["host_s"] * 1e3 for e in evs],
            marker_color="#7f7f7f", hovertext=[e["node"] for e in evs], hoverinfo="text"))
    fig.update_layout(
        barmode="overlay", bargap=0.3, height=320, xaxis_title="time (ms)",
        title=f"{result.model} {result.phase} on {result.gpu}: {float(result.time_s) * 1e3:.2f} ms predicted "
              f"({result.launch}, {result.kernels} kernels)" + (f"; drawn: the first {max_layers} layers" if max_layers else ""))
    return fig


__all__ = ["chrome_trace", "events", "timeline_figure"]
