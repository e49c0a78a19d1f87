"""Time Linformer, Performer and Reformer (costmodel/validation/approx_torch.py) against torch SDPA on a GPU.

    python3 -m costmodel.validation.approx_bench --out DIR [--budget-s 80] [--ncu-budget-s 45] [--ncu-seq-lens 4096,32768]

Shapes: the FlashAttention-2 paper's benchmark (Dao 2023, §4.1): hidden 2048 (32 heads of 64 or
16 of 128), batch 16384 / N (at least 1), bf16, N = 1k ... 64k. Methods: the three
approximations (Performer and Reformer causal and not), SDPA's flash and cuDNN backends
(causal and not), and plain eager exact attention (N <= 16k). Each case is timed twice with
CUDA events, median of the repeats: ``eager`` (the queue empty when the call starts: what a
caller waits for) and ``gpu`` (behind a sleeping kernel that lets the host queue the whole
call first: the kernels' own time). With ``--ncu-seq-lens`` a second process runs each d = 64
case of those lengths once under Nsight Compute (DRAM bytes and duration per kernel, caches
flushed, clocks left alone), between ``spin_kernel`` markers (torch.cuda._sleep).

The sweep stops starting cases when ``--budget-s`` is spent and writes what it has. The grid,
the case list and the splitting of ncu's output are plain functions (tested on the CPU);
only ``run_sweep`` / ``run_ncu_child`` need a GPU.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

SEQ_LENS = (1024, 2048, 4096, 8192, 16384, 32768, 65536)
HEAD_DIMS = (64, 128)
PARAMS = {"linformer": {"proj_len": 256}, "performer": {"features": 256, "chunk": 128},
          "reformer": {"hash_rounds": 4, "bucket_size": 64}}
METHODS = (("linformer", False), ("performer", False), ("performer", True), ("reformer", False),
           ("reformer", True), ("torch-flash", False), ("torch-flash", True), ("torch-cudnn", False),
           ("torch-cudnn", True), ("exact-eager", False))
EXACT_EAGER_MAX_N = 16384  # S and P of 32 heads at 16k in bf16: 17 GB each
SEED = 1234
MARK = "spin_kernel"  # torch.cuda._sleep's kernel (aten/src/ATen/cuda/Sleep.cu)


@dataclass(frozen=True)
class Case:
    method: str
    causal: bool
    seq_len: int
    head_dim: int
    batch: int
    heads: int
    dtype: str = "bf16"

    @property
    def params(self) -> dict:
        return PARAMS.get(self.method, {})

    def label(self) -> str:
        return f"{self.method}{' causal' if self.causal else ''} N={self.seq_len} d={self.head_dim}"


def benchmark_shape(seq_len: int, head_dim: int) -> tuple[int, int]:
    """(batch, heads) of the FlashAttention-2 benchmark: 16k tokens a batch, hidden 2048."""
    return max(1, 16384 // seq_len), 2048 // head_dim


def cases(seq_lens=SEQ_LENS, head_dims=HEAD_DIMS, methods=METHODS) -> list[Case]:
    """Every case, N ascending (a budget cut loses the longest first), d and method inside."""
    out = []
    for n in seq_lens:
        for d in head_dims:
            b, h = benchmark_shape(n, d)
            for method, causal in methods:
                if method == "exact-eager" and n > EXACT_EAGER_MAX_N:
                    continue
                out.append(Case(method, causal, n, d, b, h))
    return out


def split_on_markers(names: list[str], n_cases: int) -> list[list[int] | None]:
    """Indices of the kernels between consecutive marker pairs, one list per case (None if missing)."""
    groups, current = [], None
    for i, name in enumerate(names):
        if MARK in name:
            if current is None:
                current = []
            else:
                groups.append(current)
                current = None
        elif current is not None:
            current.append(i)
    return (groups + [None] * n_cases)[:n_cases]


# ---------------------------------------------------------------- on the GPU


def inputs(case: Case, device="cuda"):
    """q, k, v (B, H, N, d): standard normal, seeded, drawn on ``device``."""
    import torch

    dt = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32, "fp64": torch.float64}[case.dtype]
    g = torch.Generator(device=device).manual_seed(SEED)
    shape = (case.batch, case.heads, case.seq_len, case.head_dim)
    return [torch.randn(shape, generator=g, device=device, dtype=torch.float32).to(dt) for _ in range(3)]


def make_run(case: Case, device="cuda"):
    """A closure running one forward call of ``case`` on fresh seeded inputs."""
    import torch

    from costmodel.validation import approx_torch as at

    q, k, v = inputs(case, device)
    dt = q.dtype
    g = torch.Generator(device="cpu").manual_seed(SEED)  # the method's parameters, drawn on the host
    p = case.params
    if case.method == "linformer":
        E, F = at.linformer_projections(p["proj_len"], case.seq_len, g, dt, device)
        return lambda: at.linformer_attention(q, k, v, E, F)
    if case.method == "performer":
        W = at.performer_random_features(p["features"], case.head_dim, g, dt, device)
        return lambda: at.performer_attention(q, k, v, W, causal=case.causal, chunk=p["chunk"])
    if case.method == "reformer":
        R = at.reformer_rotations(case.head_dim, p["hash_rounds"], case.seq_len // p["bucket_size"], g, dt, device)
        return lambda: at.reformer_attention(q, v, R, causal=case.causal, bucket_size=p["bucket_size"])
    if case.method == "exact-eager":
        return lambda: at.exact_attention(q, k, v, causal=case.causal)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = {"torch-flash": SDPBackend.FLASH_ATTENTION, "torch-cudnn": SDPBackend.CUDNN_ATTENTION}[case.method]

    def run():
        with sdpa_kernel(backend):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=case.causal)
    return run


def time_run(run, repeats: int, behind_sleep: bool) -> list[float]:
    import torch

    out = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        if behind_sleep:
            torch.cuda._sleep(4_000_000)  # ~2 ms at 1.98 GHz: the host queues the whole call meanwhile
        start.record()
        run()
        end.record()
        torch.cuda.synchronize()
        out.append(start.elapsed_time(end) * 1e-3)
    return out


def host_per_op_s(ops: int = 400) -> float:
    """Host time of one eager op: a chain of tiny adds, wall clock, the GPU never the bottleneck."""
    import torch

    x = torch.zeros(1, device="cuda")
    for _ in range(20):
        x = x + 1
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(ops):
        x = x + 1
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / ops


def accuracy(case: Case, device="cuda") -> dict:
    """The bf16 program against the same program in float64, and the float64 one against exact attention."""
    from costmodel.validation import approx_torch as at

    out = make_run(case, device)().double()
    c64 = Case(case.method, case.causal, case.seq_len, case.head_dim, case.batch, case.heads, "fp64")
    ref = make_run(c64, device)()
    q, k, v = inputs(c64, device)
    if case.method == "reformer":  # shared QK: the keys are the normalised queries
        k = q / q.norm(dim=-1, keepdim=True)
    exact = at.exact_attention(q, k, v, causal=case.causal)

    def rel(a, b):
        return float((a - b).norm() / b.norm())
    return {"rel_err_bf16_vs_fp64_program": rel(out, ref), "rel_err_fp64_vs_exact_attention": rel(ref, exact),
            "finite": bool(out.isfinite().all())}


def run_sweep(all_cases: list[Case], budget_s: float, log=print) -> list[dict]:
    import torch

    t_end = time.time() + budget_s
    records = []
    for case in all_cases:
        if time.time() > t_end:
            records.append({"case": asdict(case), "skipped": "budget"})
            continue
        rec = {"case": asdict(case), "params": case.params}
        try:
            run = make_run(case)
            t0 = time.perf_counter()
            run()
            torch.cuda.synchronize()
            first = time.perf_counter() - t0
            run()
            torch.cuda.synchronize()
            reps = int(min(15, max(3, 0.15 / max(first, 1e-5))))
            rec["gpu_samples_s"] = time_run(run, reps, True)
            rec["eager_samples_s"] = time_run(run, reps, False)
            rec["gpu_time_s"] = sorted(rec["gpu_samples_s"])[reps // 2]
            rec["eager_time_s"] = sorted(rec["eager_samples_s"])[reps // 2]
            log(f"{case.label():40s} B={case.batch:2d} H={case.heads:2d}  gpu {rec['gpu_time_s'] * 1e3:9.3f} ms"
                f"  eager {rec['eager_time_s'] * 1e3:9.3f} ms  ({reps} reps)")
        except Exception as exc:  # noqa: BLE001 - one case failing must not lose the others
            rec["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            log(f"{case.label():40s} ERROR {rec['error']}")
        records.append(rec)
        del run
        torch.cuda.empty_cache()
    return records


def run_ncu_child(cases_file: str, deadline: float | None = None) -> None:
    """Under ncu: each case once after a warm-up, between two marker kernels, inside profiler start/stop.
    No case starts after ``deadline`` (time.time()), so that ncu still writes what it has."""
    import torch

    cs = [Case(**c) for c in json.loads(Path(cases_file).read_text())]
    for case in cs:
        if deadline is not None and time.time() > deadline:
            print(f"ncu child: deadline; {case.label()} and later not run", file=sys.stderr)
            break
        run = None
        try:
            run = make_run(case)
            run()
        except Exception as exc:  # noqa: BLE001
            print(f"ncu child: {case.label()}: {exc}", file=sys.stderr)
        torch.cuda.synchronize()
        torch.cuda.cudart().cudaProfilerStart()
        torch.cuda._sleep(1000)
        try:
            if run is not None:
                run()
        except Exception as exc:  # noqa: BLE001
            print(f"ncu child: {case.label()}: {exc}", file=sys.stderr)
        torch.cuda._sleep(1000)
        torch.cuda.synchronize()
        torch.cuda.cudart().cudaProfilerStop()
        del run
        torch.cuda.empty_cache()


def run_ncu(ncu_cases: list[Case], budget_s: float, out_dir: Path, log=print) -> tuple[list, str]:
    cases_file = out_dir / "ncu_cases.json"
    cases_file.write_text(json.dumps([asdict(c) for c in ncu_cases]))
    log_file = out_dir / "ncu.csv"
    cmd = ["ncu", "--csv", "--page", "raw", "--metrics",
           "dram__bytes_read.sum,dram__bytes_write.sum,gpu__time_duration.sum", "--clock-control", "none",
           "--cache-control", "all", "--profile-from-start", "off", "--target-processes", "all",
           "--log-file", str(log_file), sys.executable, "-m", "costmodel.validation.approx_bench", "--ncu-child", str(cases_file),
           "--ncu-deadline", f"{time.time() + 0.7 * budget_s:.0f}"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=budget_s)
        note = f"ncu rc {proc.returncode}; {proc.stderr[-300:]}"
    except subprocess.TimeoutExpired:
        note = f"ncu did not finish in {budget_s:.0f} s"
    except FileNotFoundError:
        return [None] * len(ncu_cases), "ncu not found"
    if not log_file.exists():
        return [None] * len(ncu_cases), note + "; no log"
    from costmodel.validation import parse_ncu_csv

    try:
        kernels = parse_ncu_csv(log_file.read_text())
    except ValueError as exc:
        return [None] * len(ncu_cases), f"{note}; unreadable: {exc}"
    groups = split_on_markers([k.name for k in kernels], len(ncu_cases))
    out = [None if grp is None else [{"name": kernels[i].name[:200], "dram_read_bytes": kernels[i].dram_read_bytes,
                                      "dram_write_bytes": kernels[i].dram_write_bytes, "time_s": kernels[i].time_s}
                                     for i in grp] for grp in groups]
    log(f"ncu: {len(kernels)} kernels, {sum(g is not None for g in out)} of {len(ncu_cases)} cases")
    return out, note


def meta(command: str) -> dict:
    import torch

    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm", "--format=csv,noheader"],
                         capture_output=True, text=True).stdout.strip()
    return {"command": command, "gpu": torch.cuda.get_device_name(), "nvidia_smi": smi, "torch": torch.__version__,
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "shapes": "batch = max(1, 16384 / N), heads = 2048 / d (FlashAttention-2 paper §4.1), bf16",
            "timing": "CUDA events, median; gpu: behind torch.cuda._sleep(4e6 cycles); eager: queue empty at start"}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out/approx_bench")
    ap.add_argument("--budget-s", type=float, default=80.0)
    ap.add_argument("--ncu-budget-s", type=float, default=45.0)
    ap.add_argument("--ncu-seq-lens", default="4096,32768")
    ap.add_argument("--seq-lens", default=",".join(map(str, SEQ_LENS)))
    ap.add_argument("--ncu-child", help=argparse.SUPPRESS)
    ap.add_argument("--ncu-deadline", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.ncu_child:
        return run_ncu_child(args.ncu_child, args.ncu_deadline)
    import torch

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logf = open(out / "log.txt", "a")

    def log(msg):
        print(msg, flush=True)
        logf.write(msg + "\n")
        logf.flush()

    result = {"meta": meta(" ".join(["python3 -m costmodel.validation.approx_bench"] + (argv or sys.argv[1:]))), "records": []}
    path = out / "approx_h200.json"
    result["meta"]["host_per_op_s"] = host_per_op_s()
    log(f"host per eager op: {result['meta']['host_per_op_s'] * 1e6:.1f} us")
    try:
        result["accuracy"] = {f"{m}{' causal' if c else ''}": accuracy(Case(m, c, 1024, 64, 2, 8))
                              for m, c in METHODS if m in PARAMS}
        log(f"accuracy at N=1024, d=64, B=2, H=8: {json.dumps(result['accuracy'])}")
    except Exception as exc:  # noqa: BLE001
        result["accuracy"] = {"error": f"{type(exc).__name__}: {exc}"}
    seq_lens = tuple(int(x) for x in args.seq_lens.split(",") if x)
    result["records"] = run_sweep(cases(seq_lens), args.budget_s, log)
    path.write_text(json.dumps(result, indent=1))
    ncu_lens = [int(x) for x in args.ncu_seq_lens.split(",") if x]
    if ncu_lens and args.ncu_budget_s > 0:
        ncu_cases = [c for n in sorted(ncu_lens, reverse=True) for c in cases((n,), (64,))  # longest first
                     if c.method != "exact-eager" or c.seq_len <= 4096]
        groups, note = run_ncu(ncu_cases, args.ncu_budget_s, out, log)
        result["ncu"] = {"note": note, "cases": [{"case": asdict(c), "kernels": g} for c, g in zip(ncu_cases, groups)]}
        path.write_text(json.dumps(result, indent=1))
    log(f"wrote {path}")
    del torch


if __name__ == "__main__":
    main()
