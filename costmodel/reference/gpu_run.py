"""The GPU run: op grids (GEMM, memory-bound ops, SDPA, launch costs) and whole-model steps, in one call.

    python3 -m costmodel.reference.gpu_run --out DIR [--budget-s 300] [--smoke]

Writes DIR/step_h200.json after every section, so a run stopped by its budget keeps what it
measured. Timing: CUDA events; ops captured R times into one CUDA graph and replayed (the
per-op time is the replay over R, launch gaps included, host excluded); prefill and training
eager, events around the step; decode one step captured as a CUDA graph. Weights random
(seeded), KV caches random, never zeros. ``--smoke`` runs every path on the CPU at toy sizes
(no graphs, no events) so the GPU call cannot fail on a typo.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from costmodel.models import ModelConfig, load_model
from costmodel.reference import grids
from costmodel.reference.model import build, n_params

BACKENDS = {0: "math", 1: "flash", 2: "efficient", 3: "cudnn", 4: "overrideable", -1: "error"}


class Run:
    def __init__(self, out_dir: str, budget_s: float, smoke: bool):
        self.t0 = time.time()
        self.budget_s, self.smoke = budget_s, smoke
        self.dev = "cpu" if smoke else "cuda"
        self.path = os.path.join(out_dir, "step_h200.json")
        self.data = {"meta": self.meta(), "gemm": [], "memory_ops": [], "launch": {}, "sdpa": [], "models": [],
                     "skipped": []}

    def left(self) -> float:
        return self.budget_s - (time.time() - self.t0)

    def meta(self) -> dict:
        m = {"command": " ".join(["python3 -m costmodel.reference.gpu_run"] + sys.argv[1:]),
             "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "torch": torch.__version__}
        if torch.cuda.is_available():
            m.update(gpu=torch.cuda.get_device_name(), cuda=torch.version.cuda,
                     cudnn=torch.backends.cudnn.version(), capability=list(torch.cuda.get_device_capability()))
            try:
                m["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm", "--format=csv,noheader"],
                                             capture_output=True, text=True, timeout=20).stdout.strip()
            except Exception as exc:  # noqa: BLE001 - the record says why
                m["driver"] = f"unknown ({exc})"
        return m

    def save(self):
        self.data["meta"]["elapsed_s"] = round(time.time() - self.t0, 1)
        with open(self.path, "w") as f:
            json.dump(self.data, f)

    def sync(self):
        if self.dev == "cuda":
            torch.cuda.synchronize()

    # ------------------------------------------------------------ timing
    def timed(self, fn, reps: int = 5) -> float:
        """Median seconds of fn() (events on the GPU, a host clock on the CPU)."""
        out = []
        for _ in range(reps):
            if self.dev == "cuda":
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record(); fn(); b.record(); b.synchronize()
                out.append(a.elapsed_time(b) / 1e3)
            else:
                t = time.perf_counter(); fn(); out.append(time.perf_counter() - t)
        return statistics.median(out)

    def graph_time(self, step, reps: int) -> float:
        """Seconds per call of step(i), R calls captured into one CUDA graph and replayed."""
        if self.dev != "cuda":
            return self.timed(lambda: [step(i) for i in range(reps)], 3) / reps
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for i in range(2):
                step(i)
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            for i in range(reps):
                step(i)
        g.replay(); torch.cuda.synchronize()
        t = self.timed(g.replay, 5) / reps
        del g
        return t


def _reps(est_s: float, target_s: float = 0.01, lo: int = 3, hi: int = 200) -> int:
    return int(min(hi, max(lo, target_s / max(est_s, 1e-7))))


def run_gemm(r: Run):
    models = [load_model(m) for m in grids.MODEL_RUNS]
    for split, shapes in (("fit", grids.gemm_fit_grid()), ("heldout", grids.gemm_heldout_grid(models))):
        for m, n, k in shapes:
            if r.left() < r.budget_s * 0.80:  # the grids get at most a fifth of the budget
                r.data["skipped"].append(f"gemm {split} from {(m, n, k)}")
                return
            if r.smoke:
                m, n, k = min(m, 64), min(n, 64), min(k, 64)
            dt_ = torch.bfloat16
            copies = max(1, min(8, math.ceil(256e6 / (n * k * 2))))
            A = torch.randn(m, k, device=r.dev, dtype=dt_)
            Ws = [torch.randn(n, k, device=r.dev, dtype=dt_) for _ in range(copies)]
            C = torch.empty(m, n, device=r.dev, dtype=dt_)
            est = max(2 * m * n * k / 7e14, 2 * (m * k + n * k + m * n) / 3.5e12, 4e-6)
            t = r.graph_time(lambda i: torch.mm(A, Ws[i % copies].t(), out=C), _reps(est, 0.005, 3, 100))
            r.data["gemm"].append({"split": split, "m": m, "n": n, "k": k, "dtype": "bf16", "time_s": t})
            del A, Ws, C
        r.save()


def run_memory_ops(r: Run):
    for split in ("fit", "heldout"):
        for op, n in grids.memory_grid(split == "fit"):
            if r.left() < r.budget_s * 0.75:
                r.data["skipped"].append(f"memory {split} from {(op, n)}")
                break
            if r.smoke:
                n = min(n, 4096)
            a = torch.randn(n, device=r.dev, dtype=torch.bfloat16)
            b = torch.randn(n, device=r.dev, dtype=torch.bfloat16)
            c = torch.empty_like(a)
            a32 = torch.randn(n, device=r.dev) if op in ("cast", "mean") else None
            fns = {"copy": lambda i: c.copy_(a), "add": lambda i: torch.add(a, b, out=c),
                   "mul": lambda i: torch.mul(a, b, out=c), "silu": lambda i: F.silu(a),
                   "cast": lambda i: a32.to(torch.bfloat16), "mean": lambda i: a32.view(-1, 1024).mean(-1)}
            nbytes = grids.memory_op_bytes(op, n)
            t = r.graph_time(fns[op], _reps(nbytes / 3e12 + 3e-6, 0.004, 3, 300))
            r.data["memory_ops"].append({"split": split, "op": op, "elements": n, "bytes": nbytes, "time_s": t})
            del a, b, c, a32
        r.save()


def run_launch(r: Run):
    x = torch.randn(64, device=r.dev, dtype=torch.bfloat16)
    y = torch.empty_like(x)
    w = torch.randn(64, 64, device=r.dev, dtype=torch.bfloat16)
    N = 2000 if not r.smoke else 50

    def loop(fn, n):
        r.sync(); t = time.perf_counter()
        for _ in range(n):
            fn()
        r.sync()
        return (time.perf_counter() - t) / n

    from costmodel.reference.model import RMSNorm
    norm = RMSNorm(64).to(r.dev).to(torch.bfloat16)
    for _ in range(3):
        loop(lambda: torch.add(x, x, out=y), 50)
    res = {"eager_add_s": loop(lambda: torch.add(x, x, out=y), N),
           "eager_linear_s": loop(lambda: F.linear(x[None], w), N),
           "eager_rmsnorm_per_kernel_s": loop(lambda: norm(x[None]), N // 4) / 8}
    if r.dev == "cuda":
        res["graph_tiny_kernel_s"] = r.graph_time(lambda i: torch.add(x, x, out=y), 200)
        g = torch.cuda.CUDAGraph()
        s = torch.cuda.Stream(); s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            torch.add(x, x, out=y)
        torch.cuda.current_stream().wait_stream(s)
        with torch.cuda.graph(g):
            torch.add(x, x, out=y)
        res["graph_replay_one_kernel_s"] = loop(g.replay, N // 4)
    r.data["launch"] = res
    r.save()


def run_sdpa(r: Run):
    for kind, shapes in (("prefill", grids.SDPA_PREFILL), ("decode", grids.SDPA_DECODE)):
        for B, H, Hkv, L, d in shapes:
            if r.left() < r.budget_s * 0.72:
                r.data["skipped"].append(f"sdpa {kind} {(B, H, Hkv, L, d)}")
                continue
            if r.smoke:
                B, H, Hkv, L, d = 1, 4, 2, 64, 16
            S = L if kind == "prefill" else 1
            q = torch.randn(B, H, S, d, device=r.dev, dtype=torch.bfloat16)
            k = torch.randn(B, Hkv, L, d, device=r.dev, dtype=torch.bfloat16)
            v = torch.randn(B, Hkv, L, d, device=r.dev, dtype=torch.bfloat16)
            causal, gqa = kind == "prefill", Hkv != H
            try:
                backend = BACKENDS.get(int(torch._fused_sdp_choice(q, k, v, None, 0.0, causal, enable_gqa=gqa)), "?")
            except Exception as exc:  # noqa: BLE001
                backend = f"unknown ({type(exc).__name__})"
            fwd = lambda i: F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=gqa)  # noqa: E731
            try:
                t = r.graph_time(fwd, 20 if kind == "decode" else 5)
            except Exception as exc:  # noqa: BLE001
                r.data["skipped"].append(f"sdpa graph {kind}: {type(exc).__name__}: {str(exc)[:120]}")
                torch.cuda.synchronize()
                t = r.timed(lambda: fwd(0), 10)
            row = {"kind": kind, "B": B, "H": H, "Hkv": Hkv, "L": L, "d": d, "causal": causal, "backend": backend,
                   "fwd_s": t}
            if kind == "prefill":
                qg, kg, vg = (t_.detach().requires_grad_() for t_ in (q, k, v))
                do = torch.randn_like(q)

                def fb():
                    o = F.scaled_dot_product_attention(qg, kg, vg, is_causal=True, enable_gqa=gqa)
                    o.backward(do)
                fb(); r.sync()
                row["fwd_bwd_s"] = r.timed(fb, 5)
            r.data["sdpa"].append(row)
            q = k = v = qg = kg = vg = do = None
        r.save()


def run_families(r: Run):
    """Kernel-family micro-benchmarks (costmodel/reference/families.py), per-op host costs, launch gaps."""
    from costmodel.reference import families as fam

    bf, dev = torch.bfloat16, r.dev
    rows, host = [], {}
    for h, split in ((fam.FIT_WIDTH, "fit"), (fam.HELDOUT_WIDTH, "heldout")):
        for T in fam.FAMILY_TOKENS:
            if r.left() < r.budget_s * 0.85:
                r.data["skipped"].append(f"families from h={h} T={T}"); break
            if r.smoke:
                T, h = min(T, 8), 256
            H = h // fam.HEAD_DIM
            x, y = torch.randn(T, h, device=dev, dtype=bf), torch.randn(T, h, device=dev, dtype=bf)
            xf, rr = torch.randn(T, h, device=dev), torch.rand(T, 1, device=dev) + 0.5
            qkv = torch.randn(T, 3 * h, device=dev, dtype=bf)
            q = qkv[:, :h].view(T, H, fam.HEAD_DIM)
            cos = torch.randn(T, 1, fam.HEAD_DIM, device=dev, dtype=bf)
            cache = torch.randn(T, 8, 512, fam.HEAD_DIM, device=dev, dtype=bf)
            knew = torch.randn(T, 8, 1, fam.HEAD_DIM, device=dev, dtype=bf)
            pos = torch.tensor([300], device=dev)
            half = fam.HEAD_DIM // 2
            ops = {"vectorized": lambda i: x + y, "cast_up": lambda i: x.float(), "cast_down": lambda i: xf.to(bf),
                   "broadcast": lambda i: xf * rr, "strided": lambda i: q * cos,
                   "cat": lambda i: torch.cat([-q[..., half:], q[..., :half]], dim=-1),
                   "index_copy": lambda i: cache.index_copy_(2, pos, knew),
                   "reduce": lambda i: xf.mean(-1, keepdim=True),
                   "layernorm": lambda i: F.layer_norm(x, (h,))}
            for name, fn in ops.items():
                nbytes = fam.family_bytes(name, T, h)
                t = r.graph_time(fn, _reps(nbytes / 3e12 + 3e-6, 0.003, 3, 200))
                rows.append({"split": split, "family": name, "T": T, "h": h, "bytes": nbytes, "time_s": t})
                if T == 1 and split == "fit":
                    r.sync(); t0 = time.perf_counter()
                    for _ in range(300):
                        fn(0)
                    r.sync()
                    host[name] = (time.perf_counter() - t0) / 300
            del x, y, xf, rr, qkv, q, cos, cache, knew
        r.data["families"] = rows
        r.save()
    # host cost of library calls at decode size, and of the neg in RoPE (one kernel each)
    x = torch.randn(1, 4096, device=dev, dtype=bf)
    w = torch.randn(4096, 4096, device=dev, dtype=bf)
    qd = torch.randn(1, 32, 1, 128, device=dev, dtype=bf)
    kd = torch.randn(1, 8, 1024, 128, device=dev, dtype=bf)

    def loop(fn, n=300):
        fn(); r.sync(); t0 = time.perf_counter()
        for _ in range(n):
            fn()
        r.sync()
        return (time.perf_counter() - t0) / n
    host["linear"] = loop(lambda: F.linear(x, w))
    host["sdpa_decode"] = loop(lambda: F.scaled_dot_product_attention(qd, kd, kd, enable_gqa=True))
    host["silu"] = loop(lambda: F.silu(x))
    # launch gaps in a graph: a chain of dependent tiny kernels against independent ones
    z = torch.zeros(256, device=dev)
    if r.dev == "cuda":
        host["graph_chain_kernel_s"] = r.graph_time(lambda i: z.add_(1.0), 200)
    # a tiny model's eager training step: host cost per kernel with autograd
    try:
        tiny = ModelConfig.model_validate({**load_model("tinyllama-1.1b").model_dump(), "n_layers": 2,
                                           "d_model": 128, "n_heads": 4, "n_kv_heads": 2, "head_dim": 32,
                                           "ffn_dim": 256, "vocab_size": 512, "name": "tiny"})
        m = build(tiny, torch.float32, dev)
        opt = torch.optim.AdamW(m.parameters(), lr=1e-5, fused=dev == "cuda")
        idx = torch.randint(0, 512, (1, 8), device=dev)

        def tstep():
            opt.zero_grad(set_to_none=True)
            with torch.autocast(dev, dtype=torch.bfloat16):
                loss = m.loss(idx, idx)
            loss.backward(); opt.step()

        def fstep():
            with torch.inference_mode():
                m(idx)
        host["tiny_train_step_s"] = loop(tstep, 30)
        host["tiny_train_kernels"] = kernel_profile(r, tstep)["kernels"]
        mb = build(tiny, torch.bfloat16, dev)
        host["tiny_prefill_s"] = loop(lambda: mb(idx), 50)
        host["tiny_prefill_kernels"] = kernel_profile(r, lambda: mb(idx))["kernels"]
        del fstep
    except Exception as exc:  # noqa: BLE001
        host["tiny_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    r.data["host"] = host
    # unaligned GEMMs (an N that is not a multiple of 8 elements: cuBLAS's align-1 kernels)
    for m_, n_, k_ in [(m_, n_, k_) for m_ in (1, 64, 512, 4096) for n_ in (3001, 10007) for k_ in (1024, 2048)]:
        if r.smoke:
            m_, n_, k_ = min(m_, 16), 101, 64
        A = torch.randn(m_, k_, device=dev, dtype=bf)
        W = torch.randn(n_, k_, device=dev, dtype=bf)
        C = torch.empty(m_, n_, device=dev, dtype=bf)
        t = r.graph_time(lambda i: torch.mm(A, W.t(), out=C), 5)
        r.data["gemm"].append({"split": "unaligned", "m": m_, "n": n_, "k": k_, "dtype": "bf16", "time_s": t})
    r.save()


def kernel_profile(r: Run, fn) -> dict:
    """Kernels of one call of fn: [name, duration_us] in launch order and totals by name."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if r.dev == "cuda" else [])
    with profile(activities=acts) as prof:
        fn(); r.sync()
    seq = []
    for e in prof.events():
        if r.dev == "cuda" and e.device_type != torch.autograd.DeviceType.CUDA:
            continue
        seq.append((e.time_range.start, e.name[:120], e.time_range.elapsed_us()))
    seq.sort()
    totals: dict = {}
    for _, name, us in seq:
        c, t = totals.get(name, (0, 0.0))
        totals[name] = (c + 1, t + us)
    return {"kernels": len(seq), "gpu_us": sum(us for _, _, us in seq),
            "sequence": [[n[:90], round(us, 2)] for _, n, us in seq[:3000]],
            "by_name": {n: [c, round(t, 2)] for n, (c, t) in sorted(totals.items(), key=lambda kv: -kv[1][1])}}


