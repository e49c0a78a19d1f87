"""Fit the step-level launch terms from the calibration run (``step_calib_run``): synthetic decoders only.

    python3 -m costmodel.validation.step_calib_fit [--results FILE] [--json]

Reads ``results/h200/step_calib_run.json`` (none of its configurations is a validated preset) and
prints, per step, what the fitted terms are made of. ``fit_step_launch`` returns the fitted
``LaunchModel`` fields that ``step_calibrate --write`` puts into the calibrated spec:

    graph_per_kernel_s         GPU idle per kernel inside a CUDA-graph decode step that the op models
                               (timed as R copies of one kernel) do not hold: least squares, relative,
                               of wall - (graph launch + predicted kernel time) against the kernel count.
    host_per_kernel_step_s     host CPU seconds per kernel of an eager inference forward (nn.Module
                               calls, views, dispatch, launch): the eager decode steps' issue time over
                               their kernel count, where the GPU work is far below the host's.
    host_per_kernel_autograd_s the same for an eager training step (autograd, fused AdamW).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

from costmodel.models import ModelConfig
from costmodel.validation.step_compare import kernel_class

RESULTS = Path(__file__).resolve().parent / "results" / "h200" / "step_calib_run.json"


def load(path=RESULTS) -> dict:
    return json.loads(Path(path).read_text())


def _cfg(step: dict) -> ModelConfig:
    return ModelConfig.model_validate({**step["config"], "source": "synthetic calibration config (step_calib_run)"})


def _kernels(profile: dict) -> int:
    return sum(c for n, (c, _) in profile["by_name"].items() if kernel_class(n))


def rows(data: dict, spec) -> list[dict]:
    """Per calibration step: measured wall, host and kernels; the model's GPU time and kernels."""
    from costmodel.step import predict_step

    out = []
    for s in data["steps"]:
        if "time_s" not in s:
            continue
        cfg = _cfg(s)
        r = predict_step(cfg, spec, s["phase"], batch=s["batch"], seq_len=s["seq_len"], launch=s["launch"])
        row = {"model": s["model"], "phase": s["phase"], "launch": s["launch"], "batch": s["batch"],
               "seq_len": s["seq_len"], "measured_s": s["time_s"], "predicted_s": float(r.time_s),
               "err": float(r.time_s) / s["time_s"] - 1, "predicted_gpu_s": float(r.gpu_time_s),
               "predicted_kernels": r.kernels, "measured_kernels": _kernels(s["profile"]),
               "measured_gpu_s": s["profile"]["gpu_us"] * 1e-6, "host_s": s.get("host_s"),
               "gaps_us": s["profile"].get("gaps_us")}
        if "eager_time_s" in s:
            e = predict_step(cfg, spec, "decode", batch=s["batch"], seq_len=s["seq_len"], launch="eager")
            row.update(eager_measured_s=s["eager_time_s"], eager_host_s=s["eager_host_s"],
                       eager_predicted_s=float(e.time_s), eager_err=float(e.time_s) / s["eager_time_s"] - 1,
                       eager_kernels=_kernels(s["eager_profile"]), eager_gpu_s=s["eager_profile"]["gpu_us"] * 1e-6)
        out.append(row)
    return out


def _micro_host_s(result) -> float:
    """Σ of a predicted step's per-op micro-loop host costs (``costmodel/step/launch.op_host_s``)."""
    return sum(float(np.asarray(r.host_s)) * r.count for r in result.ops)


