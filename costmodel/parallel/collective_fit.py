"""Fit the collectives model's latency and efficiency terms to a sweep, and write them as a measured overlay.

For one collective over n ranks of one node the model (costmodel/parallel/collectives.py, ring) is

    t(S) = steps(n)·alpha + factor(n)·S / (eff·B)

with B the fabric's datasheet bandwidth per GPU each way, steps(n) = 2(n-1) for all-reduce, n-1 for
all-gather / reduce-scatter / all-to-all and 1 for send/recv. A least-squares line of t against the bus
bytes factor·S (weighted by 1/t, so small and large messages count alike in relative terms) gives
alpha = intercept / steps (seconds per ring step: the fabric's latency_by_collective) and
eff = 1 / (slope·B) (a fraction of B, capped at 1). Held out: fit on every other size of the sweep,
report the relative error on the others (``fit_collectives(..., holdout=True)``).

``overlay_yaml`` writes the result as a cluster overlay (``base: <cluster>``, hardware_specs/cluster.py)
whose values carry ``measured:`` provenance (method, GPU, date); base_latency_s becomes 0 because the
fitted per-step alpha absorbs it.
"""

from __future__ import annotations

import datetime as _dt

import numpy as np
import yaml

from costmodel.parallel.collectives import bus_factor


def steps(collective: str, n: int) -> int:
    if collective == "all_reduce":
        return 2 * (n - 1)
    if collective == "send_recv":
        return 1
    return n - 1


def fit_one(nbytes, time_s, collective: str, n: int, bandwidth_Bps: float) -> dict:
    """(alpha per step [s], efficiency [fraction of bandwidth_Bps]) of one collective's points."""
    S = np.asarray(nbytes, dtype=np.float64)
    t = np.asarray(time_s, dtype=np.float64)
    x = float(bus_factor(collective, n)) * S
    w = 1.0 / t  # relative residuals
    A = np.stack([np.ones_like(x), x], axis=1) * w[:, None]
    (intercept, slope), *_ = np.linalg.lstsq(A, t * w, rcond=None)
    intercept = max(float(intercept), 0.0)
    eff = min(1.0, 1.0 / (float(slope) * bandwidth_Bps)) if slope > 0 else 1.0
    return {"latency_s": intercept / steps(collective, n), "efficiency": eff}


def predict_one(nbytes, collective: str, n: int, bandwidth_Bps: float, latency_s: float, efficiency: float):
    S = np.asarray(nbytes, dtype=np.float64)
    return steps(collective, n) * latency_s + float(bus_factor(collective, n)) * S / (efficiency * bandwidth_Bps)


def fit_collectives(records: list[dict], bandwidth_Bps: float, *, min_bytes: int = 1024, holdout: bool = True) -> dict:
    """Per collective: fitted terms and the held-out relative errors (sizes >= ``min_bytes``).

    With ``holdout`` the fit uses every other size (sorted) and the errors are on the rest; the
    terms written to an overlay are then refitted on all points.
    """
    out = {}
    for coll in sorted({r["collective"] for r in records}):
        pts = sorted((r for r in records if r["collective"] == coll and r["nbytes"] >= min_bytes),
                     key=lambda r: r["nbytes"])
        if len(pts) < 4:
            continue
        n = pts[0]["n"]
        S = np.array([p["nbytes"] for p in pts], dtype=np.float64)
        t = np.array([p["time_s"] for p in pts], dtype=np.float64)
        entry = {"n": n, "points": len(pts)}
        if holdout:
            train, test = slice(0, None, 2), slice(1, None, 2)
            f = fit_one(S[train], t[train], coll, n, bandwidth_Bps)
            err = predict_one(S[test], coll, n, bandwidth_Bps, f["latency_s"], f["efficiency"]) / t[test] - 1
            entry.update(holdout_median_abs_error=float(np.median(np.abs(err))),
                         holdout_worst_abs_error=float(np.max(np.abs(err))))
        entry.update(fit_one(S, t, coll, n, bandwidth_Bps))
        out[coll] = entry
    return out


def overlay_yaml(fits: dict, *, base: str, gpu: str, date: _dt.date, method: str, name: str | None = None) -> str:
    """A cluster overlay replacing intra_node latency and efficiency per collective, with provenance."""
    prov = {"method": method, "gpu": gpu, "date": date.isoformat()}
    intra = {"base_latency_s": {"value": 0.0, "measured": {**prov, "method": method + "; absorbed by the per-step alpha"}},
             "latency_by_collective": {}, "efficiency": {}}
    for coll, f in fits.items():
        intra["latency_by_collective"][coll] = {"value": f["latency_s"], "measured": prov}
        intra["efficiency"][coll] = {"value": f["efficiency"], "measured": prov}
    # the fitted line describes whatever protocol NCCL chose at each size: the datasheet LL terms go
    for key in ("ll_latency_s", "ll_base_latency_s", "ll_bandwidth_fraction"):
        intra[key] = None
    doc = {"base": base, "intra_node": intra}
    if name:
        doc["name"] = name
    header = (f"# Measured collective terms (issue 19): {method}, on {gpu}, {date.isoformat()}.\n"
              "# latency_by_collective: seconds per ring step; efficiency: fraction of the NVLink bandwidth per GPU.\n")
    return header + yaml.safe_dump(doc, sort_keys=False)


def main(argv=None) -> int:
    """``python3 -m costmodel.parallel.collective_fit SWEEP.json --base dgx-h200 --out OVERLAY.yaml``"""
    import argparse
    import json

    from hardware_specs.cluster import load_cluster

    ap = argparse.ArgumentParser(description="fit a collective sweep into a measured cluster overlay")
    ap.add_argument("sweep")
    ap.add_argument("--base", default="dgx-h200", help="cluster the overlay calibrates")
    ap.add_argument("--out", required=True)
    ap.add_argument("--min-bytes", type=int, default=1024)
    args = ap.parse_args(argv)
    with open(args.sweep) as f:
        data = json.load(f)
    bw = load_cluster(args.base).intra_node.bandwidth_per_gpu_Bps
    fits = fit_collectives(data["records"], bw, min_bytes=args.min_bytes)
    env = data.get("environment", {})
    gpu = ", ".join(sorted(set(env.get("gpus") or ["unknown GPU"])))
    date = _dt.date.fromisoformat(str(env.get("date", _dt.date.today().isoformat()))[:10])
    method = (f"least-squares fit of t = steps*alpha + busbytes/(eff*B) to an nccl-tests-style sweep "
              f"({data.get('command', 'collective_sweep')}), every other size held out")
    with open(args.out, "w") as f:
        f.write(overlay_yaml(fits, base=args.base, gpu=gpu, date=date, method=method))
    print(json.dumps(fits, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["fit_collectives", "fit_one", "main", "overlay_yaml", "predict_one", "steps"]