def _graph_decode(eager):
    """Capture one decode step as a CUDA graph; (median replay s, peak bytes, graph)."""
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    s = torch.cuda.Stream(); s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        eager(); eager()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        eager()
    g.replay(); g.replay(); torch.cuda.synchronize()
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
        cfg = ModelConfig.model_validate({**cfg.model_dump(), "n_layers": 2, "d_model": 64, "n_heads": 4,
                                          "n_kv_heads": 2 if cfg.n_kv_heads < cfg.n_heads else 4, "head_dim": 16,
                                          "ffn_dim": 128, "vocab_size": 256})
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
            model.setup_cache(B, ctx + 1, torch.bfloat16, r.dev)
            for blk in model.layers:
                blk.attn.k_cache.normal_(generator=gen); blk.attn.v_cache.normal_(generator=gen)
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
            opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=r.dev == "cuda")
            idx, tgt = rand_idx(B, S), rand_idx(B, S)

            def step():
                opt.zero_grad(set_to_none=True)
                with torch.autocast(r.dev, dtype=torch.bfloat16):
                    loss = model.loss(idx, tgt)
                loss.backward()
                opt.step()
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
            model = opt = None
            if r.dev == "cuda":
                torch.cuda.empty_cache()
        r.save()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m costmodel.reference.gpu_run")
    p.add_argument("--out", required=True)
    p.add_argument("--budget-s", type=float, default=300.0)
    p.add_argument("--models", nargs="*", default=list(grids.MODEL_RUNS))
    p.add_argument("--smoke", action="store_true", help="toy sizes on the CPU")
    p.add_argument("--sections", nargs="*", default=["launch", "gemm", "memory_ops", "sdpa"],
                   help="op-grid sections to run (launch gemm memory_ops sdpa families)")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    r = Run(args.out, args.budget_s, args.smoke)
    torch.manual_seed(0)
    sections = {"launch": run_launch, "gemm": run_gemm, "memory_ops": run_memory_ops, "sdpa": run_sdpa,
                "families": run_families}
    for name in args.sections:
        section = sections[name]
        section(r)
        if r.dev == "cuda":
            torch.cuda.empty_cache()
        print(f"{section.__name__} done at {time.time() - r.t0:.0f} s", flush=True)
    profiled: set = set()
    for name in args.models:
        try:
            run_model(r, name, grids.MODEL_RUNS[name], profiled)
        except Exception as exc:  # noqa: BLE001 - keep the other models' results
            r.data["models"].append({"model": name, "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
            r.save()
        print(f"{name} done at {time.time() - r.t0:.0f} s", flush=True)
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
