"""Timing for the step runs on the GPU (``step_run``): CUDA events, CUDA-graph replays, kernel profiles.

``Run`` holds the results file being written, the time budget and the device; ``graph_time``
captures R calls of an op into one CUDA graph and returns the replay time over R (launch gaps
included, host excluded); ``kernel_profile`` lists one call's kernels (torch.profiler).
"""
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time

import torch

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
        m = {"command": " ".join(["python3 -m costmodel.validation.step_run"] + sys.argv[1:]),
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

    def start(self, module: str, filename: str, keys: dict) -> "Run":
        """Write to ``filename`` in the run's folder, with ``keys`` (empty lists / dicts) beside
        ``meta``, whose command names ``module``."""
        self.path = os.path.join(os.path.dirname(self.path), filename)
        self.data = {"meta": self.meta(), **keys}
        self.data["meta"]["command"] = " ".join([f"python3 -m {module}"] + sys.argv[1:])
        return self

    def guarded(self, key: str, name: str, fn, *args):
        """``fn(*args)``; an exception is recorded under ``key`` as ``{"model": name, "error": ...}``
        and the run goes on (the other configurations keep their results)."""
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - the record says what broke
            self.data[key].append({"model": name, "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
            self.save()
            if self.dev == "cuda":
                torch.cuda.empty_cache()
        print(f"{name} done at {time.time() - self.t0:.0f} s", flush=True)

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


def capture(fn):
    """fn captured as one CUDA graph after two warm-up calls on a side stream: the graph (keep it alive
    while replaying)."""
    s = torch.cuda.Stream(); s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fn(); fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    g.replay(); g.replay(); torch.cuda.synchronize()
    return g


def toy_config(cfg):
    """A 2-layer, 64-wide version of cfg (the runners' --smoke size on the CPU)."""
    from costmodel.models import ModelConfig

    return ModelConfig.model_validate({**cfg.model_dump(), "n_layers": 2, "d_model": 64, "n_heads": 4,
                                       "n_kv_heads": 2 if cfg.n_kv_heads < cfg.n_heads else 4, "head_dim": 16,
                                       "ffn_dim": 128, "vocab_size": 256})


def random_cache(model, B: int, ctx: int, gen, dev: str):
    """A static bf16 KV cache of ctx + 1 slots per sequence, filled with seeded normals (never zeros)."""
    model.setup_cache(B, ctx + 1, torch.bfloat16, dev)
    for blk in model.layers:
        blk.attn.k_cache.normal_(generator=gen); blk.attn.v_cache.normal_(generator=gen)


def training_step(model, idx, tgt, dev: str):
    """One fused-AdamW step under autocast bf16 over the model's fp32 parameters (a closure)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=dev == "cuda")

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev, dtype=torch.bfloat16):
            loss = model.loss(idx, tgt)
        loss.backward()
        opt.step()
    return step


def _reps(est_s: float, target_s: float = 0.01, lo: int = 3, hi: int = 200) -> int:
    return int(min(hi, max(lo, target_s / max(est_s, 1e-7))))


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


