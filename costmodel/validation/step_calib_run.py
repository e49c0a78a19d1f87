"""The step-level calibration run: synthetic decoders (none a validated preset) timed as whole steps on the GPU.

    python3 -m costmodel.validation.step_calib_run --out DIR [--budget-s 270] [--smoke]

What it fits (``step_calib_fit``): the idle GPU time per kernel inside a CUDA-graph decode step and
the host time per kernel of an eager step (inference and autograd), from configurations that share
no (width, layers, heads, vocab) with the validated presets (``CALIB_CONFIGS``). Per step it records:
the wall time (CUDA events, median), the host's issue time (``perf_counter`` around the call, no
sync inside: the CPU cost of the step where the launch queue does not fill), and one profiled call
(torch.profiler): the kernels with start and duration, so the gaps between consecutive kernels are
read by the class of the kernel after the gap. A micro-section first times dependent chains of
elementwise kernels, of cuBLAS GEMMs and of both alternating, each captured as one CUDA graph, to
see whether the in-graph gap depends on the kernel kind. Writes DIR/step_calib_h200.json after every
step. ``--smoke`` runs every path on the CPU at toy sizes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

from costmodel.models import ModelConfig
from costmodel.validation.reference_model import build
from costmodel.validation.step_compare import kernel_class
from costmodel.validation.step_timing import Run, capture, random_cache, toy_config, training_step

_LLAMA = dict(ffn_type="swiglu", norm_type="rmsnorm", attn_bias=False, mlp_bias=False, tied_embeddings=False,
              position_embedding="rope", max_seq_len=8192, sliding_window=None)
_GPT2 = dict(ffn_type="gelu_mlp", norm_type="layernorm", attn_bias=True, mlp_bias=True, tied_embeddings=True,
             position_embedding="learned", max_seq_len=4096, sliding_window=None)


def _cfg(name, d, L, H, kv, hd, ffn, vocab, style):
    return ModelConfig.model_validate({"name": name, "source": "synthetic calibration config (step_calib_run)",
                                       "vocab_size": vocab, "d_model": d, "n_layers": L, "n_heads": H,
                                       "n_kv_heads": kv, "head_dim": hd, "ffn_dim": ffn, **style})


# (config, decode (B, ctx) list, prefill (B, S) list, train (B, S) list). Widths, depths, head counts
# and vocabularies differ from every validated preset (gpt2-medium, tinyllama-1.1b, llama2-7b,
# llama3-8b, mistral-7b, codellama-34b).
CALIB_CONFIGS = [
    (_cfg("calib-llama-1536", 1536, 16, 12, 4, 128, 4096, 48000, _LLAMA), [(1, 512), (16, 2048)],
     [(1, 128), (1, 512), (4, 1024)], [(2, 1024)]),
    (_cfg("calib-gpt2-768", 768, 12, 12, 12, 64, 3072, 50257, _GPT2), [(1, 256), (32, 1024)],
     [(1, 128), (1, 512), (8, 512)], [(8, 512)]),
    (_cfg("calib-llama-3072", 3072, 12, 24, 8, 128, 8192, 100000, _LLAMA), [(1, 1024), (32, 1024)],
     [(1, 256), (2, 2048)], [(1, 1024)]),
    (_cfg("calib-gpt2-1280", 1280, 20, 20, 20, 64, 5120, 50257, _GPT2), [(1, 512), (8, 1024)],
     [(1, 256), (4, 1024)], [(4, 1024)]),
    (_cfg("calib-llama-1024", 1024, 24, 16, 16, 64, 2816, 32768, _LLAMA), [(1, 512), (64, 512)],
     [(1, 64), (1, 1024)], [(4, 512)]),
    (_cfg("calib-llama-4608", 4608, 6, 36, 12, 128, 12288, 64000, _LLAMA), [(1, 1024), (16, 2048)],
     [(1, 512), (1, 4096)], []),
]


def profile_gaps(r: Run, fn, keep_sequence: bool = True) -> dict:
    """One profiled call of fn: kernel count, GPU-time sum, span, gaps by the class of the next kernel."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if r.dev == "cuda" else [])
    with profile(activities=acts) as prof:
        fn(); r.sync()
    ks = []
    for e in prof.events():
        if r.dev == "cuda" and e.device_type != torch.autograd.DeviceType.CUDA:
            continue
        if kernel_class(e.name) is None:
            continue
        ks.append((float(e.time_range.start), float(e.time_range.end), e.name))
    ks.sort()
    gaps: dict = {}
    for (s0, e0, n0), (s1, e1, n1) in zip(ks, ks[1:]):
        key = f"{kernel_class(n0)}->{kernel_class(n1)}"
        c, t, lst = gaps.get(key, (0, 0.0, []))
        lst.append(s1 - e0)
        gaps[key] = (c + 1, t + (s1 - e0), lst)
    by_name: dict = {}
    for s, e, n in ks:
        c, t = by_name.get(n[:100], (0, 0.0))
        by_name[n[:100]] = (c + 1, t + (e - s))
    out = {"kernels": len(ks), "gpu_us": sum(e - s for s, e, _ in ks),
           "span_us": (ks[-1][1] - ks[0][0]) if ks else 0.0,
           "gaps_us": {k: {"n": c, "sum": round(t, 2), "median": round(statistics.median(lst), 3)}
                       for k, (c, t, lst) in gaps.items()},
           "by_name": {n: [c, round(t, 2)] for n, (c, t) in sorted(by_name.items(), key=lambda kv: -kv[1][1])}}
    if keep_sequence:
        t0 = ks[0][0] if ks else 0.0
        out["sequence"] = [[n[:60], round(s - t0, 2), round(e - s, 2)] for s, e, n in ks[:2500]]
    return out


