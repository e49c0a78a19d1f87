"""The GPU run: op grids (GEMM, memory-bound ops, SDPA, launch costs) and whole-model steps, in one call.

    python3 -m costmodel.validation.step_run --out DIR [--budget-s 300] [--smoke]

Writes DIR/step_h200.json after every section, so a run stopped by its budget keeps what it
measured. Timing: CUDA events; ops captured R times into one CUDA graph and replayed (the
per-op time is the replay over R, launch gaps included, host excluded); prefill and training
eager, events around the step; decode one step captured as a CUDA graph. Weights random
(seeded), KV caches random, never zeros. ``--smoke`` runs every path on the CPU at toy sizes
(no graphs, no events) so the GPU call cannot fail on a typo.
"""

from __future__ import annotations
import argparse
import os
import statistics
import sys
import time

import torch

from costmodel.models import load_model
from costmodel.validation import step_grids as grids
from costmodel.validation.reference_model import build, n_params
from costmodel.validation.step_run_ops import (run_families, run_gemm, run_graph_gap, run_launch, run_memory_ops,
                                               run_sdpa)
from costmodel.validation.step_timing import (BACKENDS, Run, capture, kernel_profile, random_cache, toy_config,
                                              training_step)


def _graph_decode(eager):
    """Capture one decode step as a CUDA graph; (median replay s, peak bytes, graph)."""
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    g = capture(eager)
    times = []
    for _ in range(20):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); g.replay(); b.record(); b.synchronize()
        times.append(a.elapsed_time(b) / 1e3)
    return statistics.median(times), torch.cuda.max_memory_allocated(), g


def _backend(r: Run, cfg, B, S, L, causal) -> str:
    """The SDPA backend torch picks for this model's attention call (torch._fused_sdp_choice)."""
    try:
        q = torch.randn(B, cfg.n_heads, S, cfg.head_dim, device=r.dev, dtype=torch.bfloat16)
        k = torch.randn(B, cfg.n_kv_heads, L, cfg.head_dim, device=r.dev, dtype=torch.bfloat16)
        return BACKENDS.get(int(torch._fused_sdp_choice(q, k, k, None, 0.0, causal,
                                                        enable_gqa=cfg.n_kv_heads != cfg.n_heads)), "?")
    except Exception as exc:  # noqa: BLE001
        return f"unknown ({type(exc).__name__})"


def _peak(r: Run, fn) -> int:
    if r.dev != "cuda":
        fn(); return 0
    r.sync(); torch.cuda.reset_peak_memory_stats(); fn(); r.sync()
    return torch.cuda.max_memory_allocated()