def fit_step_launch(data: dict, spec) -> dict:
    """The fitted launch fields (see the module docstring), the points they rest on and a Fit record."""
    import datetime as dt

    from costmodel.step import predict_step
    from hardware_specs.op_timing import Fit, memory_ops_model

    mem = memory_ops_model(spec)
    launch0 = mem.launch.model_copy(update={"graph_per_kernel_s": 0.0, "host_per_block_s": None})
    base = spec.model_copy(update={"memory_ops": mem.model_copy(update={"launch": launch0})})
    rs = rows(data, base)
    graph = [r for r in rs if r["launch"] == "graph"]
    # wall ~= predicted (no in-graph idle) + gap * kernels; relative least squares
    w = np.array([1 / r["measured_s"] ** 2 for r in graph])
    k = np.array([r["predicted_kernels"] for r in graph], dtype=np.float64)
    y = np.array([r["measured_s"] - r["predicted_s"] for r in graph])
    gap = float(np.sum(w * k * y) / np.sum(w * k * k)) if graph else 0.0
    # eager inference host: measured issue time ~= Σ micro-loop op costs + host_per_block_s * layers, on the
    # steps whose GPU work is below the host's (eager decodes; prefills with wall < 1.3 x host)
    pts = []
    for s in data["steps"]:
        if "time_s" not in s:
            continue
        if "eager_host_s" in s:
            ph, host = "decode", s["eager_host_s"]
        elif s["phase"] == "prefill" and s["time_s"] < 1.3 * s["host_s"]:
            ph, host = "prefill", s["host_s"]
        else:
            continue
        cfg = _cfg(s)
        micro = _micro_host_s(predict_step(cfg, base, ph, batch=s["batch"], seq_len=s["seq_len"], launch="eager"))
        pts.append((host, micro, cfg.n_layers))
    hy = np.array([p[0] for p in pts]); hm = np.array([p[1] for p in pts]); hl = np.array([p[2] for p in pts], float)
    block = float(np.sum((hy - hm) * hl / hy**2) / np.sum(hl**2 / hy**2)) if pts else None
    train = [r for r in rs if r["phase"] == "train" and r.get("host_s")]
    autograd = statistics.median(r["host_s"] / r["measured_kernels"] for r in train) if train else None
    idle = [(r["measured_s"] - r["measured_gpu_s"]) / r["measured_kernels"] for r in graph]
    meta = data["meta"]
    fit = Fit(method=("whole steps of synthetic decoders (costmodel/validation/step_calib_run.py; no validated "
                      "preset): graph_per_kernel_s = relative least squares of CUDA-graph decode wall - predicted "
                      "kernel time over the predicted kernel count; host_per_block_s = relative least squares of the "
                      "eager issue time (perf_counter, no sync) - the ops' micro-loop host costs over the layer "
                      "count, on host-bound eager decodes and prefills; host_per_kernel_autograd_s = median eager "
                      "training issue time over the profiled kernel count"),
              date=dt.date.fromisoformat(meta["date"][:10]), gpu=meta.get("gpu", "unknown"),
              fit_points=len(graph) + len(pts) + len(train), heldout_points=0)
    spread = (np.abs(hm + block * hl - hy) / hy) if pts else np.array([0.0])
    return {"graph_per_kernel_s": max(gap, 0.0), "host_per_block_s": max(block, 0.0) if block is not None else None,
            "host_per_kernel_autograd_s": autograd, "fit": fit, "graph_points": len(graph), "eager_points": len(pts),
            "train_points": len(train), "eager_host_median_abs_err": float(np.median(spread)),
            "eager_host_max_abs_err": float(spread.max()),
            "graph_profiler_idle_per_kernel_s": statistics.median(idle) if idle else None,
            "graph_residual_per_kernel_us": [round(v / kk * 1e6, 3) for v, kk in zip(y, k)]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m costmodel.validation.step_calib_fit")
    p.add_argument("--results", default=str(RESULTS))
    p.add_argument("--spec", default="h200-sxm-141gb-measured")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    from hardware_specs import load_gpu

    data, spec = load(args.results), load_gpu(args.spec)
    fit = fit_step_launch(data, spec)
    rs = rows(data, spec)
    if args.json:
        print(json.dumps({"fit": {k: v for k, v in fit.items() if k != "fit"}, "rows": rs}))
        return 0
    for r in rs:
        extra = ""
        if "eager_host_s" in r:
            extra = (f" | eager {r['eager_measured_s'] * 1e3:.2f} ms host {r['eager_host_s'] * 1e3:.2f} ms "
                     f"k {r['eager_kernels']} host/k {r['eager_host_s'] / r['eager_kernels'] * 1e6:.1f} us "
                     f"pred {r['eager_predicted_s'] * 1e3:.2f} ({r['eager_err']:+.1%})")
        host = f" host {r['host_s'] * 1e3:.2f} ms" if r.get("host_s") else ""
        print(f"{r['model']:17s} {r['phase']:7s} {r['launch']:5s} B={r['batch']:3d} S={r['seq_len']:5d} "
              f"meas {r['measured_s'] * 1e3:8.3f} pred {r['predicted_s'] * 1e3:8.3f} ({r['err']:+6.1%}) "
              f"gpu meas {r['measured_gpu_s'] * 1e3:8.3f} pred {r['predicted_gpu_s'] * 1e3:8.3f} "
              f"k {r['measured_kernels']}/{r['predicted_kernels']}{host}{extra}")
    print(json.dumps({k: v for k, v in fit.items() if k != "fit"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
