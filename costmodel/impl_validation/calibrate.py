"""Fit the implementations' timing parameters on the calibration grid, check them on the held-out grid.

    python3 -m costmodel.impl_validation.calibrate [--raw RAW.json] [--write-spec] [--out RESULTS.json]

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

from costmodel.impl_validation import fit, heldout, records
from hardware_specs import load_gpu
from hardware_specs.implementations import PARAMETERS

SPEC = "h200-sxm-141gb-measured"
SPEC_FILE = Path(__file__).resolve().parents[2] / "hardware_specs" / "calibrated" / f"{SPEC}.yaml"
METHOD = ("least squares on log(predicted / measured) of torch SDPA (flash, cuDNN, efficient, math) and "
          "eager attention calls, bf16, CUDA events, calibration grid of costmodel/impl_validation/grids.py "
          "({n} calls); coordinate descent, golden section in log space")


def section(values: dict, spread: dict, data: dict, n_points: int, residuals: list[float]) -> dict:
    meta = data["meta"]
    prov = {"method": METHOD.format(n=n_points), "gpu": meta["gpu"], "date": meta["date"]}

    def entry(owner, name):
        unit, meaning = PARAMETERS[name]
        out = {"value": float(f"{values[(owner, name)]:.4g}"), "unit": unit, "meaning": meaning, "measured": prov}
        if (owner, name) in spread:
            out["spread"] = round(spread[(owner, name)], 4)
        return out

    gpu = {n: entry("gpu", n) for o, n in values if o == "gpu"}
    impls: dict = {}
    for o, n in values:
        if o != "gpu":
            impls.setdefault(o, {})[n] = entry(o, n)
    absres = sorted(abs(r) for r in residuals)
    return {"gpu": gpu, "impls": impls, "raw": "costmodel/impl_validation/data/impls-raw.json",
            "fit": {"calibration_calls": n_points, "median_abs_residual": round(absres[len(absres) // 2], 4),
                    "worst_abs_residual": round(absres[-1], 4), "torch": meta["torch"], "cudnn": meta.get("cudnn"),
                    "driver": meta.get("nvidia_smi"), "command": meta["command"]}}


def write_section(sec: dict, path: Path = SPEC_FILE) -> None:
    text = path.read_text()
    text = text.split("\nimplementations:")[0].rstrip("\n") + "\n"
    text += yaml.safe_dump({"implementations": sec}, sort_keys=False, width=120)
    path.write_text(text)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", default=str(records.RAW))
    ap.add_argument("--write-spec", action="store_true")
    ap.add_argument("--out", default=str(records.RAW.parent / "heldout-results.json"))
    ap.add_argument("--sweeps", type=int, default=2)
    args = ap.parse_args(argv)
    data = records.load(args.raw)
    spec = load_gpu(SPEC)
    spec = spec.model_copy(update={"implementations": None})  # counts do not depend on the fit
    ms = records.measurements(data)
    cal = [m for m in ms if m.case.grid == "calibration"]
    # the two runs compared on the calls both completed (the first run's share of the budget ran out)
    both = {m.case.key() for m in cal if m.rep == 0} & {m.case.key() for m in cal if m.rep == 1}
    fits = {}
    for rep in (0, 1):
        pts = fit.points(spec, [m for m in cal if m.rep == rep and m.case.key() in both])
        fits[rep] = fit.fit(spec, pts, sweeps=args.sweeps)
        print(f"fit on calibration run {rep + 1}: {len(pts)} calls", file=sys.stderr)
    pts = fit.points(spec, cal)
    mean = {k: 0.5 * (fits[0][k] + fits[1][k]) for k in fits[0]}
    values = fit.fit(spec, pts, sweeps=1, start=mean)  # both runs, from the two fits' mean
    spread = {k: abs(fits[0][k] - fits[1][k]) / (0.5 * (fits[0][k] + fits[1][k])) for k in values
              if k in fits[0] and k in fits[1]}
    sec = section(values, spread, data, len(pts), fit.residuals(spec, pts, values))
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
                    "refit_command": "python3 -m costmodel.impl_validation.calibrate --write-spec"},
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
