"""Fit the implementations' timing parameters on the calibration grid, check them on the held-out grid.

    python3 -m costmodel.validation.implementations.calibrate [--raw RAW.json] [--write-spec] [--out RESULTS.json]

Fits three times: on the first calibration run, on the second (minutes later, same grid) and on
both; the spread between the first two is each parameter's ``spread``; the third is written.
``--write-spec`` puts the ``implementations:`` section into the calibrated H200 spec (replacing
one there). The results file holds every held-out prediction beside its measurement, so
``validate --implementations --repredict`` can re-check it with a later model and no GPU.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from pathlib import Path

import yaml

from costmodel.validation.implementations import fit, heldout, records
from hardware_specs import load_gpu
from hardware_specs.implementations import PARAMETERS

SPEC = "h200-sxm-141gb-measured"
SPEC_FILE = Path(__import__("hardware_specs").__file__).parent / "calibrated" / f"{SPEC}.yaml"
METHOD = ("least squares on log(predicted / measured) of torch SDPA (flash, cuDNN, efficient, math) and "
          "eager attention calls, bf16, on the calibration grid of costmodel/validation/implementations/grids.py: "
          "CUDA-event times of isolated calls and Nsight Compute kernel durations of the decodes ({n} points); "
          "coordinate descent, golden section in log space")


def section(values: dict, spread: dict, data: dict, n_points: int, residuals: list[float],
            held: dict | None = None) -> dict:
    meta = data["meta"]
    prov = {"method": METHOD.format(n=n_points), "gpu": meta["gpu"], "date": meta["date"]}
    held_prov = {**prov, "method": "held in this fit at the value an earlier fit of the same H200 samples gave "
                                   "(costmodel/validation/implementations/calibrate.py --hold): this grid does not "
                                   "determine it"}

    def entry(owner, name):
        unit, meaning = PARAMETERS[name]
        out = {"value": float(f"{values[(owner, name)]:.4g}"), "unit": unit, "meaning": meaning,
               "measured": held_prov if (owner, name) in (held or {}) else prov}
        if (owner, name) in spread and (owner, name) not in (held or {}):
            out["spread"] = round(spread[(owner, name)], 4)
        return out

    gpu = {n: entry("gpu", n) for o, n in values if o == "gpu"}
    impls: dict = {}
    for o, n in values:
        if o != "gpu":
            impls.setdefault(o, {})[n] = entry(o, n)
    absres = sorted(abs(r) for r in residuals)
    return {"gpu": gpu, "impls": impls, "raw": "costmodel/validation/implementations/data/impls-raw.json",
            "fit": {"calibration_calls": n_points, "median_abs_residual": round(absres[len(absres) // 2], 4),
                    "worst_abs_residual": round(absres[-1], 4), "torch": meta["torch"], "cudnn": meta.get("cudnn"),
                    "driver": meta.get("nvidia_smi"), "command": meta["command"]}}


def write_section(sec: dict, path: Path = SPEC_FILE) -> None:
    """Replace the file's top-level ``implementations:`` block (or append one); other sections stay."""
    lines = path.read_text().splitlines(keepends=True)
    block = yaml.safe_dump({"implementations": sec}, sort_keys=False, width=120)
    start = next((i for i, line in enumerate(lines) if line.startswith("implementations:")), None)
    if start is None:
        path.write_text("".join(lines).rstrip("\n") + "\n" + block)
        return
    end = next((i for i in range(start + 1, len(lines)) if lines[i][:1] not in (" ", "-", "\n", "#")), len(lines))
    path.write_text("".join(lines[:start]) + block + "".join(lines[end:]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", default=str(records.RAW))
    ap.add_argument("--write-spec", action="store_true")
    ap.add_argument("--out", default=str(records.RAW.parent / "heldout-results.json"))
    ap.add_argument("--sweeps", type=int, default=2)
    ap.add_argument("--hold", default="dram_latency_s=4.506e-7,l2_latency_s=4.476e-7",
                    help="GPU-wide parameters held, NAME=VALUE,...: the latencies, which this grid does not "
                         "determine (two runs' fits differed by 29-51 %); default: the values of the fit with the "
                         "decode GPU points (commit 204b257), on which main's numba_kernels fit was made")
    args = ap.parse_args(argv)
    data = records.load(args.raw)
    spec = load_gpu(SPEC)
    spec = spec.model_copy(update={"implementations": None})  # counts do not depend on the fit
    ms = records.measurements(data)
    cal = [m for m in ms if m.case.grid == "calibration"]
    # the two runs compared on the calls both completed (the first run's share of the budget ran out)
    both = {m.case.key() for m in cal if m.rep == 0} & {m.case.key() for m in cal if m.rep == 1}
    # Nsight Compute's kernel durations of the calibration grid's decodes (no call was timed there: the
    # runner's budget ran out before them): GPU-side points, the same in both fits
    ncu_csv = Path(args.raw).parent / "ncu.csv"
    gpu_pts = fit.points(spec, [p for p in records.profiles(data, ncu_csv) if p.case.grid == "calibration"],
                         gpu_only=True)
    held = {("gpu", k): float(v) for k, v in (kv.split("=") for kv in args.hold.split(",") if kv)}
    fits = {}
    for rep in (0, 1):
        pts = gpu_pts + fit.points(spec, [m for m in cal if m.rep == rep and m.case.key() in both])
        fits[rep] = fit.fit(spec, pts, sweeps=args.sweeps, start=held, fixed=tuple(held))
        print(f"fit on calibration run {rep + 1}: {len(pts)} calls", file=sys.stderr)
    pts = gpu_pts + fit.points(spec, cal)
    mean = {k: 0.5 * (fits[0][k] + fits[1][k]) for k in fits[0]}
    values = fit.fit(spec, pts, sweeps=1, start=mean, fixed=tuple(held))  # both runs, from the two fits' mean
    spread = {k: abs(fits[0][k] - fits[1][k]) / (0.5 * (fits[0][k] + fits[1][k])) for k in values
              if k in fits[0] and k in fits[1]}
    sec = section(values, spread, data, len(pts), fit.residuals(spec, pts, values), held)
    if args.write_spec:
        write_section(sec)
    from hardware_specs.implementations import ImplementationsSection

    final = spec.model_copy(update={"implementations": ImplementationsSection.model_validate(sec)})
    held = [m for m in ms if m.case.grid == "heldout"]
    t_rows = heldout.time_rows(final, held)
    d_rows = heldout.dram_rows(final, [p for p in records.profiles(data, Path(args.raw).parent / "ncu.csv")
                                       if p.case.grid == "heldout"])
    # the two calibration runs predicted by their own fits: how much a re-calibration moves predictions
    moved = []
    for m in [m for m in cal if m.rep == 0 and m.case.key() in both]:
        p = fit.points(spec, [m])[0]
        moved.append(fit.predict(spec, p, fits[1]) / fit.predict(spec, p, fits[0]) - 1)
    out = {"meta": {**data["meta"], "fitted": _dt.date.today().isoformat(),
                    "refit_command": "python3 -m costmodel.validation.implementations.calibrate --write-spec"},
           "section": sec, "time": t_rows, "dram": d_rows,
           "time_summary": heldout.summarize(t_rows), "dram_summary": heldout.summarize(d_rows),
           "gpu_time_summary": heldout.summarize(d_rows, "gpu_time_rel_error"),
           "calibration_spread": {"calls_in_both_runs": len(both), "params": {f"{o}.{n}": v for (o, n), v in spread.items()},
                                  "prediction_moved_median": sorted(abs(x) for x in moved)[len(moved) // 2],
                                  "prediction_moved_worst": max(abs(x) for x in moved)},
           "failures": [{"key": c.key(), "error": e} for c, e in records.failures(data)]}
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(heldout.table(out["time_summary"], "held-out time"))
    print(heldout.table(out["dram_summary"], "held-out DRAM bytes"))
    print(json.dumps(out["calibration_spread"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
