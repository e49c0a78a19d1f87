"""FlashAttention paper, Figure 2: how do our counts for GPT-2 medium compare with the paper's?

Question: for the paper's setup (GPT-2 medium attention: N = 1024, d = 64, 16 heads, batch 64,
A100 40GB, fp16, causal mask, dropout 0.1, forward + backward), what FLOPs, HBM traffic and
time does the simulator give standard attention and FlashAttention, beside the paper's
66.6 vs 75.2 GFLOPs, 40.3 vs 4.4 GB and 41.7 vs 7.3 ms? And the middle panel: how do HBM
accesses and forward runtime fall as the block size grows?

Writes (into --out, default out/examples/flashattention_figure2):
    summary.json            the numbers printed
    block_size_sweep.html   HBM accesses (bars) and predicted forward time (line) against B_c
    block_size_sweep.png    the same, where plotly's image export works

Runs in seconds on a CPU: python examples/flashattention_figure2.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from costmodel.plots import save_figure
from costmodel.validation.implementations import figure2_ratio
from hardware_specs import load_gpu
from simulators import simulate_attention

GPU = "a100-sxm4-40gb"
GPT2_MEDIUM = dict(batch=64, heads=16, seq_len=1024, head_dim=64, dtype="fp16", causal=True, dropout=0.1)
PAPER = {"standard": (66.6, 40.3, 41.7), "flash": (75.2, 4.4, 7.3)}  # GFLOPs, HBM GB, ms (seed 003)
BLOCKS = (64, 128, 256, 512)


def run_figure2() -> dict:
    std = simulate_attention(GPU, "standard", pass_="fwd+bwd", **GPT2_MEDIUM)
    fa = simulate_attention(GPU, "flash1", pass_="fwd+bwd", fa1_io="paper", **GPT2_MEDIUM)
    fa_dense = simulate_attention(GPU, "flash1", pass_="fwd+bwd", fa1_io="paper", skip_masked_tiles=False,
                                  **GPT2_MEDIUM)
    fa2 = simulate_attention(GPU, "flash2", pass_="fwd+bwd", **GPT2_MEDIUM)
    rows = {}
    for name, r in (("standard", std), ("flash1 (causal tiles skipped)", fa),
                    ("flash1 (no skipping)", fa_dense), ("flash2 (causal tiles skipped)", fa2)):
        rows[name] = {"gflops": r.flops / 1e9, "matmul_gflops": r.matmul_flops / 1e9,
                      "global_gb": r.global_bytes / 1e9, "dram_gb": r.hbm_bytes / 1e9, "time_ms": r.time_s * 1e3,
                      "bound": r.bound, "block_r": r.schedule.get("block_r"), "block_c": r.schedule.get("block_c")}
    return rows


def paper_list_gb() -> float:
    """HBM bytes of the paper's standard kernel list (the scale inside the first matmul), in GB."""
    return figure2_ratio.paper_standard_hbm_bytes(load_gpu(GPU)) / 1e9


def run_sweep() -> list[dict]:
    out = []
    for bc in BLOCKS:
        r = simulate_attention(GPU, "flash1", pass_="fwd", fa1_io="paper", block_r=min(bc, 64), block_c=bc,
                               **GPT2_MEDIUM)
        out.append({"block_c": bc, "block_r": min(bc, 64), "global_gb": r.global_bytes / 1e9,
                    "dram_gb": r.hbm_bytes / 1e9, "time_ms": r.time_s * 1e3, "bound": r.bound})
    return out


