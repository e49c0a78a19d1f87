"""Where do the lecture's examples and attention's kernels sit on the A100 and H100 rooflines?

Question: on a hierarchical roofline (one slope per memory level: HBM, L2, shared memory;
one roof per compute unit: FP32 SIMT, TF32/FP16/BF16 tensor cores, and exp on the SFUs),
where are the seed lecture's two worked examples (a 100 x 100 FP32 matmul and scaling a
100 x 100 matrix by 2), standard attention's kernels, FlashAttention-2's forward and
backward passes, and decoding one token with one block per head against split-KV
(Flash-Decoding), at N = 1k, 4k and 16k? Each point sits at its HBM intensity (FLOPs per
DRAM byte, after the simulator's L2 model) and its predicted throughput; its hover says
what it is, its intensity, what binds it and its predicted time. Hollow markers place
the same work at its shared-memory intensity, against the shared-memory slope.

The lecture's matmul: 2 x 100^3 = 2e6 FLOPs (not the "20 million" it writes) over the two
inputs' 80 KB is 25 FLOP/B, not 250 (hardware_specs.roofline.matmul_work's docstring); with the
output written too, 16.7 FLOP/B. Either is above an A100's FP32 ridge (9.6 FLOP/B), so its
conclusion, compute-bound, stands; an H100's FP32 ridge is 20 FLOP/B, which puts the second
count just on the memory side. The scaling is 1e4 FLOPs / 40 KB = 0.25 FLOP/B.

Attention: one Llama-2-7B-sized layer (32 heads, d = 128, fp16, causal, batch 1); decode is
batch 1 with a K/V cache of N tokens (split count: the simulator's default, two waves of blocks).

Writes (into --out, default out/examples/roofline_plots):
    roofline_<gpu>.html / .png   one interactive roofline per GPU
    points.json                  every point: FLOPs, bytes per level, time, bound

Runs in seconds on a CPU: python examples/roofline_plots.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from costmodel.plots import RooflinePoint, roofline_figure, save_figure
from hardware_specs.roofline import elementwise_work, matmul_work, roofline_time
from hardware_specs import load_gpu
from simulators import simulate_attention

GPUS = ("a100-sxm4-80gb", "h100-sxm5-80gb")
UNITS = ("fp32", "tf32_tensor", "fp16_tensor", "bf16_tensor", "sfu_exp")
LEVELS = ("hbm", "l2", "smem")
SEQ_LENS = (1024, 4096, 16384)
LAYER = dict(batch=1, heads=32, head_dim=128, dtype="fp16")  # Llama-2-7B: 32 heads of 128
GROUP_STYLE = {  # group -> (marker symbol, colour)
    "seed lecture (FP32, CUDA cores)": ("star", "#000000"),
    "standard attention, forward kernels": ("triangle-up", "#d62728"),
    "standard attention, backward kernels": ("triangle-down", "#ff7f0e"),
    "FlashAttention-2 forward": ("circle", "#1f77b4"),
    "FlashAttention-2 backward": ("square", "#17becf"),
    "decode, one block per head": ("x", "#9467bd"),
    "decode, split-KV (Flash-Decoding)": ("diamond", "#2ca02c"),
}


def _row(group: str, name: str, flops, hbm, l2, smem, time_s, bound, detail: str = "", n: int = 0) -> dict:
    return {"group": group, "name": name, "detail": detail, "seq_len": n, "flops": float(flops),
            "hbm_bytes": float(hbm), "l2_bytes": float(l2), "smem_bytes": float(smem), "time_s": float(time_s),
            "bound": str(bound)}


def seed_points(spec) -> list[dict]:
    """The lecture's two examples (module docstring), on the FP32 CUDA cores as the lecture computes them."""
    rows = []
    for name, work in (
        ("100x100 matmul, inputs read (seed's count)", matmul_work(100, 100, 100, "fp32", tensor_cores=False,
                                                                  count_output=False)),
        ("100x100 matmul, inputs read + output written", matmul_work(100, 100, 100, "fp32", tensor_cores=False)),
        ("100x100 matrix x 2, reads counted (seed's count)", elementwise_work(100 * 100, writes_per_element=0)),
    ):
        t = roofline_time(spec, work)
        rows.append(_row("seed lecture (FP32, CUDA cores)", name, work.flops, work.hbm_bytes, 0, 0, t.time_s, t.bound))
    return rows


