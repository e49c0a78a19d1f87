"""The op grids of the step runs (``step_run``): launch costs, GEMMs, memory-bound ops, SDPA, kernel families.

What each grid holds is in ``step_grids`` / ``step_families``; ``step_fit`` fits them.
"""
import math
import time

import torch
import torch.nn.functional as F

from costmodel.models import ModelConfig, load_model
from costmodel.validation import step_grids as grids
from costmodel.validation.reference_model import build
from costmodel.validation.step_timing import BACKENDS, Run, _reps, kernel_profile


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
            A = Ws = C = None
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
            a = b = c = a32 = None
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

    from costmodel.validation.reference_model import RMSNorm
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
    """Kernel-family micro-benchmarks (costmodel/validation/step_families.py), per-op host costs, launch gaps."""
    from costmodel.validation import step_families as fam

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
            x = y = xf = rr = qkv = q = cos = cache = knew = None
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

        host["tiny_train_step_s"] = loop(tstep, 30)
        host["tiny_train_kernels"] = kernel_profile(r, tstep)["kernels"]
        mb = build(tiny, torch.bfloat16, dev)

        def fstep():  # run 2 (2026-12-02) timed this without inference_mode: autograd on; the fit does not use it
            with torch.inference_mode():
                mb(idx)
        host["tiny_prefill_s"] = loop(fstep, 50)
        host["tiny_prefill_kernels"] = kernel_profile(r, fstep)["kernels"]
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




def run_graph_gap(r: Run):
    """The gap between consecutive *different* kernels of a CUDA graph (not yet run on the GPU).

    A model's decode graph alternates kernel functions; the op grids replay R copies of one. Here a
    dependent chain cycles through six kernels of the decode families (add, mul by a broadcast, cast up,
    row mean, cat, cast down) on decode-sized tensors, captured once as the chain and once per kernel
    as R copies; gap = (chain time - the sum of the per-kernel times) / kernels. ``step_fit`` turns
    it into ``LaunchModel.graph_per_kernel_s``.
    """
    dev, bf = r.dev, torch.bfloat16
    rows = []
    for T in (1, 32):
        x = torch.randn(T, 4096, device=dev, dtype=bf)
        w = torch.randn(4096, device=dev, dtype=bf)
        steps = [lambda v: v + v, lambda v: v * w, lambda v: v.float(), lambda v: v.mean(-1, keepdim=True) + v,
                 lambda v: torch.cat([v[..., 2048:], v[..., :2048]], dim=-1), lambda v: v.to(bf)]

        def chain(i, n=60):
            v = x
            for j in range(n):
                v = steps[j % len(steps)](v)
            return v
        t_chain = r.graph_time(chain, 3) / 60
        singles = []
        v = x
        for s in steps:  # each kernel alone, R copies, on the input the chain gives it
            out = s(v)
            singles.append(r.graph_time(lambda i, s=s, v=v: s(v), 50))
            v = out
        rows.append({"T": T, "chain_per_kernel_s": t_chain, "single_per_kernel_s": sum(singles) / len(singles),
                     "gap_s": t_chain - sum(singles) / len(singles)})
    r.data["graph_gap"] = rows
    r.save()
