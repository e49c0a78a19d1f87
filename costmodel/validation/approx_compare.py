"""Predictions beside the measurements of ``costmodel.validation.approx_bench``, errors and crossover lengths.

``predict(case, spec)`` gives the model's eager time, GPU time, DRAM bytes, FLOPs and kernel
count of one bench case: the approximations through ``simulate_attention(impl=...)``, torch
SDPA's flash and cuDNN backends as the attention-implementation models where they exist
(``torch-flash`` / ``torch-cudnn`` in ``simulators.IMPLS``) and as FlashAttention-2 on
tensor cores otherwise, eager exact attention as the ``standard`` kernel graph.

``crossovers(rows)`` finds, per method, head dim and mask, the shortest N of the grid at which
the method's time is below the best exact kernel's (the faster of flash and cuDNN) — and stays
below at every longer N of the grid — measured and predicted alike.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

APPROX = ("linformer", "performer", "reformer")
RESULTS = Path(__file__).resolve().parent / "results" / "h200" / "approx-h200.json"
PREDICTED = Path(__file__).resolve().parent / "results" / "h200" / "approx-h200-predicted.json"
EXACT = ("torch-flash", "torch-cudnn")


def _impl(method: str) -> str:
    from simulators.implementations import TORCH_IMPLS

    if method in APPROX:
        return method
    if method == "exact-eager":
        return "torch-eager" if "torch-eager" in TORCH_IMPLS else "standard"
    return method if method in TORCH_IMPLS else "flash2"


def predict(case: dict, spec) -> dict:
    """The model's numbers for one bench case (a dict of approx_bench.Case's fields)."""
    from simulators import simulate_attention

    params = {"linformer": {"proj_len": 256}, "performer": {"features": 256, "chunk": 128},
              "reformer": {"hash_rounds": 4, "bucket_size": 64}}.get(case["method"], {})
    params = {**params, **case.get("params", {})}
    r = simulate_attention(spec, _impl(case["method"]), batch=case["batch"], heads=case["heads"],
                           seq_len=case["seq_len"], head_dim=case["head_dim"], dtype=case["dtype"],
                           causal=case["causal"], **params)
    return {"impl": r.impl, "eager_time_s": r.time_s, "gpu_time_s": r.gpu_time_s, "hbm_bytes": r.hbm_bytes,
            "flops": r.flops, "kernels": len(r.kernels)}


def load(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def rows(results: dict, spec) -> list[dict]:
    """One row per timed case: measured and predicted times, DRAM bytes where ncu ran."""
    ncu = {}
    for c in (results.get("ncu") or {}).get("cases", []):
        if c["kernels"] is not None:
            key = tuple(c["case"][k] for k in ("method", "causal", "seq_len", "head_dim"))
            ncu[key] = c["kernels"]
    out = []
    for rec in results["records"]:
        if "gpu_time_s" not in rec:
            continue
        case = rec["case"]
        pred = predict(case, spec)
        key = tuple(case[k] for k in ("method", "causal", "seq_len", "head_dim"))
        ks = ncu.get(key)
        out.append({**{k: case[k] for k in ("method", "causal", "seq_len", "head_dim", "batch", "heads")},
                    "measured_eager_s": rec["eager_time_s"], "measured_gpu_s": rec["gpu_time_s"],
                    "predicted_eager_s": pred["eager_time_s"], "predicted_gpu_s": pred["gpu_time_s"],
                    "predicted_hbm_bytes": pred["hbm_bytes"], "flops": pred["flops"],
                    "predicted_kernels": pred["kernels"],
                    "measured_dram_bytes": None if ks is None else sum(k["dram_read_bytes"] + k["dram_write_bytes"]
                                                                       for k in ks),
                    "measured_kernels": None if ks is None else len(ks)})
    return out


def errors(table: list[dict], which: str = "eager") -> dict[str, dict]:
    """Per method and mask: median and max |predicted / measured - 1| of the time."""
    groups: dict[str, list[float]] = {}
    for r in table:
        label = r["method"] + (" causal" if r["causal"] else "")
        groups.setdefault(label, []).append(r[f"predicted_{which}_s"] / r[f"measured_{which}_s"] - 1)
    return {k: {"median_abs": float(np.median(np.abs(v))), "max_abs": float(np.max(np.abs(v))), "n": len(v),
                "median_signed": float(np.median(v))} for k, v in groups.items()}


def crossover(ns, t_method, t_exact) -> int | None:
    """The shortest N from which the method stays faster than exact attention on the grid (None: never)."""
    faster = [tm < te for tm, te in zip(t_method, t_exact)]
    for i in range(len(ns)):
        if all(faster[i:]):
            return int(ns[i])
    return None


def crossovers(table: list[dict], which: str = "eager") -> list[dict]:
    """Measured and predicted crossover N per (method, mask, d) against the faster of flash and cuDNN."""
    by = {}
    for r in table:
        by[(r["method"], r["causal"], r["head_dim"], r["seq_len"])] = r
    out = []
    for method in APPROX:
        for causal in (False, True):
            for d in sorted({r["head_dim"] for r in table}):
                ns = sorted(n for (m, c, dd, n) in by if (m, c, dd) == (method, causal, d)
                            and all((e, causal, d, n) in by for e in EXACT))
                if not ns:
                    continue
                res = {"method": method, "causal": causal, "head_dim": d, "seq_lens": ns}
                for src in ("measured", "predicted"):
                    key = f"{src}_{which}_s"
                    tm = [by[(method, causal, d, n)][key] for n in ns]
                    te = [min(by[(e, causal, d, n)][key] for e in EXACT) for n in ns]
                    res[src] = crossover(ns, tm, te)
                m, p = res["measured"], res["predicted"]
                res["octaves_off"] = (abs(math.log2(p / m)) if m and p else None)
                out.append(res)
    return out


def report(results: dict, spec_name: str = "h200-sxm-141gb-measured") -> dict:
    """Rows, errors (all cases, and held out: d = 128, no case of the fit grid) and crossovers."""
    from hardware_specs import load_gpu

    table = rows(results, load_gpu(spec_name))
    held = [r for r in table if r["head_dim"] != 64]
    return {"spec": spec_name, "rows": table,
            "errors": {"eager": errors(table, "eager"), "gpu": errors(table, "gpu")},
            "errors_heldout_d128": {"eager": errors(held, "eager"), "gpu": errors(held, "gpu")},
            "crossovers": crossovers(table)}


def main(argv=None) -> None:
    """python3 -m costmodel.validation.approx_compare [--results FILE] [--out FILE]: the predictions beside the measurements."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--results", default=str(RESULTS))
    ap.add_argument("--out", default=str(PREDICTED))
    args = ap.parse_args(argv)
    rep = report(load(args.results))
    Path(args.out).write_text(json.dumps(rep, indent=1))
    for label, e in rep["errors_heldout_d128"]["eager"].items():
        print(f"{label:20s} held-out (d=128) median |error|: eager {e['median_abs']:.1%}, "
              f"GPU {rep['errors_heldout_d128']['gpu'][label]['median_abs']:.1%}")
    for c in rep["crossovers"]:
        print(f"crossover {c['method']}{' causal' if c['causal'] else ''} d={c['head_dim']}: measured {c['measured']}, "
              f"predicted {c['predicted']}")
    print("wrote", args.out)


def predicted_crossovers(spec, seq_lens=(1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072),
                         head_dims=(64, 128)) -> list[dict]:
    """Crossovers on a GPU never measured: the model alone, on the bench's shapes."""
    table = []
    for n in seq_lens:
        for d in head_dims:
            b, h = max(1, 16384 // n), 2048 // d
            for method, causal in [(m, c) for m in APPROX + EXACT for c in (False, True)
                                   if not (m == "linformer" and c)]:
                case = {"method": method, "causal": causal, "seq_len": n, "head_dim": d, "batch": b, "heads": h,
                        "dtype": "bf16"}
                p = predict(case, spec)
                table.append({**case, "predicted_eager_s": p["eager_time_s"], "measured_eager_s": p["eager_time_s"]})
    return [{k: v for k, v in r.items() if k not in ("measured", "octaves_off")} for r in crossovers(table)]


if __name__ == "__main__":
    main()