def attention_points(spec) -> list[dict]:
    rows = []
    for pass_, group in (("fwd", "standard attention, forward kernels"),
                         ("bwd", "standard attention, backward kernels")):
        for n in SEQ_LENS:
            r = simulate_attention(spec, "standard", pass_=pass_, seq_len=n, causal=True, **LAYER)
            for k in r.kernels:
                rows.append(_row(group, f"standard {pass_}: {k.name}, N={n // 1024}k", k.flops, k.hbm_bytes,
                                 k.l2_bytes, k.smem_bytes, k.time_s, k.bound, n=n))
    for pass_, group in (("fwd", "FlashAttention-2 forward"), ("bwd", "FlashAttention-2 backward")):
        for n in SEQ_LENS:
            r = simulate_attention(spec, "flash2", pass_=pass_, seq_len=n, causal=True, **LAYER)
            rows.append(_row(group, f"FA2 {pass_}, N={n // 1024}k", r.flops, r.hbm_bytes, r.l2_bytes, r.smem_bytes,
                             r.time_s, r.bound, detail="kernels: " + ", ".join(k.name for k in r.kernels), n=n))
    for splits, group, what in ((1, "decode, one block per head", "one block per head"),
                                (None, "decode, split-KV (Flash-Decoding)", "split-KV")):
        for n in SEQ_LENS:
            r = simulate_attention(spec, "flash-decoding", seq_len=1, kv_len=n, splits=splits, **LAYER)
            rows.append(_row(group, f"decode 1 token, N={n // 1024}k cached, {what}", r.flops, r.hbm_bytes,
                             r.l2_bytes, r.smem_bytes, r.time_s, r.bound,
                             detail=f"{r.schedule['splits']} split(s) of the K/V cache per head", n=n))
    return rows


def _label(row: dict) -> str:
    return f"{row['name']}<br>{row['detail']}" if row["detail"] else row["name"]


def figure(spec, rows: list[dict]) -> go.Figure:
    points = [RooflinePoint(name=_label(r), flops=r["flops"], hbm_bytes=r["hbm_bytes"], time_s=r["time_s"],
                            bound=r["bound"], group=r["group"]) for r in rows if r["flops"] > 0]
    lo = min(p.intensity for p in points) / 3
    hi = max(max(r["flops"] / r["smem_bytes"] for r in rows if r["smem_bytes"] > 0),
             max(p.intensity for p in points)) * 3
    units = [u for u in UNITS if spec.peak_rate(u)]
    same_16 = spec.peak_rate("bf16_tensor") == spec.peak_rate("fp16_tensor")
    if same_16:  # one line for both: drawn twice, the second hides the first
        units.remove("bf16_tensor")
    # The lecture's points go last so they are drawn on top of the attention kernels at the same intensity.
    points.sort(key=lambda p: p.group.startswith("seed"))
    fig = roofline_figure(spec, points, units=units, levels=list(LEVELS),
                          title=f"Hierarchical roofline: {spec.display_name}. Attention: 32 heads, d=128, fp16, "
                                "causal, batch 1",
                          intensity_range=(lo, hi))
    level_colours = {"HBM": "#444444", "L2": "#e377c2", "shared memory": "#8c564b"}
    for trace in fig.data:
        if trace.name in GROUP_STYLE:
            symbol, colour = GROUP_STYLE[trace.name]
            trace.marker.update(symbol=symbol, color=colour, size=10, line=dict(width=1, color="white"))
        elif trace.name.startswith("sfu_exp"):  # plots.py names units it does not know by their key
            rate = spec.attainable_rate("sfu_exp")
            trace.name = f"exp on SFUs {rate / 1e12:.1f} Texp/s (roof for exp-bound work)"
            trace.line.update(dash="dashdot", color="#7f7f7f")
        elif same_16 and trace.name.startswith("FP16 tensor"):
            trace.name = trace.name.replace("FP16 tensor", "FP16 / BF16 tensor")
        for level, colour in level_colours.items():
            if trace.name.startswith(level + " ") and trace.mode == "lines":
                trace.line.update(color=colour, width=2.5)
    # The same work at its shared-memory intensity, against the shared-memory slope.
    smem_rows = [r for r in rows if r["flops"] > 0 and r["smem_bytes"] > 0]
    for group in dict.fromkeys(r["group"] for r in smem_rows):
        pts = [r for r in smem_rows if r["group"] == group]
        symbol, colour = GROUP_STYLE[group]
        fig.add_trace(go.Scatter(
            x=[r["flops"] / r["smem_bytes"] for r in pts], y=[r["flops"] / r["time_s"] for r in pts],
            mode="markers", name=f"{group}, at smem intensity", legendgroup=group, showlegend=False,
            marker=dict(symbol=f"{symbol}-open", color=colour, size=9),
            text=[f"<b>{_label(r)}</b><br>intensity {r['flops'] / r['smem_bytes']:.3g} FLOP/B (shared memory)"
                  f"<br>bound: {r['bound']}<br>time {r['time_s'] * 1e3:.4g} ms" for r in pts],
            hovertemplate="%{text}<extra></extra>"))
    # Log axes take annotation positions in log10 units.
    for r, label, ax in zip([r for r in rows if r["group"].startswith("seed")],
                            ("seed: 100x100 matmul", "same, output counted", "seed: 100x100 matrix x 2"), (40, -70, 0)):
        fig.add_annotation(x=np.log10(r["flops"] / r["hbm_bytes"]), y=np.log10(r["flops"] / r["time_s"]),
                           text=label, showarrow=True, arrowhead=0, ax=ax, ay=-30 if ax >= 0 else 30,
                           font=dict(size=10), bgcolor="rgba(255,255,255,0.85)")
    fig.update_xaxes(title="arithmetic intensity (FLOP per byte; filled: HBM bytes, hollow: shared-memory bytes)")
    # 1-2-5 ticks with SI names: plotly writes 1e15 as 10^15 and labels log minor ticks with a bare digit.
    ticks = [(m * 10.0 ** k, f"{m * 10 ** (k % 3)}{'GTPE'[k // 3 - 3]}") for k in range(9, 18) for m in (1, 2, 5)]
    fig.update_yaxes(tickvals=[v for v, _ in ticks], ticktext=[t for _, t in ticks])
    fig.update_layout(width=1200, height=720, legend=dict(font=dict(size=10), x=1.01, y=1, xanchor="left"),
                      margin=dict(r=20))
    return fig


