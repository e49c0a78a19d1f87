"""Predicted against measured: whole steps, peak memory and kernel classes, from a committed GPU run.

    python3 -m costmodel.validation.step_compare [--results FILE] [--spec SPEC] [--json]

Re-predicts every model run in the results file (``costmodel/validation/results/h200/step_run1.json``, and ``step_run2.json``
by default) with ``costmodel.step.predict_step`` on a spec (default: the calibrated H200, whose
``gemm:`` / ``memory_ops:`` sections were fitted on the op grids of the same run, never on these
model runs) and prints the errors. No GPU is needed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from costmodel.validation.step_results import load_results, load_results_run2

DEFAULT_SPEC = "h200-sxm-141gb-measured"


def kernel_class(name: str) -> str | None:
    """A profiled kernel's class: gemm, attention, memory (elementwise / reduction / copy), or None
    for entries that are not kernels (profiler annotations)."""
    n = name.lower()
    if n.startswith(("optimizer.", "profilerstep")):  # torch.profiler's annotations ("Optimizer.step#AdamW.step")
        return None
    if "sdpa" in n or "fmha" in n or "flash" in n or "cudnn::fusion" in n or "dot_do_o" in n or "convert_dq" in n:
        return "attention"
    if "nvjet" in n or "gemm" in n or "gemv" in n or "cutlass" in n or "splitkreduce" in n or "xmma" in n:
        return "gemm"
    return "memory"


def predicted_classes(result) -> dict:
    out = {"gemm": 0.0, "attention": 0.0, "memory": 0.0}
    for row in result.ops:
        key = "gemm" if any(x in row.name for x in ("dgrad", "wgrad")) else None
        if key is None:
            kind = "attention" if row.name.split(".")[0].split(":")[-1] == "attention" else None
            key = kind or ("gemm" if row.bound in ("tensor", "hbm (split-K)") or _is_gemm(row.name) else "memory")
        out[key] += float(row.time_s)
    return out


_GEMM_NAMES = ("qkv", "q", "k", "v", "out_proj", "gate_up", "gate", "up", "down", "fc", "proj", "lm_head")


def _is_gemm(name: str) -> bool:
    base = name.split(":")[-1]
    return base in _GEMM_NAMES


def measured_classes(profile: dict) -> dict:
    out = {"gemm": 0.0, "attention": 0.0, "memory": 0.0}
    for name, (count, us) in profile["by_name"].items():
        c = kernel_class(name)
        if c:
            out[c] += us * 1e-6
    return out


def compare(results: dict, spec=DEFAULT_SPEC) -> list[dict]:
    from costmodel.step import predict_step
    from hardware_specs import load_gpu

    spec = load_gpu(spec) if isinstance(spec, str) else spec
    rows = []
    for m in results["models"]:
        if "time_s" not in m:
            continue
        r = predict_step(m["model"], spec, m["phase"], batch=m["batch"], seq_len=m["seq_len"],
                         launch=m.get("launch"))
        # the run's own leftovers (op-grid buffers) sit under every model's peak: taken off when recorded
        peak = m["peak_bytes"] - m["baseline_bytes"] if "baseline_bytes" in m else None
        raw_peak = m["peak_bytes"]
        row = {"model": m["model"], "phase": m["phase"], "batch": m["batch"], "seq_len": m["seq_len"],
               "launch": r.launch, "measured_s": m["time_s"], "predicted_s": float(r.time_s),
               "time_err": float(r.time_s) / m["time_s"] - 1, "measured_peak_bytes": peak,
               "predicted_peak_bytes": float(r.memory_bytes),
               "memory_err": float(r.memory_bytes) / peak - 1 if peak else None,
               "predicted_kernels": r.kernels, "run": results["meta"].get("command", ""), "raw_peak_bytes": raw_peak}
        if "eager_time_s" in m:
            e = predict_step(m["model"], spec, m["phase"], batch=m["batch"], seq_len=m["seq_len"], launch="eager")
            row.update(eager_measured_s=m["eager_time_s"], eager_predicted_s=float(e.time_s),
                       eager_err=float(e.time_s) / m["eager_time_s"] - 1)
        if "profile" in m:
            meas, pred = measured_classes(m["profile"]), predicted_classes(r)
            row["classes"] = {k: {"measured_s": meas[k], "predicted_s": pred[k],
                                  "err": (pred[k] / meas[k] - 1) if meas[k] else None} for k in meas}
            row["measured_kernels"] = sum(c for n, (c, _) in m["profile"]["by_name"].items() if kernel_class(n))
        rows.append(row)
    return rows


def summary(rows: list[dict]) -> dict:
    def stats(key, sel=lambda r: True):
        v = [abs(r[key]) for r in rows if r.get(key) is not None and sel(r)]
        return {"n": len(v), "median_abs_err": statistics.median(v) if v else None, "max_abs_err": max(v) if v else None}
    return {"time": stats("time_err"), "memory": stats("memory_err"),
            "memory_inference": stats("memory_err", lambda r: r["phase"] != "train"),
            "memory_train": stats("memory_err", lambda r: r["phase"] == "train"),
            "eager_decode": stats("eager_err"),
            **{f"time_{ph}": stats("time_err", lambda r, ph=ph: r["phase"] == ph) for ph in ("prefill", "decode", "train")}}


def text_table(rows: list[dict]) -> str:
    from costmodel.cli.text import table

    out = [(r["model"], r["phase"], str(r["batch"]), str(r["seq_len"]), f"{r['measured_s'] * 1e3:.2f}",
            f"{r['predicted_s'] * 1e3:.2f}", f"{r['time_err']:+.1%}",
            f"{r['measured_peak_bytes'] / 1e9:.2f}" if r["measured_peak_bytes"] else "",
            f"{r['predicted_peak_bytes'] / 1e9:.2f}", f"{r['memory_err']:+.1%}" if r["memory_err"] is not None else "")
           for r in rows]
    return table(out, ("model", "phase", "B", "S", "measured ms", "predicted ms", "err", "peak GB", "pred GB", "err"))


def markdown(rows: list[dict]) -> str:
    head = "| model | phase | B | S | run | measured ms | predicted ms | err | peak GB | predicted GB | err |"
    out = [head, "|" + "---|" * 11]
    for r in rows:
        run = "2" if "families" in r["run"] else "1"
        peak = (f"{r['measured_peak_bytes'] / 1e9:.2f}" if r["measured_peak_bytes"]
                else f"({r['raw_peak_bytes'] / 1e9:.2f} raw)")
        merr = f"{r['memory_err']:+.1%}" if r["memory_err"] is not None else ""
        out.append(f"| {r['model']} | {r['phase']} | {r['batch']} | {r['seq_len']} | {run} | {r['measured_s'] * 1e3:.2f} "
                   f"| {r['predicted_s'] * 1e3:.2f} | {r['time_err']:+.1%} | {peak} | "
                   f"{r['predicted_peak_bytes'] / 1e9:.2f} | {merr} |")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m costmodel.validation.step_compare")
    p.add_argument("--results", nargs="*", help="results files (default: the two committed H200 runs)")
    p.add_argument("--spec", default=DEFAULT_SPEC)
    p.add_argument("--json", action="store_true")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    if args.results:
        runs = [load_results(f) for f in args.results]
    else:
        runs = [load_results(), load_results_run2()]
    rows = [row for run in runs for row in compare(run, args.spec)]
    if args.json:
        print(json.dumps({"rows": rows, "summary": summary(rows)}))
    elif args.markdown:
        print(markdown(rows))
        print()
        print(json.dumps(summary(rows)))
    else:
        print(text_table(rows))
        print(json.dumps(summary(rows), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
