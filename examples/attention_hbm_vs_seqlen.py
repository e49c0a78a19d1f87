"""How do attention's memory bytes grow with sequence length, at the global (L2) and DRAM levels?

Question: for standard attention, FlashAttention-1 and FlashAttention-2 (forward, fp16,
batch 4, 16 heads, d = 128, 128 x 128 tiles), how many bytes do the kernels request from
global memory and how many reach DRAM after the L2 wave model, on an A100 and an H100, as N
goes from 512 to 32k? Standard grows as N^2 at both levels; FA1 and FA2 request Theta(N^2 d / B)
bytes, but on the GPU the query tiles of one head share K and V through L2, so DRAM sees
close to the Theta(N d) minimum until a wave's working set outgrows L2.

Writes (into --out, default out/examples/attention_hbm_vs_seqlen):
    hbm_vs_seqlen.html / .png   bytes against N, one panel per GPU (log-log)
    data.json                   the numbers plotted

Runs in seconds on a CPU: python examples/attention_hbm_vs_seqlen.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from plotly.subplots import make_subplots

from costmodel.plots import save_figure
from simulators import simulate_attention

GPUS = ("a100-sxm4-40gb", "h100-sxm5-80gb")
SEQ_LENS = (512, 1024, 2048, 4096, 8192, 16384, 32768)
SHAPE = dict(batch=4, heads=16, head_dim=128, dtype="fp16")
TILES = dict(block_r=128, block_c=128)


def sweep() -> dict:
    data: dict = {}
    for gpu in GPUS:
        rows = []
        for n in SEQ_LENS:
            std = simulate_attention(gpu, "standard", seq_len=n, **SHAPE)
            fa1 = simulate_attention(gpu, "flash1", seq_len=n, fa1_io="paper", **SHAPE, **TILES)
            fa2 = simulate_attention(gpu, "flash2", seq_len=n, **SHAPE, **TILES)
            minimum = 4 * SHAPE["batch"] * SHAPE["heads"] * n * SHAPE["head_dim"] * 2  # Q, K, V, O once
            rows.append({"n": n, "minimum": minimum,
                         "standard": std.global_bytes, "standard_time_s": std.time_s,
                         "flash1_global": fa1.global_bytes, "flash1_dram": fa1.hbm_bytes, "flash1_time_s": fa1.time_s,
                         "flash2_global": fa2.global_bytes, "flash2_dram": fa2.hbm_bytes, "flash2_time_s": fa2.time_s})
        data[gpu] = rows
    return data


def figure(data: dict):
    fig = make_subplots(rows=1, cols=len(GPUS), subplot_titles=GPUS, shared_yaxes=True)
    series = [("standard", "standard (global = DRAM)", "solid"), ("flash1_global", "FA1 global", "dash"),
              ("flash1_dram", "FA1 DRAM", "solid"), ("flash2_global", "FA2 global", "dash"),
              ("flash2_dram", "FA2 DRAM", "solid"), ("minimum", "Q, K, V, O once", "dot")]
    colors = {"standard": "#d62728", "flash1": "#1f77b4", "flash2": "#2ca02c", "minimum": "#7f7f7f"}
    for col, gpu in enumerate(GPUS, start=1):
        rows = data[gpu]
        for key, label, dash in series:
            fig.add_scatter(x=[r["n"] for r in rows], y=[r[key] for r in rows], name=label, mode="lines+markers",
                            line={"dash": dash, "color": colors[key.split("_")[0]]}, legendgroup=key,
                            showlegend=col == 1, row=1, col=col)
    fig.update_xaxes(type="log", title_text="sequence length N")
    fig.update_yaxes(type="log", title_text="bytes (forward)", col=1)
    fig.update_yaxes(type="log")
    fig.update_layout(title="Attention forward bytes against N: global-memory requests vs DRAM after L2 "
                            "(B=4, H=16, d=128, fp16, 128x128 tiles)")
    return fig


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out/examples/attention_hbm_vs_seqlen")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = sweep()
    for gpu, rows in data.items():
        print(f"{gpu}: GB (global / DRAM), forward")
        print(f"{'N':>7s} {'standard':>10s} {'FA1 glob':>10s} {'FA1 DRAM':>10s} {'FA2 glob':>10s} {'FA2 DRAM':>10s}"
              f" {'QKVO once':>10s}")
        for r in rows:
            print(f"{r['n']:7d} {r['standard'] / 1e9:10.3f} {r['flash1_global'] / 1e9:10.3f} "
                  f"{r['flash1_dram'] / 1e9:10.3f} {r['flash2_global'] / 1e9:10.3f} {r['flash2_dram'] / 1e9:10.3f}"
                  f" {r['minimum'] / 1e9:10.3f}")
    (out / "data.json").write_text(json.dumps(data, indent=2))
    written = save_figure(figure(data), out / "hbm_vs_seqlen")
    print("wrote", out / "data.json", *written)


if __name__ == "__main__":
    main()