def report(spec_names: tuple[str, ...], tables: dict[str, list[dict]]) -> str:
    first = tables[spec_names[0]]
    head = f"{'work':64s}{'FLOP/B HBM':>11s}" + "".join(f"{g[:4].upper() + ' time':>13s}  {'bound':11s}"
                                                        for g in spec_names)
    lines = [head]
    for i, r in enumerate(first):
        if r["group"].startswith("standard") and r["seq_len"] != 4096:
            continue  # standard kernels' intensities hardly move with N: the table shows N = 4k
        if r["flops"] == 0:
            continue
        cells = ""
        for g in spec_names:
            s = tables[g][i]
            cells += f"{_fmt_time(s['time_s']):>13s}  {s['bound']:11s}"
        lines.append(f"{r['name'][:63]:64s}{r['flops'] / r['hbm_bytes']:11.3g}{cells}")
    return "\n".join(lines)


def _fmt_time(t: float) -> str:
    return f"{t * 1e6:.3g} us" if t < 1e-3 else f"{t * 1e3:.3g} ms"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out/examples/roofline_plots")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tables, written = {}, []
    for name in GPUS:
        spec = load_gpu(name)
        rows = seed_points(spec) + attention_points(spec)
        tables[name] = rows
        written += save_figure(figure(spec, rows), out / f"roofline_{name}")
    ridges = ", ".join(f"{g} {load_gpu(g).peak_rate('fp32') / load_gpu(g).hbm_bandwidth_Bps:.1f}" for g in GPUS)
    print("Seed lecture: 2 x 100^3 = 2e6 FLOPs for the 100x100 FP32 matmul (it writes 20 million), so 25 FLOP/B,\n"
          f"not its 250. Its examples run on the FP32 CUDA cores, as it computes them; FP32 ridge: {ridges} FLOP/B.")
    print(report(GPUS, tables))
    for name in GPUS:
        one = {r["seq_len"]: r for r in tables[name] if r["group"] == "decode, one block per head"}
        split = [r for r in tables[name] if r["group"] == "decode, split-KV (Flash-Decoding)"]
        ratios = ", ".join(f"{r['time_s'] / one[r['seq_len']]['time_s']:.2f}" for r in split)
        print(f"{name}: decode time split-KV / one block per head at N = 1k, 4k, 16k: {ratios}"
              f" ({split[0]['detail']})")
        if all(r["bound"] == "hbm" for r in split) and all(r["time_s"] >= one[r["seq_len"]]["time_s"] for r in split):
            print("  both HBM-bound: the timing model lets any number of SMs draw the whole HBM bandwidth\n"
                  "  (simulators/timing.py), so splitting the cache over more SMs gains only where a per-SM\n"
                  "  resource binds, and it pays for the combine kernel.")
    (out / "points.json").write_text(json.dumps(tables, indent=2))
    print("wrote", out / "points.json", *written)


if __name__ == "__main__":
    main()
