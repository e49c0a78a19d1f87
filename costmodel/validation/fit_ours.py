"""Fit the timing parameters of our Numba kernels (the spec's ``numba_kernels`` section) on one
grid of measured calls and report the errors on another.

Fit grid: forward/backward calls at N in FIT_SEQ_LENS, decode calls with a cache of FIT_KV_LENS
keys; held out: every other record (N 1024, 4096, 16384; decode L 4096; the sliding window,
whose kernel is FA2's, is held out whole). Each parameter has a closed form, in this order:

1. ``warps_to_saturate`` (warps): the one parameter without a closed form. Each value of a grid
   (W_GRID, with the value the calibration sweep gives: the tiled FP32 microkernel's rate at
   k = 1..4 resident 128-thread blocks per SM over its full-grid rate, r_k, against
   r_k = min(1, 4 k / w), least squares through the origin: w = sum (4k)^2 / sum 4k r_k) is
   tried with steps 2 to 5 refitted, and the one with the least sum over our families of the
   mean |time error| on the fit records is kept. It matters where a grid leaves SMs part
   empty (FA1's B*H blocks at large N, unsplit decode); the sweep's value (18.8 on the H200)
   streamed its operands from DRAM with no reuse, and FA1's fit records want fewer.
2. ``host_api_s``, ``host_step_s`` (s): medians, over the decode bench's fit shapes, of the host-
   bracketed time less the GPU time (behind a sleeping kernel) of the public API call and of a
   ``prepare_decode`` step (kernels.decode_step).
3. ``kernel_fixed_s`` (s): median over the bench's fit shapes whose predicted GPU time is under
   30 us of (measured GPU time - predicted, with no fixed cost) / launches.
4. ``<kernel>_memory_efficiency`` (1): median over fit records with Nsight Compute kernel times of
   predicted time at full bandwidth / measured kernel time.
5. ``<kernel>_efficiency[_d<d>]`` (1): a kernel's time is M / e + R (M: its matmul time at the
   FP32 peak, R: the rest, both from timing it at e = 1 and e = 1/2), so e = M / (t - R) with t the
   kernel's measured time: Nsight Compute's for the standard path's two matmuls, the call's CUDA-
   event time less host_api_s and the other kernels' predicted times for the fused kernels. Median
   over the fit records of that kernel and head_dim.

    python3 -m costmodel.validation.fit_ours --write     # refit and write the section into the spec
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import statistics
import sys
from pathlib import Path

import numpy as np

from costmodel.validation.ours import (MATMUL_KERNELS, MEMORY_KERNELS, efficiency_name, time_our_kernel)
from costmodel.validation.schema import load_results, merge_results
from costmodel.validation.sweep import Case

FIT_SEQ_LENS = (512, 2048, 8192)
W_GRID = (4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 12.0, 14.0, 16.0, 20.0, 24.0)
FIT_KV_LENS = (1024, 16384)
SPEC = "h200-sxm-141gb-measured"
RESULTS = Path(__file__).resolve().parent / "results"
RAW = [RESULTS / "h200" / f"validation-{p}.json" for p in ("main", "long", "decode")] + [
    RESULTS / "h200" / "issue17" / "validation-fixes.json"]
BENCH = RESULTS / "h200" / "issue17" / "bench_decode.json"
SPEC_FILE = Path(__file__).resolve().parents[2] / "hardware_specs" / "calibrated" / f"{SPEC}.yaml"
UNITS = {"warps_to_saturate": "warps", "host_api_s": "s", "host_step_s": "s", "kernel_fixed_s": "s"}
MEANINGS = {
    "warps_to_saturate": "warps an SM needs resident for our register-tiled FP32 code to reach its full rate "
                         "(a block of w warps draws at most w / this of its SM)",
    "host_api_s": "host time of one call of our public kernel API not hidden behind the GPU (checks, device "
                  "views, buffers, numba's dispatch of the first launch)",
    "host_step_s": "host time of one prepare_decode step not hidden behind the GPU (its cuLaunchKernel calls)",
    "kernel_fixed_s": "GPU time of one launch of our kernels beyond its work (ramp-up, drain, block start-up)",
}


def is_fit(record) -> bool:
    c = record.config
    if record.family == "window_fwd":
        return False
    return c.kv_len in FIT_KV_LENS if c.seq_len == 1 else c.seq_len in FIT_SEQ_LENS


def _section(params: dict, fit=None):
    from hardware_specs.implementations import Fitted
    from hardware_specs.numba_kernels import NumbaKernelsSection

    return NumbaKernelsSection(params={k: Fitted.model_validate(v) for k, v in params.items()}, fit=fit)


def _param(name: str, value: float, method: str, gpu: str, date: str) -> dict:
    if name in UNITS:
        unit, meaning = UNITS[name], MEANINGS[name]
    elif name.endswith("_memory_efficiency"):
        unit, meaning = "1", f"share of the calibrated HBM bandwidth kernel {name[:-18]} attains"
    else:
        unit, meaning = "1", (f"share of the calibrated FP32 peak the main loop of kernel "
                              f"{name.split('_efficiency')[0]} attains at a full SM{name.split('_efficiency')[1]}")
    return {"value": float(value), "unit": unit, "meaning": meaning,
            "measured": {"method": method, "gpu": gpu, "date": date}}


def w_saturate(spec) -> float:
    info = spec.calibration["numba_tiled_fp32_flops_per_s"]
    full = float(info["value"])
    ks = np.array([float(k) for k in info["by_blocks_per_sm"]])
    r = np.array([float(v) for v in info["by_blocks_per_sm"].values()]) / full
    return float(np.sum((4 * ks) ** 2) / np.sum(4 * ks * r))


def _bench_fit(bench: dict) -> list[dict]:
    return [b for b in bench["records"] if b["L"] in FIT_KV_LENS and b["heads_per_block"] == 1]


def _decode_gpu_s(spec, section, b: dict, fixed_s: float | None = None) -> tuple[float, int]:
    """Predicted GPU time of one bench record (prepared step) and its launches."""
    from simulators import simulate_attention

    res = simulate_attention(spec, "flash-decoding", batch=b["batch"], heads=b["heads"], kv_heads=b["kv_heads"],
                             seq_len=1, kv_len=b["L"], head_dim=b["d"], dtype="fp32", tensor_cores=False,
                             splits=b["num_splits"])
    ks = [time_our_kernel(spec, section, k, b["d"], 4.0, fixed_s=fixed_s) for k in res.kernels]
    return sum(k.time_s for k in ks), len(ks)


def _simulated(spec, records):
    from costmodel.validation.predict import simulate_ours

    return [(r, simulate_ours(spec, Case(r.family, r.config))) for r in records]


def fit(spec, results, bench: dict, date: str | None = None, w_sat: float | None = None) -> dict:
    """The section's parameters (name -> Fitted as a dict) from measured records and the bench;
    ``w_sat`` replaces the calibration sweep's warps_to_saturate (a trial value)."""
    gpu = results.meta.gpu
    date = date or _dt.date.today().isoformat()
    params: dict[str, dict] = {}
    tag = f"costmodel/validation/fit_ours.py on {gpu} results (fit grid: N {FIT_SEQ_LENS}, decode L {FIT_KV_LENS})"
    sweep_w = w_saturate(spec)
    params["warps_to_saturate"] = _param("warps_to_saturate", w_sat or sweep_w, "grid search (fit_ours step 1) over "
                                         f"{W_GRID} and the calibration sweep's least-squares value {sweep_w:.2f}; " + tag,
                                         gpu, date)
    fit_bench = _bench_fit(bench)
    params["host_api_s"] = _param("host_api_s", statistics.median(
        b["time_s_api_host"] - b["time_s"] for b in fit_bench if "time_s_api_host" in b),
        "median of (host-bracketed - GPU-only) CUDA-event time of the decode API, bench_decode; " + tag, gpu, date)
    params["host_step_s"] = _param("host_step_s", statistics.median(
        b["time_s_host"] - b["time_s_gpu"] for b in fit_bench),
        "median of (host-bracketed - GPU-only) CUDA-event time of prepare_decode steps, bench_decode; " + tag, gpu, date)
    section = _section(params)
    small = [(b, *_decode_gpu_s(spec, section, b, fixed_s=0.0)) for b in fit_bench]
    params["kernel_fixed_s"] = _param("kernel_fixed_s", max(0.0, statistics.median(
        (b["time_s_gpu"] - t) / n for b, t, n in small if t < 30e-6)),
        "median over decode steps predicted under 30 us of (measured - predicted GPU time) per launch; " + tag,
        gpu, date)
    section = _section(params)
    fit_recs = [r for r in results.records if r.source == "ours" and is_fit(r)]
    sims = _simulated(spec, fit_recs)
    mem: dict[str, list[float]] = {}
    for r, res in sims:  # 4. memory kernels, from Nsight Compute's kernel times
        ncu = r.measured.ncu_kernels or []
        if len(ncu) != len(res.kernels):
            continue
        for k, n in zip(res.kernels, ncu):
            if k.name in MEMORY_KERNELS and n.time_s > 0:
                t1 = time_our_kernel(spec, section, k, r.config.head_dim, 4.0, efficiency=1.0)
                mem.setdefault(efficiency_name(k.name, r.config.head_dim), []).append((t1.time_s - t1.fixed_s) / n.time_s)
    for name, vals in mem.items():
        params[name] = _param(name, min(1.0, statistics.median(vals)), "median of predicted time at full bandwidth "
                              "/ Nsight Compute kernel time; " + tag, gpu, date)
    section = _section(params)
    comp: dict[str, list[float]] = {}
    host = section.value("host_api_s")
    for r, res in sims:  # 5. matmul kernels: e = M / (t - R)
        d = r.config.head_dim
        ncu = r.measured.ncu_kernels or []
        for i, k in enumerate(res.kernels):
            if k.name not in MATMUL_KERNELS or k.name == "decode":
                continue
            if k.name in ("qk_scale_mask", "pv_matmul"):
                if len(ncu) != len(res.kernels):
                    continue
                t = ncu[i].time_s
            else:
                others = sum(time_our_kernel(spec, section, o, d, 4.0).time_s for j, o in enumerate(res.kernels) if j != i)
                t = r.measured.time_s - host - others
            t1 = time_our_kernel(spec, section, k, d, 4.0, efficiency=1.0).time_s
            t2 = time_our_kernel(spec, section, k, d, 4.0, efficiency=0.5).time_s
            m, rest = t2 - t1, 2 * t1 - t2
            if m > 0 and t > rest:
                comp.setdefault(efficiency_name(k.name, d), []).append(m / (t - rest))
    for name, vals in comp.items():
        params[name] = _param(name, min(1.0, statistics.median(vals)), "median of M / (t - R) (module docstring, "
                              "step 5) over the fit records; " + tag, gpu, date)
    return params


