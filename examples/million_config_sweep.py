"""How long does a what-if sweep over a million model/serving configurations take?

Question: a design-space search (Llama-2-style decoder: layers x KV heads x head_dim x
context x batch x KV precision) asks, for every point, the parameter count, the KV-cache
bytes, the largest batch that fits on one H100 80 GB beside bf16 weights, and the
decode step's lower bound (``costmodel.inference``: weights and KV cache read once, its
matmul FLOPs at the bf16 tensor-core peak, whichever takes longer). Every
calculator broadcasts over numpy arrays, so the whole grid is one call each.

The grid (1,008,000 points, an outer product):
    n_layers    10 values, 16 ... 88
    n_kv_heads  6 values, 1 ... 32 (MQA ... MHA of 32 query heads)
    head_dim    5 values, 64 ... 256 (d_model = 32 heads x head_dim)
    seq_len     10 values, 512 ... 262144
    batch       84 values, 1 ... 84
    kv dtype    4 values: fp32, bf16, fp8, int4 bytes per element
The llama2-7b preset's own point (32 layers, 32 KV heads, head_dim 128) is checked
against the scalar calculators (the preset's config, not the grid's numbers), an
independent path through the same formulas.

Writes (into --out, default out/examples/million_config_sweep):
    timings.json          seconds per calculator over the grid, and the grid's shape
    max_batch_bf16.html   largest batch, KV heads x context (64 layers, head_dim 128, bf16 KV)

Runs in about a second on a laptop: python examples/million_config_sweep.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from costmodel.inference import decode_step_bound
from costmodel.kvcache import batch_that_fits, kv_cache_bytes, kv_cache_bytes_per_token, max_batch_that_fits
from costmodel.models import load_model
from costmodel.params import count_params, count_params_arrays
from costmodel.plots import save_figure
from hardware_specs import load_gpu

GPU = "h100-sxm5-80gb"
QUERY_HEADS = 32  # Llama-2-7B's
VOCAB = 32000  # Llama-2's (Touvron et al. 2023)


def grid() -> dict[str, np.ndarray]:
    """Axes as broadcastable arrays: (layers, kv_heads, head_dim, seq_len, batch, kv_bytes)."""
    axes = dict(
        n_layers=np.linspace(16, 88, 10).astype(np.int64),
        n_kv_heads=np.array([1, 2, 4, 8, 16, 32]),
        head_dim=np.array([64, 96, 128, 192, 256]),
        seq_len=(512 * 2.0 ** np.arange(10)).astype(np.int64),
        batch=np.arange(1, 85),
        kv_bytes=np.array([4.0, 2.0, 1.0, 0.5]),
    )
    shape = [len(v) for v in axes.values()]
    return {k: v.reshape([-1 if i == j else 1 for j in range(len(shape))]) for i, (k, v) in enumerate(axes.items())}


def sweep(spec) -> tuple[dict, dict]:
    g = grid()
    times = {}
    t = time.perf_counter()
    d_model = QUERY_HEADS * g["head_dim"]
    shape = dict(vocab_size=VOCAB, d_model=d_model, n_layers=g["n_layers"], n_heads=QUERY_HEADS,
                 n_kv_heads=g["n_kv_heads"], head_dim=g["head_dim"],
                 ffn_dim=(8 * d_model // 3 + 255) // 256 * 256, ffn_type="swiglu")  # SwiGLU width, as Llama's
    params = count_params_arrays(**shape).total
    times["count_params_arrays"] = time.perf_counter() - t
    t = time.perf_counter()
    kv_total = kv_cache_bytes(batch=g["batch"], seq_len=g["seq_len"], dtype=g["kv_bytes"], sliding_window=None,
                              n_layers=g["n_layers"], n_kv_heads=g["n_kv_heads"], head_dim=g["head_dim"]).total_bytes
    times["kv_cache_bytes"] = time.perf_counter() - t
    t = time.perf_counter()
    weights = params * 2.0  # bf16
    per_seq = kv_total / g["batch"]
    max_batch = batch_that_fits(spec.hbm_bytes - weights, per_seq)
    times["batch_that_fits"] = time.perf_counter() - t
    t = time.perf_counter()
    decode_s = decode_step_bound(spec, seq_len=g["seq_len"], batch=g["batch"], weight_dtype="bf16",
                                 kv_dtype=g["kv_bytes"], sliding_window=None, **shape).time_s
    times["decode_step_bound"] = time.perf_counter() - t
    out = dict(params=params, kv_total=kv_total, max_batch=max_batch, decode_s=decode_s)
    return {k: np.broadcast_to(v, np.broadcast_shapes(*(np.shape(x) for x in g.values()))) for k, v in out.items()}, times


def check_against_scalar_path(results: dict, spec) -> dict:
    """The llama2-7b point, computed again with the preset and the scalar calculators."""
    cfg = load_model("llama2-7b")
    g = grid()
    idx = tuple(int(np.flatnonzero(g[k].ravel() == v)[0]) for k, v in (
        ("n_layers", cfg.n_layers), ("n_kv_heads", cfg.n_kv_heads), ("head_dim", cfg.head_dim),
        ("seq_len", 4096), ("batch", 8), ("kv_bytes", 2.0)))
    want_kv = kv_cache_bytes(cfg, batch=8, seq_len=4096, dtype="bf16").total_bytes
    fit = max_batch_that_fits(cfg, spec.hbm_bytes, 4096)
    step = decode_step_bound(spec, cfg, seq_len=4096, batch=8, weight_dtype="bf16")
    # The preset has Llama-2's vocabulary and FFN width (11008, the SwiGLU rule of grid()).
    return {
        "point": "llama2-7b, seq_len 4096, batch 8, bf16",
        "kv_bytes_grid": float(results["kv_total"][idx]), "kv_bytes_scalar": float(want_kv),
        "params_grid": float(results["params"][idx]), "params_preset": float(count_params(cfg).total),
        "max_batch_grid": float(results["max_batch"][idx]), "max_batch_scalar": float(fit.max_batch),
        "decode_s_grid": float(results["decode_s"][idx]), "decode_s_scalar": float(step.time_s),
        "kv_bytes_per_token_scalar": float(kv_cache_bytes_per_token(cfg, "bf16")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/examples/million_config_sweep"))
    args = parser.parse_args()
    spec = load_gpu(GPU)
    results, times = sweep(spec)
    n = results["kv_total"].size
    check = check_against_scalar_path(results, spec)
    for grid_key, scalar_key in (("kv_bytes_grid", "kv_bytes_scalar"), ("params_grid", "params_preset"),
                                 ("max_batch_grid", "max_batch_scalar"), ("decode_s_grid", "decode_s_scalar")):
        if check[grid_key] != check[scalar_key]:
            raise SystemExit(f"grid and scalar paths disagree at {check['point']}: {check}")

    args.out.mkdir(parents=True, exist_ok=True)
    total_s = sum(times.values())
    (args.out / "timings.json").write_text(json.dumps(
        {"configurations": n, "grid_shape": list(results["kv_total"].shape), "gpu": spec.name,
         "seconds": times, "total_s": total_s, "check": check}, indent=1))
    g = grid()
    li, hi = int(np.flatnonzero(g["n_layers"].ravel() == 64)[0]), int(np.flatnonzero(g["head_dim"].ravel() == 128)[0])
    z = results["max_batch"][li, :, hi, :, 0, 1]  # (kv_heads, seq_len): batch-independent, bf16 KV
    fig = go.Figure(go.Heatmap(z=z, x=[str(s) for s in g["seq_len"].ravel()], y=[str(h) for h in g["n_kv_heads"].ravel()],
                               colorscale="Viridis", colorbar=dict(title="max batch"),
                               hovertemplate="context %{x}<br>KV heads %{y}<br>max batch %{z}<extra></extra>"))
    fig.update_layout(title=f"Largest batch beside bf16 weights on {spec.display_name} (64 layers, head_dim 128, bf16 KV)",
                      xaxis_title="context (tokens)", yaxis_title=f"KV heads (of {QUERY_HEADS} query heads)")
    written = save_figure(fig, args.out / "max_batch_bf16")

    print(f"{n:,} configurations on {spec.display_name} in {total_s:.3f} s "
          f"({n / total_s / 1e6:.1f} M configurations/s)")
    for name, s in times.items():
        print(f"  {name:28s} {s * 1e3:8.1f} ms")
    print(f"check at {check['point']}: KV {check['kv_bytes_grid'] / 1e9:.2f} GB (scalar path "
          f"{check['kv_bytes_scalar'] / 1e9:.2f} GB), params {check['params_grid'] / 1e9:.3f} G "
          f"(preset {check['params_preset'] / 1e9:.3f} G), max batch {check['max_batch_grid']:.0f}")
    print("wrote " + ", ".join(str(p) for p in [args.out / "timings.json", *written]))


if __name__ == "__main__":
    main()
