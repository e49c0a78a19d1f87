"""The thin GPU runner: torch's attention implementations timed with CUDA events over the
calibration grid (twice, for the spread) and the held-out grid, then the Nsight Compute subset.

    python3 -m costmodel.validation.implementations.gpu_run --out DIR [--budget-s 330] [--ncu-budget-s 110]
        [--phases GRID:PART:REP[@SHARE],... | none] [--no-ncu] [--ncu-set default | calibration-bwd | probe]

``--phases``: the timed phases in order, each a grid (calibration | heldout), a part (all | decode |
prefill | blocks: the calibration grid's block-count sweep, ``grids.block_sweep_shapes``) and a repeat number, optionally ``@SHARE``: the phase stops at that share of the budget
(default: the budget's end). Default: calibration, held-out, calibration again (the 2026-12-02 run);
``none``: no timing. ``--ncu-set calibration-bwd``: Nsight Compute on the calibration grid's fused fwd+bwd
calls (cuDNN first), the points the backward's DRAM bytes are fitted on, instead of the default subset;
``--ncu-set probe``: grids.ncu_probe_cases, shapes that only diagnose.

Writes DIR/impls-raw.json (rewritten after every phase, so a run stopped on its budget keeps
what it has) and DIR/ncu.csv. Every input is a view into one pool of random bf16 numbers made
once, so no case launches set-up kernels (which Nsight Compute would also profile); inputs
rotate among copies whose total passes 3x the L2, so the timed calls do not read a warm cache.
A call is timed alone between two events after a synchronize: the host's work for the call
(dispatch, cuDNN graph lookup, launches) is inside the time, as a user calling it once sees it.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from costmodel.validation.implementations import grids, ncu as ncu_mod

POOL_ELEMENTS = 1_400_000_000  # 2.8 GB of bf16 random normals
BACKENDS = {"torch-flash": "FLASH_ATTENTION", "torch-cudnn": "CUDNN_ATTENTION",
            "torch-efficient": "EFFICIENT_ATTENTION", "torch-math": "MATH"}


def event_time_s(torch, fn, spin: bool = False) -> float:
    """One call of ``fn`` alone: CUDA events around it after a synchronize, the host's work inside the
    time. ``spin``: wait for the stop event by polling it (the core never sleeps) instead of synchronizing."""
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    fn()
    stop.record()
    if spin:
        while not stop.query():
            pass
    else:
        stop.synchronize()
    return start.elapsed_time(stop) * 1e-3


class Bench:
    def __init__(self, device: str = "cuda", pool_elements: int = POOL_ELEMENTS):
        import torch

        self.torch, self.device, self.pool_elements = torch, device, pool_elements
        gen = torch.Generator(device=device).manual_seed(0)
        self.pool = torch.randn(pool_elements, device=device, dtype=torch.bfloat16, generator=gen)
        self.l2 = torch.cuda.get_device_properties(0).L2_cache_size if device == "cuda" else 1 << 20

    def sync(self):
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def inputs(self, s: grids.Shape, n_sets: int | None = None):
        """``n_sets`` copies of (q, k, v, dO) as views into the pool, each a leaf."""
        qn = s.batch * s.heads * s.seq_len * s.head_dim
        kn = s.batch * s.kv_heads * s.kv_len * s.head_dim
        per = 2 * qn + 2 * kn
        if n_sets is None:
            n_sets = max(1, min(8, math.ceil(3 * self.l2 / (2 * per))))
        n_sets = max(1, min(n_sets, self.pool_elements // per))
        sets = []
        for i in range(n_sets):
            o = i * per
            q = self.pool[o:o + qn].view(s.batch, s.heads, s.seq_len, s.head_dim)
            k = self.pool[o + qn:o + qn + kn].view(s.batch, s.kv_heads, s.kv_len, s.head_dim)
            v = self.pool[o + qn + kn:o + qn + 2 * kn].view(s.batch, s.kv_heads, s.kv_len, s.head_dim)
            do = self.pool[o + qn + 2 * kn:o + 2 * qn + 2 * kn].view(s.batch, s.heads, s.seq_len, s.head_dim)
            sets.append((q, k, v, do))
        return sets

    def call(self, case: grids.Case, mask):
        """A function of one input set that runs the case once."""
        torch = self.torch
        from torch.nn.attention import SDPBackend, sdpa_kernel
        from torch.nn.functional import scaled_dot_product_attention as sdpa

        s = case.shape
        gqa = s.heads != s.kv_heads
        g = s.heads // s.kv_heads
        scale = 1.0 / math.sqrt(s.head_dim)
        bwd = case.pass_ == "fwd+bwd"

        if case.impl == "torch-eager":
            def fwd(q, k, v):
                if gqa:  # what a user writes without SDPA's enable_gqa
                    k, v = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)
                sc = torch.matmul(q, k.transpose(-2, -1)) * scale
                if s.causal:
                    sc = sc.masked_fill(mask, float("-inf"))
                return torch.matmul(torch.softmax(sc, dim=-1), v)
        else:
            backend = getattr(SDPBackend, BACKENDS[case.impl])

            def fwd(q, k, v):
                with sdpa_kernel(backend):
                    return sdpa(q, k, v, is_causal=s.causal, enable_gqa=gqa)

        def run(inp):
            q, k, v, do = inp
            if not bwd:
                with torch.no_grad():
                    return fwd(q, k, v)
            q, k, v = (t.detach().requires_grad_() for t in (q, k, v))
            out = fwd(q, k, v)
            out.backward(do)
            return out

        return run

    def mask(self, s: grids.Shape):
        if not s.causal:
            return None
        # bottom-right aligned, as SDPA's is_causal for N = L
        n, l_ = s.seq_len, s.kv_len
        return self.torch.ones(n, l_, dtype=self.torch.bool, device=self.device).triu(l_ - n + 1)

    def check(self, out, inp, s: grids.Shape) -> float:
        """Relative error of the first head's last (up to) 64 rows against float64."""
        torch = self.torch
        q, k, v, _ = inp
        rows = min(s.seq_len, 64)
        qq, kk, vv = q[0, 0, -rows:].double(), k[0, 0].double(), v[0, 0].double()
        sc = qq @ kk.T / math.sqrt(s.head_dim)
        if s.causal:
            qpos = torch.arange(s.seq_len - rows, s.seq_len, device=sc.device)[:, None] + (s.kv_len - s.seq_len)
            sc = sc.masked_fill(torch.arange(s.kv_len, device=sc.device)[None, :] > qpos, float("-inf"))
        ref = torch.softmax(sc, -1) @ vv
        got = out[0, 0, -rows:].double()
        return float(torch.linalg.norm(got - ref) / torch.linalg.norm(ref))

    def time_case(self, case: grids.Case, target_s: float = 0.12) -> dict:
        torch = self.torch
        s = case.shape
        sets = self.inputs(s)
        mask = self.mask(s)
        run = self.call(case, mask)
        out = run(sets[0])
        err = self.check(out.detach(), sets[0], s)
        del out
        self.sync()
        t0 = time.perf_counter()
        run(sets[1 % len(sets)])
        self.sync()
        est = time.perf_counter() - t0
        repeats = int(max(10, min(40, target_s / max(est, 1e-6))))
        samples = []
        for i in range(repeats):
            inp = sets[(i + 2) % len(sets)]
            if self.device != "cuda":  # the CPU smoke test only
                t0 = time.perf_counter()
                run(inp)
                samples.append(time.perf_counter() - t0)
                continue
            samples.append(event_time_s(torch, lambda: run(inp)))
        # back to back, no synchronize between calls: the host runs ahead where it can, so this is
        # about the GPU's time per call (what a stream of calls, or a CUDA graph, costs)
        loop = []
        for _ in range(3 if self.device == "cuda" else 0):
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            for i in range(repeats):
                run(sets[i % len(sets)])
            stop.record()
            stop.synchronize()
            loop.append(start.elapsed_time(stop) * 1e-3 / repeats)
        return {"samples_s": samples, "back_to_back_s": loop, "rel_error_vs_float64": err, "input_sets": len(sets)}


