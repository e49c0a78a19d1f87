"""Fit the implementations' timing parameters on the calibration grid, check them on the held-out grid.

    python3 -m costmodel.validation.implementations.calibrate [--raw RAW.json] [--write-spec] [--out RESULTS.json]

Fits three times: on calibration run A alone, on run B alone (minutes later, the same grid:
``--spread-reps``, default reps 2 and 3, the 04:42 UTC run's two complete passes) and on every
calibration run together (reps 0-3); the spread between the first two is each parameter's
``spread``; the third is written.
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

from costmodel.validation.implementations import fit, heldout, ncu_view, records
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
    return {"gpu": gpu, "impls": impls, "raw": ", ".join(f"costmodel/validation/implementations/data/{p.name}"
                                                        for p in records.RAWS),
            "fit": {"calibration_calls": n_points, "median_abs_residual": round(absres[len(absres) // 2], 4),
                    "worst_abs_residual": round(absres[-1], 4), "torch": meta["torch"], "cudnn": meta.get("cudnn"),
                    "driver": meta.get("nvidia_smi"),
                    "command": "; ".join(r["command"] for r in meta.get("runs", [meta]))}}


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


def drift(cal: list[records.Measured]) -> dict:
    """How much the measurements themselves moved: per pair of calibration runs, the median and worst
    |t_b / t_a - 1| over the calls both timed."""
    by: dict = {}
    for m in cal:
        by.setdefault(m.rep, {})[m.case.key()] = m.time_s
    out = {}
    reps = sorted(by)
    for i, a in enumerate(reps):
        for b in reps[i + 1:]:
            r = sorted(abs(by[b][k] / by[a][k] - 1) for k in by[a].keys() & by[b].keys())
            if r:
                out[f"{a}-{b}"] = {"calls": len(r), "median": round(r[len(r) // 2], 4), "worst": round(r[-1], 4)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", nargs="+", default=[str(p) for p in records.RAWS])
    ap.add_argument("--spread-reps", default="2,3", help="the two calibration runs compared, REP_A,REP_B")
    ap.add_argument("--write-spec", action="store_true")
    ap.add_argument("--out", default=str(records.RAW.parent / "heldout-results.json"))
    ap.add_argument("--sweeps", type=int, default=3)
    ap.add_argument("--hold", default="dram_latency_s=4.506e-7,l2_latency_s=4.476e-7",
                    help="GPU-wide parameters held, NAME=VALUE,...: the latencies, which this grid does not "
                         "determine (two runs' fits differed by 29-51 %); default: the values of the fit with the "
                         "decode GPU points (commit 204b257), on which main's numba_kernels fit was made")
    args = ap.parse_args(argv)
    data = records.load(args.raw)
    raw_dir = Path(args.raw[0]).parent
    spec = load_gpu(SPEC)
    spec = spec.model_copy(update={"implementations": None})  # counts do not depend on the fit
    ms = records.measurements(data)
    cal = [m for m in ms if m.case.grid == "calibration"]
    rep_a, rep_b = (int(x) for x in args.spread_reps.split(","))
    # the two runs compared on the calls both completed
    both = {m.case.key() for m in cal if m.rep == rep_a} & {m.case.key() for m in cal if m.rep == rep_b}
    # Nsight Compute's kernel durations of the calibration grid's decodes: GPU-side points (no host
    # cost in them), the same in every fit
    ncu_csv = raw_dir / "ncu.csv"
    gpu_pts = fit.points(spec, [p for p in records.profiles(data, ncu_csv) if p.case.grid == "calibration"],
                         gpu_only=True)
    held = {("gpu", k): float(v) for k, v in (kv.split("=") for kv in args.hold.split(",") if kv)}
    fits = {}
    for rep in (rep_a, rep_b):
        pts = gpu_pts + fit.points(spec, [m for m in cal if m.rep == rep and m.case.key() in both])
        fits[rep] = fit.fit(spec, pts, sweeps=args.sweeps, start=held, fixed=tuple(held))
        print(f"fit on calibration run {rep}: {len(pts)} calls", file=sys.stderr)
    pts = gpu_pts + fit.points(spec, cal)
    mean = {k: 0.5 * (fits[rep_a][k] + fits[rep_b][k]) for k in fits[rep_a]}
    values = fit.fit(spec, pts, sweeps=2, start=mean, fixed=tuple(held))  # both runs, from the two fits' mean
    spread = {k: abs(fits[rep_a][k] - fits[rep_b][k]) / (0.5 * (fits[rep_a][k] + fits[rep_b][k])) for k in values
              if k in fits[rep_a] and k in fits[rep_b]}
    sec = section(values, spread, data, len(pts), fit.residuals(spec, pts, values), held)
    if args.write_spec:
        write_section(sec)
    from hardware_specs.implementations import ImplementationsSection

    final = spec.model_copy(update={"implementations": ImplementationsSection.model_validate(sec)})
    held = records.per_case([m for m in ms if m.case.grid == "heldout"])
    t_rows = heldout.time_rows(final, held)
    # Nsight Compute's view of a prediction: D, the dirty L2 bytes its write counter misses, fitted on the
    # calibration grid's profiled calls (its decodes and the fwd+bwd calls cuDNN's backward bytes were read from)
    cal_prof = ([p for p in records.profiles(data, ncu_csv) if p.case.grid == "calibration"]
                + records.profiles(records.load(records.BWD_NCU), None))
    dirty = ncu_view.fit_dirty_bytes([(p.case.impl, heldout.predict(final, p.case), p.dram_bytes) for p in cal_prof])
    if args.write_spec:
        ncu_view.write_view(dirty, len(cal_prof), data["meta"]["gpu"])
    d_rows = heldout.dram_rows(final, [p for p in records.profiles(data, ncu_csv) if p.case.grid == "heldout"], dirty)
    cal_d_rows = heldout.dram_rows(final, cal_prof, dirty)
    # the two calibration runs predicted by their own fits: how much a re-calibration moves predictions
    moved = []
    for m in [m for m in cal if m.rep == rep_a and m.case.key() in both]:
        p = fit.points(spec, [m])[0]
        moved.append(fit.predict(spec, p, fits[rep_b]) / fit.predict(spec, p, fits[rep_a]) - 1)
    out = {"meta": {**data["meta"], "fitted": _dt.date.today().isoformat(),
                    "refit_command": "python3 -m costmodel.validation.implementations.calibrate --write-spec"},
           "section": sec, "time": t_rows, "dram": d_rows,
           "time_summary": heldout.summarize(t_rows), "dram_summary": heldout.summarize(d_rows),
           "ncu_dirty_l2_bytes": dirty, "calibration_dram_summary": heldout.summarize(cal_d_rows),
           "gpu_time_summary": heldout.summarize(d_rows, "gpu_time_rel_error"),
           "calibration_spread": {"runs": [rep_a, rep_b], "calls_in_both_runs": len(both),
                                  "measured_between_runs": drift(cal), "params": {f"{o}.{n}": v for (o, n), v in spread.items()},
                                  "prediction_moved_median": sorted(abs(x) for x in moved)[len(moved) // 2],
                                  "prediction_moved_worst": max(abs(x) for x in moved)},
           "failures": [{"key": c.key(), "error": e} for c, e in records.failures(data)]}
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(heldout.table(out["time_summary"], "held-out time"))
    print(heldout.table(out["dram_summary"], "held-out DRAM bytes"))
    print(heldout.table(out["calibration_dram_summary"], f"calibration DRAM bytes (D = {dirty / 1e6:.1f} MB)"))
    print(json.dumps(out["calibration_spread"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
