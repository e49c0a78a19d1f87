"""Fit the implementations' timing parameters on the calibration grid, check them on the held-out grid.

    python3 -m costmodel.validation.implementations.calibrate [--raw RAW.json] [--write-spec] [--out RESULTS.json]

Fits three times: on calibration A alone, on calibration B alone (``--spread-reps``: two disjoint sets
of repeats, default the even and the odd ones, each call the median of its side's repeats) and on every
repeat together; the spread between the first two is each parameter's ``spread``; the third is
written.
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
          "CUDA-event times of isolated calls (each call once, at the median of its repeats) and Nsight Compute "
          "kernel durations of the decodes ({n} points); "
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


# the two calibrations: disjoint halves of the committed repeats (records.RAWS), each with both of its
# runs' prefill (reps 0, 2 against 1, 3; the block-count sweep's 2 against 3) and half the decodes
DEFAULT_SIDES = "0+2+4+6+8,1+3+5+7"


def parse_sides(text: str) -> tuple[set[int], set[int]]:
    """``A,B`` (each a +-joined list of repeat numbers) -> (reps of A, reps of B), disjoint."""
    try:
        a, b = ({int(x) for x in side.split("+")} for side in text.split(","))
    except ValueError:
        raise ValueError(f"--spread-reps: {text!r} is not allowed; two +-joined lists of repeat numbers, "
                         f"comma-separated (e.g. {DEFAULT_SIDES})") from None
    if a & b:
        raise ValueError(f"--spread-reps: {text!r}: repeats {sorted(a & b)} are on both sides; they must be disjoint")
    return a, b


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
    ap.add_argument("--spread-reps", default=DEFAULT_SIDES,
                    help="the two calibrations compared, A,B, each a +-joined list of repeat numbers")
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
    try:
        sides = parse_sides(args.spread_reps)
    except ValueError as exc:
        ap.error(str(exc))  # exit 2
    # the two calibrations compared on the calls both completed, each call the median of its side's repeats
    side_ms = [records.per_case([m for m in cal if m.rep in reps]) for reps in sides]
    both = {m.case.key() for m in side_ms[0]} & {m.case.key() for m in side_ms[1]}
    # Nsight Compute's kernel durations of the calibration grid's decodes: GPU-side points (no host
    # cost in them), the same in every fit
    ncu_csv = raw_dir / "ncu.csv"
    gpu_pts = fit.points(spec, [p for p in records.profiles(data, ncu_csv) if p.case.grid == "calibration"],
                         gpu_only=True)
    held = {("gpu", k): float(v) for k, v in (kv.split("=") for kv in args.hold.split(",") if kv)}
    fits = []
    for reps, side in zip(sides, side_ms):
        pts = gpu_pts + fit.points(spec, [m for m in side if m.case.key() in both])
        fits.append(fit.fit(spec, pts, sweeps=args.sweeps, start=held, fixed=tuple(held)))
        print(f"fit on calibration {'+'.join(map(str, reps))}: {len(pts)} calls", file=sys.stderr)
    fit_a, fit_b = fits
    # every repeat together, each call once at the median of its repeats: the statistic the held-out
    # calls are compared at (records.per_case), so that a host time that moves between repeats (isolated
    # decodes: near 60 or near 120 us) is fitted at its typical value, not a mean of two modes
    pts = gpu_pts + fit.points(spec, records.per_case(cal))
    mean = {k: 0.5 * (fit_a[k] + fit_b[k]) for k in fit_a}
    values = fit.fit(spec, pts, sweeps=2, start=mean, fixed=tuple(held))  # both runs, from the two fits' mean
    spread = {k: abs(fit_a[k] - fit_b[k]) / (0.5 * (fit_a[k] + fit_b[k])) for k in values if k in fit_a and k in fit_b}
    sec = section(values, spread, data, len(pts), fit.residuals(spec, pts, values), held)
    if args.write_spec:
        write_section(sec)
    from hardware_specs.implementations import ImplementationsSection

    final = spec.model_copy(update={"implementations": ImplementationsSection.model_validate(sec)})
    held = records.per_case([m for m in ms if m.case.grid == "heldout"])
    t_rows = heldout.time_rows(final, held)
    # Nsight Compute's view of a prediction: (C, D_max), the dirty L2 its write counter misses, fitted on the
    # calibration grid's profiled calls (its decodes and the fwd+bwd calls cuDNN's backward bytes were read from)
    cal_prof = ([p for p in records.profiles(data, ncu_csv) if p.case.grid == "calibration"]
                + records.profiles(records.load(records.BWD_NCU), None))
    dirty = ncu_view.fit_dirty_l2([(p.case.impl, heldout.predict(final, p.case), p.dram_bytes) for p in cal_prof])
    if args.write_spec:
        ncu_view.write_view(dirty, len(cal_prof), data["meta"]["gpu"])
    d_rows = heldout.dram_rows(final, [p for p in records.profiles(data, ncu_csv) if p.case.grid == "heldout"], dirty)
    cal_d_rows = heldout.dram_rows(final, cal_prof, dirty)
    # the two calibration runs predicted by their own fits: how much a re-calibration moves predictions
    moved, moved_keys = [], []
    for m in [m for m in side_ms[0] if m.case.key() in both]:
        p = fit.points(spec, [m])[0]
        moved.append(fit.predict(spec, p, fit_b) / fit.predict(spec, p, fit_a) - 1)
        moved_keys.append(m.case.key())
    most_moved = sorted(zip(moved, moved_keys), key=lambda x: -abs(x[0]))
    prefill_moved = [abs(x) for x, k in most_moved if "|decode " not in k]
    out = {"meta": {**data["meta"], "fitted": _dt.date.today().isoformat(),
                    "refit_command": "python3 -m costmodel.validation.implementations.calibrate --write-spec"},
           "section": sec, "time": t_rows, "dram": d_rows,
           "time_summary": heldout.summarize(t_rows), "dram_summary": heldout.summarize(d_rows),
           "ncu_dirty_l2": {"resident_bytes": dirty.resident_bytes, "max_dirty_bytes": dirty.max_dirty_bytes},
           "calibration_dram_summary": heldout.summarize(cal_d_rows),
           "gpu_time_summary": heldout.summarize(d_rows, "gpu_time_rel_error"),
           "calibration_spread": {"runs": [sorted(r) for r in sides], "calls_in_both_runs": len(both),
                                  "measured_between_runs": drift(cal), "params": {f"{o}.{n}": v for (o, n), v in spread.items()},
                                  "prediction_moved_median": sorted(abs(x) for x in moved)[len(moved) // 2],
                                  "prediction_moved_worst": max(abs(x) for x in moved),
                                  "prediction_moved_over_2pct": sum(abs(x) > 0.02 for x in moved),
                                  "prediction_moved_worst_prefill": max(prefill_moved, default=None),
                                  "prediction_moved_most": [{"key": k, "moved": round(x, 4)} for x, k in most_moved[:12]]},
           "failures": [{"key": c.key(), "error": e} for c, e in records.failures(data)]}
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(heldout.table(out["time_summary"], "held-out time"))
    print(heldout.table(out["dram_summary"], "held-out DRAM bytes"))
    print(heldout.table(out["calibration_dram_summary"], f"calibration DRAM bytes (C = {dirty.resident_bytes / 1e6:.1f} "
                                                          f"MB, D_max = {dirty.max_dirty_bytes / 1e6:.1f} MB)"))
    print(json.dumps(out["calibration_spread"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
