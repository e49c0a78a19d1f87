"""The page's numbers as text: time, bytes and the small tables beside the figures (Dash html only).

The browser tests format the Python API's values with these same functions and compare the page's
text with them, so what a person reads is checked digit for digit.
"""

from __future__ import annotations

from dash import html


def fmt_time(seconds: float) -> str:
    return f"{seconds * 1e3:.4g} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.4g} µs"


def fmt_bytes(n: float) -> str:
    return f"{n / 1e9:.4g} GB"


def fmt_mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB" if n >= 1e8 else f"{n / 1e6:.4g} MB"


def attention_table(views) -> html.Table:
    head = ("kernel", "global (requested)", "L2", "DRAM", "shared mem.", "time", "bound")
    rows = [html.Tr([html.Td(r["label"]), *(html.Td(fmt_mb(r[k])) for k in
                     ("global_bytes", "l2_bytes", "hbm_bytes", "smem_bytes")),
                     html.Td(fmt_time(r["time_s"])), html.Td(r["bound"])], id=f"attention-row-{r['label']}")
            for r in views["attention"]["rows"]]
    return html.Table([html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(rows)], id="attention-rows")


def serving_table(views):
    """The serving run's headline numbers, or nothing outside the serving phase."""
    serving = views.get("serving")
    if not serving:
        return ""
    m, lat = serving["metrics"], serving["latency_s"]
    rows = [("time to first token, p50 / p90", f"{fmt_time(lat['ttft_s']['p50'])} / {fmt_time(lat['ttft_s']['p90'])}"),
            ("time per output token, p50 / p90",
             f"{fmt_time(lat['tpot_s']['p50'])} / {fmt_time(lat['tpot_s']['p90'])}"),
            ("requests per second served", f"{m['requests_per_s']:.4g}"),
            ("output tokens per second", f"{m['output_tokens_per_s']:,.0f}"),
            ("mean batch (requests per iteration)", f"{m['mean_batch']:.3g}"),
            ("KV cache in use, peak", f"{m['kv_utilization_peak']:.1%}"),
            ("preemptions", f"{m['preemptions']}")]
    return html.Table(html.Tbody([html.Tr([html.Td(k), html.Td(v)], id=f"serving-row-{i}")
                                  for i, (k, v) in enumerate(rows)]), id="serving-rows")


def parallel_table(views):
    """The multi-GPU step's numbers, or nothing without TP x PP > 1 (or without costmodel.parallel)."""
    par = views.get("parallel")
    if not par or "time_s" not in par:
        return ""
    rows = [("GPUs (TP x PP)", f"{par['gpus']} ({par['tp']} x {par['pp']}) on {par['cluster']}"),
            ("step latency, through all stages", fmt_time(par["time_s"])),
            ("tokens per second, pipeline full", f"{par['tokens_per_s']:,.0f}"),
            ("memory per GPU", fmt_bytes(par["memory_bytes"]))]
    return html.Table(html.Tbody([html.Tr([html.Td(k), html.Td(v)], id=f"parallel-row-{i}")
                                  for i, (k, v) in enumerate(rows)]), id="parallel-rows")
