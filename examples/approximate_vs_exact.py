"""Do Linformer, Performer and Reformer beat exact attention on a GPU, and from which length on?

Question: the seed lecture's Module 3 approximations cut attention's FLOPs from O(N^2 d) to
O(N k d) (Linformer), O(N m d) (Performer, FAVOR+) and O(N log N) + O(N m d) (Reformer, LSH);
its Module 4 warns that fewer FLOPs is not less wall-clock. For the FlashAttention-2 paper's
benchmark shapes (hidden 2048, 16k tokens a batch, bf16), this prints and plots, against N
(1k to 64k), the FLOPs and the time of exact attention (eager standard attention, SDPA's
FlashAttention-2 and cuDNN backends) and of the three approximations as plain PyTorch runs them
(costmodel/validation/approx_torch.py), measured on an H200 (costmodel/validation/results/h200/approx-h200.json, made by
``python3 -m costmodel.validation.approx_bench``) beside the model's prediction, and the crossover: the
shortest N from which each approximation stays faster than the best exact kernel, measured and
predicted on the H200, predicted on an A100 and an H100.

Writes (into --out, default out/examples/approximate_vs_exact):
    time_vs_n.html / .png     measured (markers) and predicted (lines) time against N, d = 64
    flops_vs_n.html / .png    FLOPs against N, d = 64
    data.json                 every row, the errors and the crossovers

Runs in seconds on a CPU: python examples/approximate_vs_exact.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from costmodel.validation import approx_compare as ac
from costmodel.plots import save_figure
from hardware_specs import load_gpu

RESULTS = ac.RESULTS  # the committed H200 measurements (costmodel/validation/results/h200/)
H200 = "h200-sxm-141gb-measured"
OTHERS = ("a100-sxm4-80gb", "h100-sxm5-80gb")
COLORS = {"exact-eager": "#7f7f7f", "torch-flash": "#1f77b4", "torch-cudnn": "#17becf", "linformer": "#2ca02c",
          "performer": "#d62728", "reformer": "#9467bd"}


def figure(table: list[dict], y: str, title: str, d: int = 64) -> go.Figure:
    fig = make_subplots(rows=1, cols=2, subplot_titles=("bidirectional", "causal"), shared_yaxes=True)
    for col, causal in ((1, False), (2, True)):
        for method, color in COLORS.items():
            pts = sorted((r for r in table if r["method"] == method and r["causal"] == causal
                          and r["head_dim"] == d), key=lambda r: r["seq_len"])
            if not pts:
                continue
            ns = [r["seq_len"] for r in pts]
            if y == "time":
                fig.add_scatter(x=ns, y=[r["predicted_eager_s"] * 1e3 for r in pts], mode="lines", row=1, col=col,
                                line={"color": color}, name=f"{method} predicted", legendgroup=method,
                                showlegend=col == 1)
                fig.add_scatter(x=ns, y=[r["measured_eager_s"] * 1e3 for r in pts], mode="markers", row=1, col=col,
                                marker={"color": color}, name=f"{method} measured", legendgroup=method,
                                showlegend=col == 1)
            else:
                fig.add_scatter(x=ns, y=[r["flops"] for r in pts], mode="lines+markers", row=1, col=col,
                                line={"color": color}, name=method, legendgroup=method, showlegend=col == 1)
    fig.update_xaxes(type="log", title_text="sequence length N")
    fig.update_yaxes(type="log")
    fig.update_yaxes(title_text="time (ms), eager call" if y == "time" else "FLOPs (forward)", row=1, col=1)
    fig.update_layout(title=title)
    return fig


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out/examples/approximate_vs_exact")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = ac.load(RESULTS)
    table = ac.rows(results, load_gpu(H200))
    errs = {"eager": ac.errors(table, "eager"), "gpu": ac.errors(table, "gpu")}
    cross = ac.crossovers(table)
    others = {g: ac.predicted_crossovers(load_gpu(g)) for g in OTHERS}
    print(f"measured on {results['meta']['gpu']} ({results['meta']['date']}), predicted on {H200}")
    print(f"{'method':18s} {'n':>3s} {'eager err (median)':>19s} {'GPU err (median)':>17s}")
    for label, e in errs["eager"].items():
        print(f"{label:18s} {e['n']:3d} {e['median_abs']:18.1%} {errs['gpu'][label]['median_abs']:17.1%}")
    fmt = lambda n: "never" if n is None else f"{n // 1024}k"  # noqa: E731
    print("crossover N (stays faster than the faster of SDPA flash / cuDNN from there on):")
    print(f"{'method':18s} {'d':>4s} {'H200 meas.':>10s} {'H200 pred.':>10s} " + " ".join(f"{g[:4]:>9s}" for g in OTHERS))
    for c in cross:
        label = c["method"] + (" causal" if c["causal"] else "")
        oth = [next((o["predicted"] for o in others[g] if (o["method"], o["causal"], o["head_dim"]) ==
                     (c["method"], c["causal"], c["head_dim"])), None) for g in OTHERS]
        print(f"{label:18s} {c['head_dim']:4d} {fmt(c['measured']):>10s} {fmt(c['predicted']):>10s} "
              + " ".join(f"{fmt(o):>9s}" for o in oth))
    p32 = [r for r in table if r["seq_len"] == 32768 and r["head_dim"] == 64 and not r["causal"]
           and r["method"] in ("performer", "torch-flash")]
    if len(p32) == 2:
        t = {r["method"]: r["measured_eager_s"] for r in p32}
        print(f"N = 32k, d = 64, bidirectional: performer {t['performer'] * 1e3:.2f} ms, FlashAttention-2 "
              f"{t['torch-flash'] * 1e3:.2f} ms (measured)")
    (out / "data.json").write_text(json.dumps({"meta": results["meta"], "rows": table, "errors": errs,
                                               "crossovers_h200": cross, "crossovers_predicted": others}, indent=1))
    written = save_figure(figure(table, "time", "Approximate vs exact attention on an H200 (d = 64, bf16, "
                                               "hidden 2048, 16k tokens a batch)"), out / "time_vs_n")
    written += save_figure(figure(table, "flops", "FLOPs of a forward call (d = 64)"), out / "flops_vs_n")
    print("wrote", out / "data.json", *written)


if __name__ == "__main__":
    main()
