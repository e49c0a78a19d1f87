"""Do sparse attention patterns that cut FLOPs cut the time? ("fewer FLOPs is not less wall-clock")

Question: the seed lecture's fast-attention patterns (sliding window, strided, dilated,
global + local, BigBird, blockwise permutations) keep a fraction of the N^2 pairs, and their
papers count FLOPs in proportion. A tiled kernel (FlashAttention-2 forward, 64 x 64 tiles)
skips only tiles with no kept pair. For N = 4096 (batch 1, 8 heads, d = 64, fp16, A100) this
prints, per pattern, the FLOPs its papers would count, the FLOPs the kernel executes, the
bytes it moves and the predicted time, and plots FLOPs against time. A strided pattern
(stride 64) keeps 1.6% of the pairs yet touches every tile, so it costs what dense costs; a
dilated one (128 x 8) keeps 5.5% of the pairs but 45% of the tiles, and costs 45% of dense
(75 us against 163 us); random blocks aligned to the tiles cost what they keep.

Writes (into --out, default out/examples/sparse_flops_vs_time):
    flops_vs_time.html / .png   nominal and executed FLOPs against predicted time
    data.json                   the numbers plotted

Runs in seconds on a CPU: python examples/sparse_flops_vs_time.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import plotly.graph_objects as go

from costmodel.plots import save_figure
from simulators import simulate_attention

GPU = "a100-sxm4-40gb"
SHAPE = dict(batch=1, heads=8, seq_len=4096, head_dim=64, dtype="fp16", block_r=64, block_c=64)
PATTERNS = {  # label -> (pattern names, options)
    "dense": (["dense"], {}),
    "window 256": (["window"], {"window": 256}),
    "strided 64": (["strided"], {"stride": 64}),
    "dilated 128 x 8": (["dilated"], {"window": 128, "dilation": 8}),
    "global 64 + window 256": (["global", "window"], {"global_tokens": 64, "window": 256}),
    "bigbird (64 global, window 192, 3 random)": (["bigbird"], {"global_tokens": 64, "window": 192,
                                                               "random_blocks": 3, "block": 64}),
    "blockwise, 4 blocks": (["blockwise"], {"n_blocks": 4}),
    "random, 3 blocks of 64": (["random"], {"random_blocks": 3, "block": 64}),
}


def sweep() -> list[dict]:
    rows = []
    for label, (names, opts) in PATTERNS.items():
        r = simulate_attention(GPU, "flash2", pattern=names, pattern_options=opts, **SHAPE)
        pat = r.extra["pattern"]
        rows.append({"pattern": label, "density": pat["density"], "tiles_kept": pat["tiles_kept"] / pat["tiles_total"],
                     "nominal_flops": pat["nominal_fwd_matmul_flops"], "executed_flops": r.flops,
                     "global_bytes": r.global_bytes, "hbm_bytes": r.hbm_bytes, "time_s": r.time_s,
                     "bound": r.bound})
    causal = simulate_attention(GPU, "flash2", causal=True, **SHAPE)
    rows.append({"pattern": "causal (dense band)", "density": 0.5, "tiles_kept": None,
                 "nominal_flops": 4 * 64 * 8 * 4096 * 4097 / 2, "executed_flops": causal.flops,
                 "global_bytes": causal.global_bytes, "hbm_bytes": causal.hbm_bytes, "time_s": causal.time_s,
                 "bound": causal.bound})
    return rows


def figure(rows: list[dict]) -> go.Figure:
    fig = go.Figure()
    fig.add_scatter(x=[r["nominal_flops"] for r in rows], y=[r["time_s"] * 1e6 for r in rows], mode="markers+text",
                    text=[r["pattern"] for r in rows], textposition="top center", name="FLOPs the pattern keeps")
    fig.add_scatter(x=[r["executed_flops"] for r in rows], y=[r["time_s"] * 1e6 for r in rows], mode="markers",
                    marker={"symbol": "x", "size": 10}, name="FLOPs the tiled kernel executes")
    fig.update_xaxes(type="log", title_text="FLOPs (forward)")
    fig.update_yaxes(title_text="predicted time (µs)", rangemode="tozero")
    fig.update_layout(title="Sparse attention: FLOPs against predicted time "
                            "(FA2 forward, 64x64 tiles, N=4096, 8 heads, d=64, A100)")
    return fig


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out/examples/sparse_flops_vs_time")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = sweep()
    print(f"{'pattern':44s} {'pairs kept':>10s} {'tiles kept':>10s} {'nominal GF':>10s} {'executed GF':>11s}"
          f" {'DRAM MB':>8s} {'time us':>8s}  bound")
    for r in rows:
        tiles = "" if r["tiles_kept"] is None else f"{r['tiles_kept']:.1%}"
        print(f"{r['pattern']:44s} {r['density']:10.1%} {tiles:>10s} {r['nominal_flops'] / 1e9:10.2f}"
              f" {r['executed_flops'] / 1e9:11.2f} {r['hbm_bytes'] / 1e6:8.1f} {r['time_s'] * 1e6:8.1f}  {r['bound']}")
    print("A pattern's FLOPs fall with its density; the kernel's time follows the tiles it touches.")
    (out / "data.json").write_text(json.dumps(rows, indent=2))
    written = save_figure(figure(rows), out / "flops_vs_time")
    print("wrote", out / "data.json", *written)


if __name__ == "__main__":
    main()