def search_w_sat(spec, results, bench: dict) -> float:
    """Step 1: the warps_to_saturate of W_GRID (and the sweep's) with the least fit-grid error."""
    fit_only = results.model_copy(update={"records": [r for r in results.records if r.source == "ours" and is_fit(r)]})
    best = None
    for w in sorted(set(W_GRID) | {round(w_saturate(spec), 2)}):
        trial = spec.model_copy(update={"numba_kernels": _section(fit(spec, results, bench, w_sat=w))})
        score = sum(v["fit"]["mean"] for v in errors(_repredict_with(trial, fit_only)).values())
        if best is None or score < best[0]:
            best = (score, w)
    return best[1]


def errors(results) -> dict:
    """Per family: median, mean and worst |time error| on the fit and held-out records."""
    from costmodel.validation.compare import compare

    out: dict = {}
    for row, r in zip(compare(results), results.records):
        if r.source != "ours":
            continue
        part = "fit" if is_fit(r) else "held_out"
        out.setdefault(r.family, {}).setdefault(part, []).append(abs(row.time_error))
    return {f: {p: {"n": len(v), "median": float(np.median(v)), "mean": float(np.mean(v)), "worst": float(np.max(v))}
                for p, v in parts.items()}
            for f, parts in out.items()}


def write_section(spec_path: Path, section_dict: dict) -> None:
    """Replace (or append) the ``numba_kernels:`` block, up to the next top-level key, leaving the rest
    of the file (the sections other fits write, before or after it) as it is."""
    import re

    import yaml

    text = spec_path.read_text()
    block = yaml.safe_dump({"numba_kernels": section_dict}, sort_keys=False, width=110)
    start = re.search(r"^numba_kernels:", text, re.M)
    if start is None:
        spec_path.write_text(text.rstrip("\n") + "\n" + block)
        return
    after = re.search(r"^[A-Za-z_][A-Za-z0-9_]*:", text[start.end():], re.M)
    rest = text[start.end() + after.start():] if after else ""
    spec_path.write_text(text[:start.start()] + block + rest)


