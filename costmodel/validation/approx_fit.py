"""Fit the eager-ops families (hardware_specs/eager_ops.py) from the Nsight Compute kernels of approx_bench.

    python3 -m costmodel.validation.approx_fit [--results costmodel/validation/results/h200/approx-h200.json] [--out YAML]

Fit grid: the approximations' cases that ran under ncu (d = 64, N = 4k and 32k on the H200).
Each simulated kernel node (``launches`` kernels, in launch order) is matched to the measured
kernels in order; a case whose kernel count differs from the simulated one is left out and
named. Then:

* ``latency_s``: the median duration of the kernels that move under 1 MB;
* per family, over its kernels of 1 MB or more: duration - latency = max(bytes / bandwidth,
  outputs x per_output_s), two ceilings (streaming, or issuing output elements), chosen to
  minimise the squared relative error, the bandwidth at most the spec's measured copy
  bandwidth (GEMMs: bytes only, and only those whose FLOPs at the tensor peak take under half
  their duration);
* ``host_per_op_s``: the bench's chain of tiny adds (wall clock over 400 ops).

The timing sweep (every N, d = 64 and 128, CUDA events) is the held-out grid: its call times
are what ``costmodel.validation.approx_compare`` checks the model on.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
from pathlib import Path

import numpy as np
import yaml

from costmodel.validation.approx_compare import APPROX

RESULTS = Path(__file__).resolve().parent / "results" / "h200" / "approx-h200.json"
OUT = Path(__file__).resolve().parent.parent / "hardware_specs" / "eager-ops" / "h200-sxm-141gb-measured.yaml"
SPEC = "h200-sxm-141gb-measured"
SMALL_BYTES = 1e6


def _graph(case: dict):
    """The simulated kernel graph of a bench case (the bench's default method parameters)."""
    from simulators import linformer, performer, reformer
    from simulators.config import AttentionConfig

    cfg = AttentionConfig(batch=case["batch"], heads=case["heads"], seq_len=case["seq_len"],
                          head_dim=case["head_dim"], dtype=case["dtype"], causal=case["causal"])
    build = {"linformer": lambda c: linformer.graph(c, 256), "performer": lambda c: performer.graph(c, 256, 128),
             "reformer": lambda c: reformer.graph(c, 4, 64)}[case["method"]]
    return build(cfg).finish()


def matched_kernels(results: dict, spec) -> tuple[list[dict], list[str]]:
    """(one row per simulated kernel node with its measured duration, the cases left out and why)."""
    from simulators import approximate

    rows, skipped = [], []
    for entry in (results.get("ncu") or {}).get("cases", []):
        case, measured = entry["case"], entry["kernels"]
        if case["method"] not in APPROX or measured is None:
            continue
        params = {"linformer": {"proj_len": 256}, "performer": {"features": 256, "chunk": 128},
                  "reformer": {"hash_rounds": 4, "bucket_size": 64}}[case["method"]]
        if {**params, **case.get("params", {})} != params:
            skipped.append(f"{case}: parameters other than the defaults")
            continue
        g = _graph(case)
        nodes = approximate.counts(g)
        want = sum(g.nodes[k.name]["launches"] for k in nodes)
        if want != len(measured):
            skipped.append(f"{case['method']} causal={case['causal']} N={case['seq_len']}: {len(measured)} kernels "
                           f"measured, {want} simulated")
            continue
        i = 0
        for kc in nodes:
            a = g.nodes[kc.name]
            ks = measured[i:i + a["launches"]]
            i += a["launches"]
            rows.append({"case": f"{case['method']}{' causal' if case['causal'] else ''} N={case['seq_len']}",
                         "node": kc.name, "cls": a["cls"], "kind": a["kind"], "launches": a["launches"],
                         "bytes": kc.hbm_read_bytes + kc.hbm_write_bytes, "flops": kc.matmul_flops,
                         "outputs": a["out_elements"],
                         "time_s": sum(k["time_s"] for k in ks),
                         "dram_bytes": sum(k["dram_read_bytes"] + k["dram_write_bytes"] for k in ks),
                         "kernel": ks[0]["name"][:80]})
    return rows, skipped


def _fit_two(x: np.ndarray, t: np.ndarray, with_outputs: bool, copy_Bps: float) -> tuple[float, float]:
    """(seconds per byte a, seconds per output b) of t = max(a bytes, b outputs), minimising the relative
    error, with 1 / a no higher than the copy bandwidth: a kernel streams its bytes at the family's
    bandwidth or issues its outputs at the family's rate, whichever takes longer (two ceilings)."""
    a_grid = sorted({max(float(v), 1.0 / copy_Bps) for v in t / x[:, 0]})
    b_grid = [0.0] + (sorted({float(v) for v in t / np.maximum(x[:, 1], 1.0)}) if with_outputs else [])

    def cost(a, b):
        return float(np.sum((np.maximum(a * x[:, 0], b * x[:, 1]) / t - 1) ** 2))
    return min(((a, b) for a in a_grid for b in b_grid), key=lambda c: cost(*c))


def eager_overhead(results: dict, spec, head_dim: int = 64) -> tuple[float, float]:
    """(call_overhead_s, gap_per_kernel_s): least squares of measured eager - queued GPU time against the
    simulated kernel count, over the approximations' timed cases at ``head_dim`` (the other d is held out)."""
    x, y = [], []
    for rec in results["records"]:
        case = rec["case"]
        if "gpu_time_s" not in rec or case["method"] not in APPROX or case["head_dim"] != head_dim:
            continue
        g = _graph(case)
        x.append(sum(g.nodes[v]["launches"] for v in g.nodes if "launches" in g.nodes[v]))
        y.append(rec["eager_time_s"] - rec["gpu_time_s"])
    a = np.vstack([np.ones(len(x)), x]).T
    (t0, gap), *_ = np.linalg.lstsq(a, np.array(y), rcond=None)
    return float(max(t0, 0.0)), float(max(gap, 0.0))


def fit(results: dict, spec) -> dict:
    from hardware_specs.roofline import matmul_unit

    rows, skipped = matched_kernels(results, spec)
    if not rows:
        raise ValueError(f"results: no ncu case matched its simulated kernels ({'; '.join(skipped)})")
    small = [r["time_s"] / r["launches"] for r in rows if r["bytes"] < SMALL_BYTES]
    latency = float(np.median(small))
    peak = spec.peak_flops_per_s[matmul_unit("bf16", True)]
    families = {}
    for cls in sorted({r["cls"] for r in rows}):
        big = [r for r in rows if r["cls"] == cls and r["bytes"] >= SMALL_BYTES
               and not (r["kind"] == "gemm" and r["flops"] / peak > 0.5 * r["time_s"])]
        if not big:
            continue
        busy = np.array([max(r["time_s"] - latency * r["launches"], 0.1 * r["time_s"]) for r in big])
        x = np.array([[r["bytes"], r["outputs"]] for r in big], dtype=float)
        inv_bw, per_out = _fit_two(x, busy, with_outputs=cls != "gemm", copy_Bps=spec.hbm_bandwidth_Bps)
        pred = [latency * r["launches"] + max(r["bytes"] * inv_bw, r["outputs"] * per_out, r["flops"] / peak)
                for r in big]
        err = [p / r["time_s"] - 1 for p, r in zip(pred, big)]
        families[cls] = {"bandwidth_Bps": float(1 / inv_bw), "per_output_s": float(per_out), "kernels": len(big),
                         "median_abs_err": float(np.median(np.abs(err)))}
    meta = results["meta"]
    t0, gap = eager_overhead(results, spec)
    return {
        "spec": spec.name, "latency_s": latency, "host_per_op_s": float(meta["host_per_op_s"]),
        "call_overhead_s": t0, "gap_per_kernel_s": gap,
        "reference_hbm_Bps": float(spec.hbm_bandwidth_Bps), "families": families,
        "measured": {"method": f"python3 -m costmodel.validation.approx_fit: Nsight Compute durations (gpu__time_duration, "
                               f"caches flushed, --clock-control none) of {len(rows)} kernel nodes of the "
                               f"approximations at d=64, N=4096 and 32768, bf16; per family, duration - latency = "
                               f"max(bytes / bandwidth, outputs x per_output_s) (simulated tensor-level bytes and "
                               f"output elements; least squared relative error, bandwidth <= the measured copy "
                               f"bandwidth); latency = median of kernels under 1 MB; call_overhead_s, "
                               f"gap_per_kernel_s: least squares of (eager - queued) CUDA-event call times against "
                               f"the kernel count, approximations at d=64 (d=128 held out); "
                               f"host_per_op_s: 400 chained tiny adds, wall clock. Left out: "
                               f"{'; '.join(skipped) or 'none'}",
                     "date": meta["date"][:10], "gpu": meta["gpu"], "torch": meta["torch"],
                     "source_file": "costmodel/validation/results/h200/approx-h200.json"},
    }


def main(argv=None) -> None:
    from hardware_specs import load_gpu

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default=str(RESULTS))
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    data = fit(json.loads(Path(args.results).read_text()), load_gpu(SPEC))
    head = (f"# Eager PyTorch kernel families on the H200, fitted {_dt.date.today()} by python3 -m costmodel.validation.approx_fit\n"
            "# from costmodel/validation/results/h200/approx-h200.json (schema: hardware_specs/eager_ops.py).\n")
    Path(args.out).write_text(head + yaml.safe_dump(data, sort_keys=False, width=110))
    for cls, f in data["families"].items():
        print(f"{cls:14s} {f['bandwidth_Bps'] / 1e12:6.2f} TB/s {f['per_output_s'] * 1e12:7.3f} ps/output "
              f"{f['kernels']:3d} kernels  fit error "
              f"{f['median_abs_err']:.1%}")
    print(f"latency {data['latency_s'] * 1e6:.2f} us, host {data['host_per_op_s'] * 1e6:.1f} us/op, eager call "
          f"{data['call_overhead_s'] * 1e6:.0f} us + {data['gap_per_kernel_s'] * 1e6:.2f} us/kernel; wrote {args.out}")


if __name__ == "__main__":
    main()