def _meta(command: str, device: str = "cuda") -> dict:
    import torch

    if device != "cuda":
        return {"command": command, "gpu": "cpu (smoke test)", "torch": torch.__version__,
                "date": _dt.date.today().isoformat()}
    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm,clocks.sm,memory.total",
                          "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
    p = torch.cuda.get_device_properties(0)
    return {"command": command, "gpu": torch.cuda.get_device_name(0), "nvidia_smi": smi,
            "sm_count": p.multi_processor_count, "l2_bytes": p.L2_cache_size, "torch": torch.__version__,
            "cuda_runtime": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "date": _dt.date.today().isoformat(), "started_utc": _dt.datetime.utcnow().isoformat(timespec="seconds"),
            "timing": "CUDA events around one call after a synchronize, median of 10-40 (about 0.12 s of calls), "
                      "inputs rotated among copies totalling > 3x L2; warm-up call first; back_to_back_s: "
                      "events around the same number of calls issued without a synchronize, per call, 3 times",
            "ncu": "ncu --clock-control none --csv --page raw, metrics " + ",".join(ncu_mod.METRICS)}


def _write(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def time_phase(bench: Bench, case_list, rep: int, deadline: float, records: list, log) -> int:
    done = 0
    for c in case_list:
        if time.time() > deadline:
            log(f"time budget reached: {len(case_list) - done} cases of rep {rep} not run")
            break
        rec = {"case": c.model_dump(), "rep": rep}
        try:
            rec.update(bench.time_case(c))
            med = sorted(rec["samples_s"])[len(rec["samples_s"]) // 2]
            log(f"{c.key()} rep {rep}: {med * 1e6:9.1f} us  err {rec['rel_error_vs_float64']:.1e}")
        except Exception as exc:  # noqa: BLE001 - an unsupported backend/shape must not stop the grid
            rec["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
            log(f"{c.key()} rep {rep}: {rec['error']}")
        records.append(rec)
        done += 1
        if bench.device == "cuda":
            bench.torch.cuda.empty_cache()
    return done


def ncu_child(cases_file: str, deadline: float) -> None:
    """Under ncu: each case's warm-up call, then the case between two marker kernels."""
    import torch

    cases = [grids.Case.model_validate(c) for c in json.loads(Path(cases_file).read_text())]
    bench = Bench()
    for c in cases:
        run = inp = None
        if time.time() < deadline:
            try:
                inp = bench.inputs(c.shape, n_sets=1)[0]
                run = bench.call(c, bench.mask(c.shape))
                run(inp)
            except Exception as exc:  # noqa: BLE001
                print(f"ncu child: {c.key()}: {type(exc).__name__}: {exc}", file=sys.stderr)
                run = None
        torch.cuda.synchronize()
        torch.cuda._sleep(1000)  # begin marker
        try:
            if run is not None:
                run(inp)
        except Exception as exc:  # noqa: BLE001
            print(f"ncu child: {c.key()}: {type(exc).__name__}: {exc}", file=sys.stderr)
        torch.cuda.synchronize()
        torch.cuda._sleep(1000)  # end marker
        torch.cuda.synchronize()


def ncu_phase(out_dir: Path, case_list, budget_s: float, log) -> tuple[list, str]:
    cases_file = out_dir / "ncu-cases.json"
    cases_file.write_text(json.dumps([c.model_dump() for c in case_list]))
    log_file = out_dir / "ncu.csv"
    deadline = time.time() + budget_s - 25
    cmd = ncu_mod.command("ncu", str(log_file), [sys.executable, "-m", "costmodel.validation.implementations.gpu_run",
                                                  "--ncu-child", str(cases_file), "--deadline", str(deadline)])
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=budget_s)
        note = f"ncu rc {proc.returncode}; stderr tail: {' | '.join(proc.stderr.splitlines()[-5:])}"
    except subprocess.TimeoutExpired:
        note = "ncu timed out"
    except FileNotFoundError:
        return [None] * len(case_list), "ncu not found"
    if not log_file.exists():
        return [None] * len(case_list), note + "; no ncu log"
    try:
        groups = ncu_mod.split_cases(ncu_mod.parse_csv(log_file.read_text()), len(case_list))
    except ValueError as exc:
        return [None] * len(case_list), f"{note}; {exc}"
    return groups, note


def parse_phases(text: str) -> list[tuple[str, str, int, float]]:
    """``GRID:PART:REP[@SHARE],...`` -> [(grid, part, rep, share of the budget it must end by)]."""
    out = []
    if text.strip() == "none":
        return out
    for item in text.split(","):
        body, _, share = item.strip().partition("@")
        grid, part, rep = body.split(":")
        if grid not in ("calibration", "heldout") or part not in ("all", "decode", "prefill", "blocks"):
            raise ValueError(f"--phases: {item!r}; GRID is calibration | heldout, PART all | decode | prefill | "
                             f"blocks (the calibration grid's block-count sweep)")
        out.append((grid, part, int(rep), float(share) if share else 1.0))
    return out


def _in_part(c: grids.Case, part: str, smoke: bool) -> bool:
    if part == "blocks":  # the smoke test's shrunk shapes are no longer the sweep's: its prefill stands in
        return not c.shape.decode if smoke else c.shape in grids.block_sweep_shapes()
    return part == "all" or c.shape.decode == (part == "decode")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="out/impls")
    ap.add_argument("--budget-s", type=float, default=330.0, help="all timing phases")
    ap.add_argument("--ncu-budget-s", type=float, default=110.0)
    ap.add_argument("--ncu-child")
    ap.add_argument("--deadline", type=float)
    ap.add_argument("--phases", default="calibration:all:0@0.36,heldout:all:0@0.72,calibration:all:1",
                    help="GRID:PART:REP[@SHARE],... (module docstring)")
    ap.add_argument("--no-ncu", action="store_true", help="time only: no Nsight Compute phase")
    ap.add_argument("--ncu-set", default="default", choices=("default", "calibration-bwd", "probe"))
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny shapes: catches typos before a GPU call")
    args = ap.parse_args(argv)
    if args.ncu_child:
        ncu_child(args.ncu_child, args.deadline or float("inf"))
        return 0
    t_start = time.time()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    raw_path = out_dir / "impls-raw.json"

    def log(msg):
        print(f"[{time.time() - t_start:6.1f}s] {msg}", flush=True)

    device = "cpu" if args.smoke else "cuda"
    bench = Bench(device, 4_000_000 if args.smoke else POOL_ELEMENTS)
    data = {"meta": _meta("python3 -m costmodel.validation.implementations.gpu_run " + " ".join(argv or sys.argv[1:]), device),
            "records": [], "ncu": []}
    deadline = t_start + args.budget_s
    for grid, part, rep, share in parse_phases(args.phases):
        case_list = grids.smoke_cases(grid) if args.smoke else grids.cases(grid)
        case_list = [c for c in case_list if _in_part(c, part, args.smoke)]
        log(f"phase {grid}:{part}:{rep}: {len(case_list)} cases")
        time_phase(bench, case_list, rep, t_start + share * args.budget_s, data["records"], log)
        _write(raw_path, data)
    del bench
    if args.smoke or args.no_ncu:
        data["meta"]["wall_s"] = time.time() - t_start
        _write(raw_path, data)
        log(f"{'smoke ' if args.smoke else ''}done: {len(data['records'])} timed")
        return 0
    import torch

    torch.cuda.empty_cache()
    ncu_list = {"default": grids.ncu_cases, "calibration-bwd": grids.ncu_bwd_cases,
                "probe": grids.ncu_probe_cases}[args.ncu_set]()
    groups, note = ncu_phase(out_dir, ncu_list, args.ncu_budget_s, log)
    log(note)
    data["ncu"] = [{"case": c.model_dump(), "kernels": g} for c, g in zip(ncu_list, groups)]
    data["meta"]["ncu_note"] = note
    data["meta"]["wall_s"] = time.time() - t_start
    _write(raw_path, data)
    log(f"done: {len(data['records'])} timed, {sum(g is not None for g in groups)} profiled")
    return 0


if __name__ == "__main__":
    sys.exit(main())