def host_and_wall(r: Run, fn, reps: int):
    """(median wall s by events, median host issue s): fn issued reps times, each after a sync."""
    walls, hosts = [], []
    for _ in range(reps):
        r.sync()
        if r.dev == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
        t = time.perf_counter(); fn(); h = time.perf_counter() - t
        if r.dev == "cuda":
            b.record(); b.synchronize(); walls.append(a.elapsed_time(b) / 1e3)
        else:
            walls.append(h)
        hosts.append(h)
    return statistics.median(walls), statistics.median(hosts)


def run_chains(r: Run):
    """Dependent chains captured as one CUDA graph: elementwise only, GEMM only, alternating."""
    dev, bf = r.dev, torch.bfloat16
    n = 64 if r.smoke else 4096
    x = torch.randn(8, n, device=dev, dtype=bf)
    Ws = [torch.randn(n, n, device=dev, dtype=bf) * (n ** -0.5) for _ in range(2 if r.smoke else 8)]  # 256 MB: off L2
    w = torch.randn(n, device=dev, dtype=bf)
    ew = [lambda v: v * w, lambda v: v + v, lambda v: torch.nn.functional.silu(v)]
    chains = {"elementwise": lambda v, j: ew[j % 3](v), "gemm": lambda v, j: v @ Ws[j % len(Ws)].t(),
              "alternating": lambda v, j: (v @ Ws[(j // 2) % len(Ws)].t()) if j % 2 == 0 else ew[(j // 2) % 3](v)}
    rows = []
    for kind, f in chains.items():
        def chain(i, f=f):
            v = x
            for j in range(48):
                v = f(v, j)
            return v
        g = _capture(r, lambda: chain(0))
        wall = r.timed(g, 20) / 48
        prof = profile_gaps(r, g, keep_sequence=False)
        rows.append({"kind": kind, "kernels_per_replay": 48, "wall_per_kernel_s": wall,
                     "profiled_kernels": prof["kernels"], "gpu_us": prof["gpu_us"], "span_us": prof["span_us"],
                     "gaps_us": prof["gaps_us"]})
        r.data["chains"] = rows; r.save()


def _capture(r: Run, fn):
    """fn captured as a CUDA graph (its replay), or fn itself on the CPU."""
    if r.dev != "cuda":
        return fn
    g = capture(fn)
    r._graphs = getattr(r, "_graphs", []) + [g]  # keep alive until the config is done
    return g.replay


def run_config(r: Run, cfg, decode, prefill, train):
    if r.smoke:
        cfg = toy_config(cfg)
        decode, prefill, train = ([(min(b, 2), min(s, 32)) for b, s in x] for x in (decode, prefill, train))
    gen = torch.Generator(device=r.dev).manual_seed(0)
    idx_of = lambda B, S: torch.randint(0, cfg.vocab_size, (B, S), device=r.dev, generator=gen)  # noqa: E731
    base = {"model": cfg.name, "config": cfg.model_dump(exclude={"source"})}
    model = build(cfg, torch.bfloat16, r.dev, max_pos=8192)
    for B, S in prefill:
        if r.left() < 30:
            r.data["skipped"].append(f"{cfg.name} prefill {B}x{S}"); continue
        idx = idx_of(B, S)
        model.setup_cache(B, S, torch.bfloat16, r.dev)

        def step():
            with torch.inference_mode():
                model(idx)[:, -1].argmax(-1)
        step(); step()
        wall, host = host_and_wall(r, step, 7)
        r.data["steps"].append({**base, "phase": "prefill", "launch": "eager", "batch": B, "seq_len": S,
                                "time_s": wall, "host_s": host, "profile": profile_gaps(r, step)})
        model.drop_cache(); r.save()
    for B, ctx in decode:
        if r.left() < 30:
            r.data["skipped"].append(f"{cfg.name} decode {B}x{ctx}"); continue
        random_cache(model, B, ctx, gen, r.dev)
        idx, pos = idx_of(B, 1), torch.tensor([ctx], device=r.dev)

        def eager():
            with torch.inference_mode():
                model(idx, pos)[:, -1].argmax(-1)
        eager(); eager()
        e_wall, e_host = host_and_wall(r, eager, 7)
        e_prof = profile_gaps(r, eager, keep_sequence=False)
        row = {**base, "phase": "decode", "batch": B, "seq_len": ctx, "eager_time_s": e_wall, "eager_host_s": e_host,
               "eager_profile": e_prof}
        try:
            replay = _capture(r, eager)
            row.update(launch="graph", time_s=r.timed(replay, 30), profile=profile_gaps(r, replay))
        except Exception as exc:  # noqa: BLE001 - the eager numbers stay; the record says why
            row.update(launch="eager", time_s=e_wall, profile=e_prof, graph_error=f"{type(exc).__name__}: {exc}"[:200])
            r.sync()
        r.data["steps"].append(row)
        r._graphs = []
        model.drop_cache(); r.save()
    del model
    if r.dev == "cuda":
        torch.cuda.empty_cache()
    for B, S in train:
        if r.left() < 35:
            r.data["skipped"].append(f"{cfg.name} train {B}x{S}"); continue
        model = build(cfg, torch.float32, r.dev, max_pos=8192)
        step = training_step(model, idx_of(B, S), idx_of(B, S), r.dev)
        step(); step()
        wall, host = host_and_wall(r, step, 4)
        r.data["steps"].append({**base, "phase": "train", "launch": "eager", "batch": B, "seq_len": S,
                                "time_s": wall, "host_s": host, "profile": profile_gaps(r, step, keep_sequence=False)})
        model = step = None
        if r.dev == "cuda":
            torch.cuda.empty_cache()
        r.save()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m costmodel.validation.step_calib_run")
    p.add_argument("--out", required=True)
    p.add_argument("--budget-s", type=float, default=270.0)
    p.add_argument("--smoke", action="store_true", help="toy sizes on the CPU")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    r = Run(args.out, args.budget_s, args.smoke).start("costmodel.validation.step_calib_run", "step_calib_h200.json",
                                                       {"chains": [], "steps": [], "skipped": []})
    torch.manual_seed(0)
    run_chains(r)
    print(f"chains done at {time.time() - r.t0:.0f} s", flush=True)
    for cfg, dec, pre, tr in CALIB_CONFIGS:
        r.guarded("steps", cfg.name, run_config, r, cfg, dec, pre, tr)
    r.save()
    for s in r.data["steps"]:
        if "time_s" in s:
            print(f"{s['model']:18s} {s['phase']:7s} {s['launch']:5s} B={s['batch']:3d} S={s['seq_len']:5d} "
                  f"{s['time_s'] * 1e3:9.3f} ms kernels {s['profile']['kernels']:5d} gpu {s['profile']['gpu_us'] / 1e3:8.3f} ms")
        else:
            print(s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
