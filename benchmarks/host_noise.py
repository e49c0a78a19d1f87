"""Where the isolated call's host time scatters from: the same calls timed under ways of waiting.

The committed decode timings (impls-raw-*.json) of a host-bound call (GPU work 20-70 us) moved
between 60 and 140 us from one repeat to the next, on the same kind of GPU, across runs and within one. This probe
times such calls as gpu_run.Bench.time_case does (events around one call after a synchronize),
in interleaved rounds, under four ways of waiting for the stop event:

    sync         stop.synchronize(), as gpu_run (the CUDA runtime's default: spin, then yield)
    spin         poll stop.query() from Python: the core never sleeps between calls
    pinned       the process held on one core (os.sched_setaffinity), then as sync
    nogc         Python's garbage collector off, then as sync

and writes each round's median per case and condition, with the machine's CPU facts, to one JSON.

    python3 benchmarks/host_noise.py --out DIR [--rounds 8] [--samples 40]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from costmodel.validation.implementations import grids
from costmodel.validation.implementations.gpu_run import Bench, event_time_s

CASES = [("torch-cudnn", grids._decode(1, 64, 8, 16384, 128)), ("torch-cudnn", grids._decode(32, 32, 4, 3000, 64)),
         ("torch-cudnn", grids._decode(1, 32, 8, 2048, 128)), ("torch-flash", grids._decode(1, 64, 8, 16384, 128)),
         ("torch-efficient", grids._decode(1, 32, 32, 2048, 128)),
         ("torch-cudnn", grids._prefill(768, 64, False, batch=16))]
CONDITIONS = ("sync", "spin", "pinned", "nogc")


def _sh(cmd: str) -> str:
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError) as e:
        return f"failed: {e}"


def time_calls(torch, run, sets, samples: int, spin: bool) -> list[float]:
    return [event_time_s(torch, lambda i=i: run(sets[i % len(sets)]), spin) for i in range(samples)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--samples", type=int, default=40)
    a = ap.parse_args(argv)
    import torch

    bench = Bench(pool_elements=400_000_000)
    runs = []
    for impl, s in CASES:
        case = grids.Case(impl=impl, pass_="fwd", shape=s, grid="probe")
        sets = bench.inputs(s)
        run = bench.call(case, bench.mask(s))
        run(sets[0])
        runs.append((case, run, sets))
    torch.cuda.synchronize()
    all_cpus = os.sched_getaffinity(0)
    one = {min(all_cpus)}
    rows = []
    t_start = time.perf_counter()
    for rnd in range(a.rounds):
        order = CONDITIONS[rnd % len(CONDITIONS):] + CONDITIONS[:rnd % len(CONDITIONS)]
        for cond in order:
            if cond == "pinned":
                os.sched_setaffinity(0, one)
            if cond == "nogc":
                gc.disable()
            try:
                for case, run, sets in runs:
                    t = time_calls(torch, run, sets, a.samples, spin=cond == "spin")
                    rows.append({"round": rnd, "condition": cond, "case": case.key(),
                                 "median_s": statistics.median(t), "min_s": min(t), "max_s": max(t),
                                 "at_s": time.perf_counter() - t_start})
            finally:
                os.sched_setaffinity(0, all_cpus)
                gc.enable()
    summary = {}
    for case, _, _ in runs:
        for cond in CONDITIONS:
            meds = [r["median_s"] for r in rows if r["case"] == case.key() and r["condition"] == cond]
            summary[f"{case.key()} | {cond}"] = {"median_of_rounds_s": statistics.median(meds),
                                                 "min_round_s": min(meds), "max_round_s": max(meds)}
    meta = {"command": "python3 benchmarks/host_noise.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "python": platform.python_version(),
            "cpus_allowed": sorted(all_cpus), "pinned_to": sorted(one),
            "lscpu": _sh("lscpu"), "topo": _sh("nvidia-smi topo -m"),
            "governor": _sh("cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
            "cpu_mhz": _sh("grep MHz /proc/cpuinfo | head -16")}
    Path(a.out).mkdir(parents=True, exist_ok=True)
    Path(a.out, "host-noise.json").write_text(json.dumps({"meta": meta, "summary": summary, "rows": rows}, indent=1))
    for k, v in summary.items():
        print(f"{k:75s} median {v['median_of_rounds_s'] * 1e6:7.1f} us  rounds {v['min_round_s'] * 1e6:6.1f}"
              f" - {v['max_round_s'] * 1e6:6.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
