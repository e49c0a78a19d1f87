"""GPU runner of the eager-attention op grids (``attn_ops_grids``): CUDA-graph replays, results saved after
every section.

    python3 -m costmodel.validation.attn_ops_run --out DIR [--budget-s 170] [--smoke]
        [--sections repeat,bmm,softmax,masked_fill,softmax_rows,bmm_pitch,softmax_causal,softmax_fill_value] [--file attn_ops_h200.json] [--probe]

Writes DIR/FILE (default attn_ops_h200.json): {"meta", "families" (repeat and masked_fill rows,
step_fit.fit_families's format), "bmm", "softmax", "skipped"}. ``--probe``: no timing, each softmax row
length and masked_fill dtype once, for Nsight Compute (kernel names, registers, block sizes).
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from costmodel.validation import attn_ops_grids as grids
from costmodel.validation.step_timing import Run, _reps

DT = {"bf16": torch.bfloat16, "fp32": torch.float32}


def run_repeat(r: Run):
    for row in grids.repeat_grid():
        if r.left() < r.budget_s * 0.7:
            r.data["skipped"].append(f"repeat from {row}"); break
        B, hkv, L, d, g = row["B"], row["Hkv"], row["L"], row["d"], row["g"]
        if r.smoke:
            L = min(L, 64)
        k = torch.randn(B, hkv, L, d, device=r.dev, dtype=DT[row["dtype"]])
        t = r.graph_time(lambda i: k.repeat_interleave(g, dim=1), _reps(row["bytes"] / 5e11 + 3e-6, 0.004, 3, 200))
        r.data["families"].append({**row, "time_s": t})
        k = None
    r.save()


def run_bmm(r: Run, grid=None):
    for row in grid or grids.bmm_grid():
        if r.left() < r.budget_s * 0.3:
            r.data["skipped"].append(f"bmm from {row}"); break
        bh, m, n, k = row["batch"], row["m"], row["n"], row["k"]
        if r.smoke:
            bh, m, n, k = 2, min(m, 64), min(n, 64), min(k, 64)
        a = torch.randn(bh, m, k, device=r.dev, dtype=torch.bfloat16)
        b = torch.randn(bh, n, k, device=r.dev, dtype=torch.bfloat16).transpose(-2, -1) if row["op"] == "qk" \
            else torch.randn(bh, k, n, device=r.dev, dtype=torch.bfloat16)
        est = max(2 * bh * m * n * k / 6e14, 2 * bh * m * n / 1.5e12, 5e-6)
        t = r.graph_time(lambda i: torch.matmul(a, b), _reps(est, 0.004, 2, 100))
        r.data["bmm"].append({**row, "dtype": "bf16", "time_s": t})
        a = b = None
    r.save()


def run_bmm_pitch(r: Run):
    run_bmm(r, grids.bmm_pitch_grid())


def _softmax_rows(r: Run, grid, label: str):
    for row in grid:
        if r.left() < r.budget_s * 0.05:
            r.data["skipped"].append(f"{label} from {row}"); break
        rows, L = row["rows"], row["L"]
        if r.smoke:
            rows, L = min(rows, 128), min(L, 256)
        e = grids.REPEAT_DTYPES[row["dtype"]]
        s = torch.randn(rows, L, device=r.dev, dtype=DT[row["dtype"]])
        t = r.graph_time(lambda i: torch.softmax(s, -1), _reps(2 * rows * L * e / 2e12 + 3e-6, 0.004, 2, 100))
        r.data["softmax"].append({**row, "bytes": 2 * rows * L * e, "time_s": t})
        s = None
    r.save()


def run_softmax(r: Run):
    _softmax_rows(r, grids.softmax_grid(), "softmax")


def _out_of_budget(r: Run, share: float, label: str, row: dict) -> bool:
    """True (the row and those after it skipped, recorded) once less than ``share`` of the budget is left."""
    if r.left() < r.budget_s * share:
        r.data["skipped"].append(f"{label} from {row}")
        return True
    return False


def _causal_scores(r: Run, bh: int, n: int, dtype: str, smoke_n: int):
    """(B*H, N, N) random scores and the (N, N) causal mask (True above the diagonal): smaller on the CPU."""
    if r.smoke:
        bh, n = 2, min(n, smoke_n)
    s = torch.randn(bh, n, n, device=r.dev, dtype=DT[dtype])
    return s, torch.ones(n, n, dtype=torch.bool, device=r.dev).triu(1)


def run_masked_fill(r: Run):
    for row in grids.masked_fill_grid():
        if _out_of_budget(r, 0.3, "masked_fill", row):
            break
        s, m = _causal_scores(r, row["batch"], row["N"], row["dtype"], 64)
        t = r.graph_time(lambda i: s.masked_fill_(m, float("-inf")), _reps(row["bytes"] / 1e12 + 3e-6, 0.004, 3, 200))
        r.data["families"].append({**row, "time_s": t})
        s = m = None
    r.save()


def run_softmax_rows(r: Run):
    _softmax_rows(r, grids.softmax_rows_grid(), "softmax_rows")


def run_softmax_causal(r: Run):
    """Each row's softmax on causally masked scores between two timings of the same rows unmasked, and
    the out-of-place masked_fill the eager path runs (clone + masked_fill_)."""
    for row in grids.softmax_causal_grid():
        if _out_of_budget(r, 0.05, "softmax_causal", row):
            break
        s, m = _causal_scores(r, row["batch"], row["L"], row["dtype"], 256)
        bh, n, e = s.shape[0], s.shape[-1], grids.REPEAT_DTYPES[row["dtype"]]
        sc = s.masked_fill(m, float("-inf"))
        reps = _reps(2 * bh * n * n * e / 2e12 + 3e-6, 0.004, 2, 100)
        plain = [r.graph_time(lambda i: torch.softmax(s, -1), reps)]
        causal = r.graph_time(lambda i: torch.softmax(sc, -1), reps)
        plain.append(r.graph_time(lambda i: torch.softmax(s, -1), reps))
        oop = r.graph_time(lambda i: s.masked_fill(m, float("-inf")), reps)
        r.data["softmax_causal"].append({**row, "rows": bh * n, "L": n, "bytes": 2 * bh * n * n * e,
                                         "time_s": causal, "plain_time_s": plain, "masked_fill_out_of_place_s": oop})
        s = sc = m = None
    r.save()


def run_softmax_fill_value(r: Run):
    """Which masked value costs: the softmax of the same rows masked with -inf, with the dtype's most
    negative finite value (what Hugging Face's eager attention masks with) and with -1e4, beside unmasked;
    and the scores' clone alone (the out-of-place masked_fill's copy)."""
    for row in grids.softmax_fill_value_grid():
        if _out_of_budget(r, 0.05, "softmax_fill_value", row):
            break
        s, m = _causal_scores(r, row["batch"], row["L"], row["dtype"], 256)
        e = grids.REPEAT_DTYPES[row["dtype"]]
        reps = _reps(2 * s.numel() * e / 2e12 + 3e-6, 0.004, 2, 100)
        out = {"plain": r.graph_time(lambda i: torch.softmax(s, -1), reps)}
        for name, value in (("-inf", float("-inf")), ("finfo.min", torch.finfo(s.dtype).min), ("-1e4", -1e4)):
            sv = s.masked_fill(m, value)
            out[name] = r.graph_time(lambda i: torch.softmax(sv, -1), reps)
            sv = None
        out["clone"] = r.graph_time(lambda i: s.clone(), reps)
        r.data["softmax_fill_value"].append({**row, "rows": s.shape[0] * s.shape[1], "bytes": 2 * s.numel() * e,
                                             "time_s": out})
        s = m = None
    r.save()


def probe(dev: str) -> None:
    """One call each (no graphs) of the softmax row lengths and masked_fill dtypes, for Nsight Compute."""
    for dt in DT:
        for L in sorted({row["L"] for row in grids.softmax_grid()} | set(grids.SOFTMAX_L)):
            torch.softmax(torch.randn(4096, L, device=dev, dtype=DT[dt]), -1)
        s = torch.randn(24, 1024, 1024, device=dev, dtype=DT[dt])
        s.masked_fill_(torch.ones(1024, 1024, dtype=torch.bool, device=dev).triu(1), float("-inf"))
    if dev == "cuda":
        torch.cuda.synchronize()


SECTIONS = {"repeat": run_repeat, "bmm": run_bmm, "softmax": run_softmax, "masked_fill": run_masked_fill,
            "softmax_rows": run_softmax_rows, "bmm_pitch": run_bmm_pitch, "softmax_causal": run_softmax_causal,
            "softmax_fill_value": run_softmax_fill_value}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m costmodel.validation.attn_ops_run")
    p.add_argument("--out", required=True)
    p.add_argument("--budget-s", type=float, default=170.0)
    p.add_argument("--smoke", action="store_true", help="toy sizes on the CPU")
    p.add_argument("--sections", default="repeat,bmm,softmax", help=",".join(SECTIONS))
    p.add_argument("--file", default="attn_ops_h200.json")
    p.add_argument("--probe", action="store_true", help="one call of each op, untimed (run it under ncu)")
    args = p.parse_args(argv)
    if args.probe:
        probe("cpu" if args.smoke else "cuda")
        return 0
    os.makedirs(args.out, exist_ok=True)
    r = Run(args.out, args.budget_s, args.smoke).start("costmodel.validation.attn_ops_run", args.file,
                                                       {"families": [], "bmm": [], "softmax": [], "softmax_causal": [], "softmax_fill_value": [],
                                                        "skipped": []})
    torch.manual_seed(0)
    for fn in (SECTIONS[x] for x in args.sections.split(",")):
        fn(r)
        print(f"{fn.__name__} done at {r.budget_s - r.left():.1f} s", flush=True)
    r.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