def report(rows: dict, sweep: list[dict]) -> str:
    lines = ["GPT-2 medium attention on A100 40GB, fp16, causal, dropout 0.1, forward + backward",
             f"{'':36s}{'GFLOPs':>9s}{'HBM GB':>9s}{'DRAM GB':>9s}{'ms':>8s}  bound   tiles"]
    p_std, p_fa = PAPER["standard"], PAPER["flash"]
    lines.append(f"{'paper: standard':36s}{p_std[0]:9.1f}{p_std[1]:9.1f}{'':9s}{p_std[2]:8.1f}")
    lines.append(f"{'paper: FlashAttention':36s}{p_fa[0]:9.1f}{p_fa[1]:9.1f}{'':9s}{p_fa[2]:8.1f}")
    for name, r in rows.items():
        tiles = f"{r['block_r']}x{r['block_c']}" if r["block_r"] else "-"
        lines.append(f"{'ours: ' + name:36s}{r['gflops']:9.1f}{r['global_gb']:9.2f}{r['dram_gb']:9.2f}"
                     f"{r['time_ms']:8.2f}  {r['bound']:6s}  {tiles}")
    std, fa, fa_dense = rows["standard"], rows["flash1 (causal tiles skipped)"], rows["flash1 (no skipping)"]
    lines += [
        "",
        "How to read it:",
        "* HBM traffic. The paper's 'HBM R/W' is what each algorithm asks of HBM (our global bytes). Standard:",
        f"  {std['global_gb']:.1f} GB against 40.3 GB: every elementwise kernel reads and writes the N x N scores",
        "  (S, scaled, masked, P, dropped P, a 1-byte dropout mask, dP, dS: ~20 passes of 2.1 GB). Ours keeps",
        "  every elementwise op a separate kernel, the scale too. The paper's Fig. 1 bars (matmul, mask, softmax,",
        f"  dropout, matmul) have no scale pass: that list, the scale inside Q K^T, is {paper_list_gb():.2f} GB, the",
        "  paper's 40.3 (costmodel/validation/implementations/figure2_ratio.py times it). FlashAttention:",
        f"  {fa['global_gb']:.2f} GB against 4.4 GB: Algorithms 1 and 4 with the paper's tiles (B_c = ceil(M/4d) =",
        f"  {fa['block_c']} for the A100's 163 KB, B_r = d = 64) and the causal upper triangle skipped.",
        f"  After our L2 wave model DRAM sees {fa['dram_gb']:.2f} GB: part of the Q_i, O_i re-reads hit L2.",
        "* FLOPs. Both of the paper's numbers are ~12x below the matmul FLOPs of this workload alone (fwd + bwd is",
        "  6 products of 2 N^2 d over B x H = 1024 heads: 825 GFLOPs), so they must count a narrower scope that",
        f"  the paper does not state; their ratio is what compares: 75.2 / 66.6 = {75.2 / 66.6:.2f}.",
        "  Without causal tile skipping ours is",
        f"  {fa_dense['gflops']:.0f} / {std['gflops']:.0f} = {fa_dense['gflops'] / std['gflops']:.2f} (the backward"
        " recomputes S = QK^T: 7 products instead of 6);",
        f"  with skipping FlashAttention does {fa['gflops'] / std['gflops']:.2f}x the standard FLOPs.",
        f"* Time. Ours is a roofline lower bound on datasheet peaks: {std['time_ms']:.1f} ms ({std['bound']}-bound)",
        f"  against 41.7 ms measured, {fa['time_ms']:.1f} ms against 7.3 ms. Speedup: paper {41.7 / 7.3:.1f}x,"
        f" ours {std['time_ms'] / fa['time_ms']:.1f}x.",
        "  measured / predicted is the efficiency the",
        f"  datasheet roofline leaves out: {41.7 / std['time_ms']:.2f} for standard (elementwise kernels below peak"
        f" bandwidth), {7.3 / fa['time_ms']:.2f} for FlashAttention",
        "  (its CUDA kernel below tensor-core and shared-memory peaks); a calibrated spec carries such factors.",
        "",
        "Block-size sweep (forward, Algorithm 1, B_r = min(B_c, 64)):",
        "HBM accesses fall as 1/B_c; the time follows until another resource binds.",
    ]
    for s in sweep:
        lines.append(f"  B_c={s['block_c']:4d}: {s['global_gb']:.2f} GB requested, {s['dram_gb']:.2f} GB DRAM, "
                     f"{s['time_ms']:.2f} ms ({s['bound']}-bound)")
    return "\n".join(lines)


def sweep_figure(sweep: list[dict]) -> go.Figure:
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    x = [str(s["block_c"]) for s in sweep]
    fig.add_bar(x=x, y=[s["global_gb"] for s in sweep], name="HBM accesses (global, GB)", secondary_y=False)
    fig.add_bar(x=x, y=[s["dram_gb"] for s in sweep], name="DRAM after L2 (GB)", secondary_y=False)
    fig.add_scatter(x=x, y=[s["time_ms"] for s in sweep], name="predicted forward time (ms)", mode="lines+markers",
                    secondary_y=True)
    fig.update_layout(title="FlashAttention forward, GPT-2 medium on A100: effect of block size "
                            "(cf. paper Fig. 2 middle)",
                      xaxis_title="block size B_c", barmode="group")
    fig.update_yaxes(title_text="GB", secondary_y=False)
    fig.update_yaxes(title_text="ms", secondary_y=True, rangemode="tozero")
    return fig


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out/examples/flashattention_figure2")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, sweep = run_figure2(), run_sweep()
    print(report(rows, sweep))
    (out / "summary.json").write_text(json.dumps({"paper": PAPER, "ours": rows, "block_size_sweep": sweep}, indent=2))
    written = save_figure(sweep_figure(sweep), out / "block_size_sweep")
    print("wrote", out / "summary.json", *written)


if __name__ == "__main__":
    main()
