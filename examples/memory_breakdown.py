"""Where do a model's parameters sit, and what does training it hold in memory?

Questions:
1. For every bundled preset, how are the parameters split between embeddings, attention,
   MLP, norms and the output projection (costmodel.params, counted tensor by tensor)?
2. For a few presets, how much memory does training take per GPU (mixed-precision Adam,
   no parallelism: weights 2, gradients 2, optimizer 12 bytes per parameter, ZeRO §3.1;
   activations of one micro-batch, Korthikanti et al. 2022), with and without
   FlashAttention and with no, selective or full activation recomputation?
   FlashAttention keeps what selective recomputation keeps (costmodel.training_memory's
   docstring), so "FlashAttention" and "selective" give the same bars, and full
   recomputation keeps only each layer's input whatever the attention kernel.

Writes (into --out, default out/examples/memory_breakdown):
    params_per_component.html / .png   stacked bars, share of parameters per component
    training_memory.html / .png        stacked bars (GB) per preset and setting, H100 80 GB marked
    data.json                          the numbers printed

Runs in seconds on a CPU: python examples/memory_breakdown.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from costmodel.models import list_models, load_model
from costmodel.params import count_params
from costmodel.plots import save_figure
from costmodel.training_memory import training_memory
from hardware_specs import load_gpu

COMPONENTS = ("embeddings", "attention", "mlp", "norms", "lm_head")
# preset -> (micro-batch, sequence length, dropout): GPT-2 trained with dropout, Llama without.
TRAINING = {"gpt2-xl": (8, 1024, True), "llama2-7b": (1, 4096, False), "llama3-8b": (1, 8192, False)}
SETTINGS = [(fa, rc) for fa in (False, True) for rc in ("none", "selective", "full")]
STATES = ("weights_bytes", "gradients_bytes", "optimizer_bytes", "activations_bytes")
GPU = "h100-sxm5-80gb"


def param_rows() -> dict:
    rows = {}
    for name in sorted(list_models(), key=lambda n: count_params(load_model(n)).total):
        p = count_params(load_model(name))
        rows[name] = {c: int(getattr(p, c)) for c in COMPONENTS} | {"total": int(p.total)}
    return rows


def training_rows() -> dict:
    rows = {}
    for name, (batch, seq, dropout) in TRAINING.items():
        cfg = load_model(name)
        for fa, rc in SETTINGS:
            m = training_memory(cfg, batch, seq, recompute=rc, flash_attention=fa, dropout=dropout)
            rows[f"{name}|{_setting(fa, rc)}"] = {k: float(getattr(m, k)) for k in STATES} | {
                "total_bytes": float(m.total_bytes), "batch": batch, "seq_len": seq}
    return rows


def _setting(fa: bool, rc: str) -> str:
    return ("FlashAttention" if fa else "standard attn") + f", recompute {rc}"


def _count(n: float) -> str:
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


def params_figure(rows: dict) -> go.Figure:
    fig = go.Figure()
    x = [f"{name}<br>{_count(r['total'])}" for name, r in rows.items()]
    for c in COMPONENTS:
        fig.add_bar(x=x, y=[r[c] for r in rows.values()], name=c.replace("_", " "),
                    customdata=[_count(r[c]) for r in rows.values()],
                    hovertemplate=f"{c}: %{{customdata}} (%{{y:.3s}})<extra></extra>")
    fig.update_layout(barmode="stack", barnorm="percent", template="plotly_white", width=1200, height=550,
                      title="Parameters per component, share of each preset's total (presets sorted by size)",
                      yaxis_title="% of parameters", legend=dict(traceorder="normal"))
    return fig


def training_figure(rows: dict) -> go.Figure:
    models = list(TRAINING)
    fig = make_subplots(rows=1, cols=len(models), shared_yaxes=True, horizontal_spacing=0.03,
                        subplot_titles=[f"{m} (batch {TRAINING[m][0]}, seq {TRAINING[m][1]})" for m in models])
    colours = {"weights_bytes": "#1f77b4", "gradients_bytes": "#ff7f0e", "optimizer_bytes": "#2ca02c",
               "activations_bytes": "#d62728"}
    for col, model in enumerate(models, start=1):
        settings = [_setting(fa, rc) for fa, rc in SETTINGS]
        x = [("FlashAttn" if fa else "standard") + f"<br>{rc}" for fa, rc in SETTINGS]
        for k in STATES:
            fig.add_bar(x=x, y=[rows[f"{model}|{s}"][k] / 1e9 for s in settings], name=k.removesuffix("_bytes"),
                        marker_color=colours[k], legendgroup=k, showlegend=col == 1, row=1, col=col,
                        customdata=settings,
                        hovertemplate=f"%{{customdata}}<br>{k.removesuffix('_bytes')}: %{{y:.1f}} GB<extra></extra>")
    spec = load_gpu(GPU)
    fig.add_hline(y=spec.hbm_bytes / 1e9, line=dict(dash="dash", color="black"))
    fig.add_scatter(x=[None], y=[None], mode="lines", line=dict(dash="dash", color="black"), row=1, col=1,
                    name=f"{spec.display_name}: {spec.hbm_bytes / 2**30:.0f} GiB = {spec.hbm_bytes / 1e9:.1f} GB")
    fig.update_xaxes(tickangle=0, title_text="attention kernel / recomputation")
    fig.update_yaxes(title_text="GB per GPU (no parallelism)", col=1)
    fig.update_layout(barmode="stack", template="plotly_white", width=1300, height=600,
                      legend=dict(orientation="h", x=0, y=-0.22),
                      title="Training memory: mixed-precision Adam states + activations of one micro-batch")
    return fig


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out/examples/memory_breakdown")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    params, training = param_rows(), training_rows()
    print(f"{'preset':16s}{'total':>9s}" + "".join(f"{c:>12s}" for c in COMPONENTS))
    for name, r in params.items():
        print(f"{name:16s}{_count(r['total']):>9s}" + "".join(f"{r[c] / r['total']:12.2%}" for c in COMPONENTS))
    print()
    print(f"{'training memory, GB':50s}{'weights':>9s}{'grads':>9s}{'optim':>9s}{'activ':>9s}{'total':>9s}")
    for key, r in training.items():
        model, setting = key.split("|")
        print(f"{model + ', ' + setting:50s}" + "".join(f"{r[k] / 1e9:9.1f}" for k in STATES)
              + f"{r['total_bytes'] / 1e9:9.1f}")
    (out / "data.json").write_text(json.dumps({"params": params, "training": training}, indent=2))
    written = save_figure(params_figure(params), out / "params_per_component")
    written += save_figure(training_figure(training), out / "training_memory")
    print("wrote", out / "data.json", *written)


if __name__ == "__main__":
    main()