def run_model(r: Run, name: str, plan: dict, profiled: set):
    cfg = load_model(name)
    if r.smoke:
        cfg = toy_config(cfg)
        plan = {ph: [(min(b, 2), min(s, 32)) for b, s in cfgs] for ph, cfgs in plan.items()}
    gen = torch.Generator(device=r.dev).manual_seed(0)
    baseline = torch.cuda.memory_allocated() if r.dev == "cuda" else 0
    rand_idx = lambda B, S: torch.randint(0, cfg.vocab_size, (B, S), device=r.dev, generator=gen)  # noqa: E731
    if any(plan.get(p) for p in ("prefill", "decode")) and r.left() > 20:
        model = build(cfg, torch.bfloat16, r.dev, max_pos=max(cfg.max_seq_len, 8192))
        for B, S in plan.get("prefill", []):
            if r.left() < 20:
                r.data["skipped"].append(f"{name} prefill {B}x{S}"); continue
            idx = rand_idx(B, S)
            model.setup_cache(B, S, torch.bfloat16, r.dev)

            def step():
                with torch.inference_mode():
                    model(idx)[:, -1].argmax(-1)
            step(); step()
            peak = _peak(r, step)
            row = {"model": name, "phase": "prefill", "batch": B, "seq_len": S, "time_s": r.timed(step, 5),
                   "peak_bytes": peak, "launch": "eager", "sdpa_backend": _backend(r, cfg, B, S, S, True),
                   "baseline_bytes": baseline}
            if (name, "prefill") not in profiled:
                row["profile"] = kernel_profile(r, step); profiled.add((name, "prefill"))
            model.drop_cache(); r.data["models"].append(row); r.save()
        for B, ctx in plan.get("decode", []):
            if r.left() < 20:
                r.data["skipped"].append(f"{name} decode {B}x{ctx}"); continue
            random_cache(model, B, ctx, gen, r.dev)
            idx, pos = rand_idx(B, 1), torch.tensor([ctx], device=r.dev)
            out = {}

            def eager():
                with torch.inference_mode():
                    out["next"] = model(idx, pos)[:, -1].argmax(-1)
            g = None
            if r.dev == "cuda":
                try:
                    t, peak, g = _graph_decode(eager)
                    replay = g.replay
                except Exception as exc:  # noqa: BLE001 - fall back to eager, say so
                    r.data["skipped"].append(f"{name} decode graph {B}x{ctx}: {type(exc).__name__}: {str(exc)[:200]}")
                    g = None
                    torch.cuda.synchronize()
            if g is None:
                eager(); t = r.timed(eager, 3); peak = _peak(r, eager); replay = eager
            row = {"model": name, "phase": "decode", "batch": B, "seq_len": ctx, "time_s": t, "peak_bytes": peak,
                   "launch": "graph" if g is not None else "eager", "eager_time_s": r.timed(eager, 3),
                   "baseline_bytes": baseline}
            row["sdpa_backend"] = _backend(r, cfg, B, 1, ctx + 1, False)
            if (name, "decode") not in profiled:
                row["profile"] = kernel_profile(r, replay); profiled.add((name, "decode"))
            replay = eager = g = None
            out.clear()
            model.drop_cache(); r.data["models"].append(row); r.save()
        del model
        if r.dev == "cuda":
            torch.cuda.empty_cache()
    for B, S in plan.get("train", []):
        if r.left() < 25:
            r.data["skipped"].append(f"{name} train {B}x{S}"); continue
        try:
            model = build(cfg, torch.float32, r.dev, max_pos=max(cfg.max_seq_len, 8192))
            step = training_step(model, rand_idx(B, S), rand_idx(B, S), r.dev)
            step(); step()
            peak = _peak(r, step)
            row = {"model": name, "phase": "train", "batch": B, "seq_len": S, "time_s": r.timed(step, 3),
                   "peak_bytes": peak, "launch": "eager", "params": n_params(model),
                   "sdpa_backend": _backend(r, cfg, B, S, S, True), "baseline_bytes": baseline}
            if (name, "train") not in profiled:
                row["profile"] = kernel_profile(r, step); profiled.add((name, "train"))
            r.data["models"].append(row)
        except torch.OutOfMemoryError as exc:
            r.data["models"].append({"model": name, "phase": "train", "batch": B, "seq_len": S,
                                     "error": f"out of memory: {str(exc)[:200]}"})
        finally:
            model = step = None
            if r.dev == "cuda":
                torch.cuda.empty_cache()
        r.save()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m costmodel.validation.step_run")
    p.add_argument("--out", required=True)
    p.add_argument("--budget-s", type=float, default=300.0)
    p.add_argument("--models", nargs="*", default=list(grids.MODEL_RUNS))
    p.add_argument("--smoke", action="store_true", help="toy sizes on the CPU")
    p.add_argument("--sections", nargs="*", default=["launch", "gemm", "memory_ops", "sdpa"],
                   help="op-grid sections to run (launch gemm memory_ops sdpa families graph_gap)")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    r = Run(args.out, args.budget_s, args.smoke)
    torch.manual_seed(0)
    sections = {"launch": run_launch, "gemm": run_gemm, "memory_ops": run_memory_ops, "sdpa": run_sdpa,
                "families": run_families, "graph_gap": run_graph_gap}
    for name in args.sections:
        section = sections[name]
        section(r)
        if r.dev == "cuda":
            torch.cuda.empty_cache()
        print(f"{section.__name__} done at {time.time() - r.t0:.0f} s", flush=True)
    profiled: set = set()
    for name in args.models:
        r.guarded("models", name, run_model, r, name, grids.MODEL_RUNS[name], profiled)
    r.save()
    for row in r.data["models"]:
        if "time_s" in row:
            print(f"{row['model']:15s} {row['phase']:7s} B={row['batch']:3d} S={row['seq_len']:5d} "
                  f"{row['time_s'] * 1e3:9.3f} ms  peak {row['peak_bytes'] / 1e9:7.2f} GB")
        else:
            print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