def main(argv=None) -> int:
    from hardware_specs import load_gpu

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="write the section into the calibrated spec")
    args = ap.parse_args(argv)
    spec = load_gpu(SPEC)
    results = merge_results([load_results(p) for p in RAW])
    bench = json.loads(BENCH.read_text())
    bare = spec.model_copy(update={"numba_kernels": None})
    params = fit(bare, results, bench, w_sat=search_w_sat(bare, results, bench))
    fitted = spec.model_copy(update={"numba_kernels": _section(params)})
    again = _repredict_with(fitted, results)
    summary = {"fit_grid": {"seq_len": list(FIT_SEQ_LENS), "decode_kv_len": list(FIT_KV_LENS)},
               "raw": [str(p.relative_to(SPEC_FILE.parents[2])) for p in RAW + [BENCH]],
               "errors": errors(again)}
    for name, p in params.items():
        print(f"{name:40s} {p['value']:.4g} {p['unit']}")
    for fam, parts in summary["errors"].items():
        print(fam, {p: f"n={v['n']} median {v['median']:.1%} worst {v['worst']:.1%}" for p, v in parts.items()})
    if args.write:
        path = SPEC_FILE
        write_section(path, {"params": params, "fit": summary})
        print(f"wrote numba_kernels into {path}")
    return 0


def _repredict_with(spec, results):
    """``predict.repredict`` on a spec object (the fitted one, before it is written)."""
    from costmodel.validation.predict import predict_case
    from costmodel.validation.schema import Predicted, Results

    records = []
    for r in results.records:
        if r.source != "ours":
            continue
        flops, predicted = predict_case(spec, Case(r.family, r.config))
        records.append(r.model_copy(update={"flops": flops, "predicted": Predicted.model_validate(predicted)}))
    return Results(meta=results.meta, records=records)


if __name__ == "__main__":
    sys.exit(main())
