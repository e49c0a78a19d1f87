"""How big is the KV cache, what do GQA and paging save, and how many sequences fit on one GPU?

Questions:
1. The seed lecture's GPT-3 example (module 5): KV cache per token, 2 x 96 layers x (96 heads x 128) x 4 B,
   and for a 2K context. The lecture says 9.4 MB and 19.3 GB.
2. Llama-2-70B keeps 8 K/V heads for its 64 query heads (grouped-query attention). What would the
   same model cache with full multi-head K/V (kv_heads = heads)?
3. How many sequences fit on an H100 80 GB (or, for the 70B models, eight of them) beside the
   weights, as the context grows? 10% of memory is held back, as vLLM's default
   gpu_memory_utilization = 0.9 does.
4. For a batch of requests of mixed lengths (64 lengths, log-uniform between 16 and 4096,
   numpy default_rng(0)), how much KV memory does a contiguous allocator that reserves the
   maximum length waste, against paged blocks (vLLM, Kwon et al. 2023) of 8 to 256 tokens?

Writes (into --out, default out/examples/kv_cache_what_if):
    max_batch.html / .png               largest batch against context length, per model
    paged_vs_contiguous.html / .png     wasted KV memory per allocator
    data.json                           the numbers printed

Runs in seconds on a CPU: python examples/kv_cache_what_if.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from costmodel.kvcache import kv_cache_bytes, kv_cache_bytes_per_token, max_batch_that_fits, paged_kv_cache_bytes
from costmodel.models import ModelConfig, load_model
from costmodel.params import count_params
from costmodel.plots import save_figure
from hardware_specs import load_gpu

GPU = "h100-sxm5-80gb"
RESERVE_FRACTION = 0.10  # vLLM's default gpu_memory_utilization = 0.9
CONTEXTS = 2 ** np.arange(9, 16)  # 512 ... 32768 tokens
SINGLE_GPU_MODELS = ("llama2-7b", "llama3-8b", "mistral-7b")
PAGED_MODEL = "llama2-7b"
BLOCK_SIZES = (8, 16, 32, 64, 128, 256)
N_REQUESTS = 64


def with_full_mha(cfg: ModelConfig) -> ModelConfig:
    """The same model with one K/V head per query head (validated like any preset)."""
    return ModelConfig.model_validate({**cfg.model_dump(), "name": f"{cfg.name} (MHA K/V)",
                                       "n_kv_heads": cfg.n_heads})


def gpt3_seed() -> dict:
    cfg = load_model("gpt3-175b")
    per_token = kv_cache_bytes_per_token(cfg, "fp32")
    return {"per_token_bytes": per_token, "context_2k_bytes": kv_cache_bytes(cfg, 1, 2048, "fp32").total_bytes,
            "per_token_bytes_bf16": kv_cache_bytes_per_token(cfg, "bf16")}


def gqa_vs_mha() -> list[dict]:
    rows = []
    for cfg in (load_model("llama2-70b"), with_full_mha(load_model("llama2-70b"))):
        rows.append({"model": cfg.name, "kv_heads": cfg.n_kv_heads, "params": count_params(cfg).total,
                     "per_token_bytes": kv_cache_bytes_per_token(cfg, "bf16"),
                     "per_sequence_bytes": kv_cache_bytes(cfg, 1, cfg.max_seq_len, "bf16").total_bytes,
                     "context": cfg.max_seq_len})
    return rows


def max_batch_sweep() -> dict:
    """model label -> (context lengths, max batch), GPU memory as a pool of one or eight H100s."""
    hbm = load_gpu(GPU).hbm_bytes
    setups = [(load_model(name), 1) for name in SINGLE_GPU_MODELS]
    setups += [(load_model("llama2-70b"), 8), (with_full_mha(load_model("llama2-70b")), 8)]
    out = {}
    for cfg, n_gpus in setups:
        # Tensor parallelism splits weights and K/V heads evenly, so n GPUs hold what one pool of n x 80 GB holds.
        fit = max_batch_that_fits(cfg, n_gpus * hbm, CONTEXTS, reserve_fraction=RESERVE_FRACTION)
        label = f"{cfg.name}, {cfg.n_kv_heads} K/V heads" + (f", {n_gpus}x H100" if n_gpus > 1 else "")
        if cfg.sliding_window:
            label += f", window {cfg.sliding_window}"
        out[label] = {"context": CONTEXTS.tolist(), "max_batch": np.asarray(fit.max_batch).tolist(),
                      "weights_bytes": float(fit.weights_bytes), "gpus": n_gpus}
    return out


def paged_sweep() -> dict:
    cfg = load_model(PAGED_MODEL)
    rng = np.random.default_rng(0)
    lengths = np.round(np.exp(rng.uniform(np.log(16), np.log(cfg.max_seq_len), N_REQUESTS))).astype(np.int64)
    rows = {}
    for b in BLOCK_SIZES:
        r = paged_kv_cache_bytes(cfg, lengths, b, "bf16")
        rows[f"paged, {b}-token blocks"] = {"allocated": float(r.total_paged_bytes),
                                           "wasted": float(r.total_paged_waste_bytes)}
    rows[f"contiguous, {cfg.max_seq_len} reserved"] = {"allocated": float(r.total_contiguous_bytes),
                                                        "wasted": float(r.total_contiguous_waste_bytes)}
    fit = max_batch_that_fits(cfg, load_gpu(GPU).hbm_bytes, 1, reserve_fraction=RESERVE_FRACTION)
    return {"model": cfg.name, "requests": N_REQUESTS, "mean_length": float(lengths.mean()),
            "used_bytes": float(r.total_used_bytes), "free_bytes": float(fit.free_bytes), "allocators": rows}


def max_batch_figure(sweep: dict) -> go.Figure:
    fig = go.Figure()
    for label, s in sweep.items():
        batch = [b if b > 0 else None for b in s["max_batch"]]  # a log axis cannot show 0: a gap
        fig.add_scatter(x=s["context"], y=batch, mode="lines+markers", name=label,
                        line=dict(dash="dash" if s["gpus"] > 1 else "dot" if "window" in label else "solid",
                                  width=2.5),
                        hovertemplate=f"{label}<br>context %{{x}} tokens: %{{y}} sequences<extra></extra>")
    fig.update_xaxes(type="log", title="context length (tokens)", tickvals=CONTEXTS.tolist(),
                     ticktext=[f"{c // 1024}k" if c >= 1024 else str(c) for c in CONTEXTS])
    fig.update_yaxes(type="log", title="largest batch whose KV cache fits (bf16)")
    fig.update_layout(title=f"KV cache: sequences that fit beside the weights on {load_gpu(GPU).display_name}"
                            f" ({RESERVE_FRACTION:.0%} held back)",
                      template="plotly_white", width=1000, height=600,
                      legend=dict(x=0.01, y=0.01, xanchor="left", yanchor="bottom", bgcolor="rgba(255,255,255,0.8)"))
    return fig


def paged_figure(paged: dict) -> go.Figure:
    names = list(paged["allocators"])
    waste = [paged["allocators"][n]["wasted"] / paged["allocators"][n]["allocated"] for n in names]
    fig = go.Figure(go.Bar(x=[n.replace(", ", "<br>") for n in names], y=waste, text=[f"{w:.1%}" for w in waste],
                           textposition="outside", marker_color=["#1f77b4"] * (len(names) - 1) + ["#d62728"]))
    fig.update_yaxes(title="share of allocated KV memory left unused", tickformat=".0%", range=[0, 1])
    fig.update_layout(title=f"Paged vs contiguous KV cache: {paged['model']}, {paged['requests']} requests, "
                            f"lengths log-uniform in [16, 4096] (mean {paged['mean_length']:.0f})",
                      template="plotly_white", width=1000, height=550)
    return fig


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out/examples/kv_cache_what_if")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seed, gqa, sweep, paged = gpt3_seed(), gqa_vs_mha(), max_batch_sweep(), paged_sweep()

    print("1. GPT-3 (seed lecture, fp32): KV cache per token"
          f" {seed['per_token_bytes'] / 1e6:.2f} MB (seed: 9.4 MB), 2K context"
          f" {seed['context_2k_bytes'] / 1e9:.2f} GB (seed: 19.3 GB); in bf16 half: "
          f"{seed['per_token_bytes_bf16'] / 1e6:.2f} MB per token.")
    print("2. Llama-2-70B, bf16:")
    for r in gqa:
        print(f"   {r['model']:24s} {r['kv_heads']:3d} K/V heads  {r['params'] / 1e9:6.2f} B params  "
              f"{r['per_token_bytes'] / 1e6:6.3f} MB/token  {r['per_sequence_bytes'] / 1e9:6.2f} GB per"
              f" {r['context']}-token sequence")
    print(f"   GQA caches {gqa[1]['per_token_bytes'] / gqa[0]['per_token_bytes']:.0f}x less.")
    print(f"3. Largest batch (bf16 weights and cache, {RESERVE_FRACTION:.0%} held back):")
    print(f"   {'context':58s}" + "".join(f"{c:>7d}" for c in CONTEXTS))
    for label, s in sweep.items():
        print(f"   {label:58s}" + "".join(f"{b:7d}" for b in s["max_batch"]))
    print(f"4. {paged['model']}, {paged['requests']} requests, mean length {paged['mean_length']:.0f};"
          f" KV actually used {paged['used_bytes'] / 1e9:.2f} GB; {paged['free_bytes'] / 1e9:.1f} GB free on one"
          " H100 beside the weights:")
    for name, a in paged["allocators"].items():
        fits = "fits" if a["allocated"] <= paged["free_bytes"] else "does not fit"
        print(f"   {name:30s} allocated {a['allocated'] / 1e9:7.2f} GB, unused {a['wasted'] / 1e9:7.2f} GB"
              f" ({a['wasted'] / a['allocated']:5.1%}): {fits}")
    (out / "data.json").write_text(json.dumps({"gpt3_seed": seed, "gqa_vs_mha": gqa, "max_batch": sweep,
                                               "paged": paged}, indent=2))
    written = save_figure(max_batch_figure(sweep), out / "max_batch")
    written += save_figure(paged_figure(paged), out / "paged_vs_contiguous")
    print("wrote", out / "data.json", *written)


if __name__ == "__main__":
    main()
