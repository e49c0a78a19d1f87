"""Subcommands of ``ioaware`` for GPUs and the roofline: gpus, roofline.

Each handler takes the parsed arguments and returns ``(data, text)``: the JSON-able
result and the same result as a table for a person.
"""

from __future__ import annotations

import argparse
import re

from costmodel.cli.args import DEFAULT_GPU, gpu_name, positive_int, writable_file
from costmodel.cli.text import si, table


# ---------------------------------------------------------------- gpus


def cmd_gpus(args):
    from hardware_specs import list_calibrated, list_gpus, load_gpu

    from simulators.implementations.params import timing_basis

    specs = [load_gpu(n) for n in list_gpus() + list_calibrated()]
    basis = {s.name: timing_basis(s).name for s in specs}
    data = {"gpus": [
        {
            "name": s.name, "display_name": s.display_name, "sm_count": s.sm_count,
            "hbm_bytes": s.hbm_bytes, "hbm_bandwidth_Bps": s.hbm_bandwidth_Bps, "l2_bytes": s.l2_bytes,
            "smem_per_sm_bytes": s.smem_per_sm_bytes, "peak_flops_per_s": s.peak_flops_per_s,
            "calibrated": bool(s.measured), "timing_basis": basis[s.name],
        }
        for s in specs
    ]}
    rows = [
        (s.name, str(s.sm_count), si(s.hbm_bytes, "B"), si(s.hbm_bandwidth_Bps, "B/s"), si(s.l2_bytes, "B"),
         si(s.peak_flops_per_s["fp32"], "FLOP/s"), si(s.peak_flops_per_s.get("fp16_tensor"), "FLOP/s"),
         "measured" if s.measured else "datasheet", basis[s.name])
        for s in specs
    ]
    text = table(rows, ("gpu", "SMs", "HBM", "HBM BW", "L2", "FP32", "FP16 tensor", "values", "attention timing"))
    return data, text


# ---------------------------------------------------------------- roofline


_MATMUL_RE = re.compile(r"^(\d+)x(\d+)x(\d+)$")


def _matmul_shape(text: str) -> tuple[int, int, int]:
    m = _MATMUL_RE.match(text)
    if not m or min(int(g) for g in m.groups()) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a matmul shape; MxNxK with positive integers is accepted (e.g. 4096x4096x4096)")
    return tuple(int(g) for g in m.groups())


def cmd_roofline(args):
    from costmodel.plots import RooflinePoint, roofline_figure, save_figure
    from hardware_specs.roofline import elementwise_work, level_report, matmul_work, ridge_point, roofline_time
    from hardware_specs import MEMORY_LEVELS

    spec = args.gpu
    resources = {}
    for level in MEMORY_LEVELS:
        if spec.bandwidth_Bps(level) is not None:
            resources[level] = {"peak_Bps": spec.bandwidth_Bps(level), "attainable_Bps": spec.attainable_rate(level)}
    for unit, rate in spec.peak_flops_per_s.items():
        resources[unit] = {
            "peak_flops_per_s": rate, "attainable_flops_per_s": spec.attainable_rate(unit),
            "ridge_flop_per_B": {lv: ridge_point(spec, unit, lv) for lv in resources if lv in MEMORY_LEVELS},
        }
    if spec.sfu_exp_per_s:
        resources["sfu_exp"] = {"peak_exp_per_s": spec.sfu_exp_per_s}

    works = {}
    for m, n, k in args.matmul or []:
        works[f"matmul {m}x{n}x{k} {args.dtype}"] = matmul_work(m, n, k, args.dtype, tensor_cores=not args.simt)
    for n in args.elementwise or []:
        works[f"elementwise {n} {args.dtype}"] = elementwise_work(n, dtype=args.dtype)
    placed = []
    for name, w in works.items():
        t = roofline_time(spec, w)
        placed.append({
            "name": name, "flops": float(w.flops), "hbm_bytes": float(w.hbm_bytes), "time_s": t.time_s,
            "bound": t.bound, "levels": level_report(spec, w),
        })
    data = {"gpu": spec.name, "resources": resources, "work": placed}
    if args.plot:
        points = [RooflinePoint(p["name"], p["flops"], p["hbm_bytes"], p["time_s"], p["bound"]) for p in placed]
        replaced = args.plot.exists()
        written = save_figure(roofline_figure(spec, points), args.plot, option="--plot")
        data["plot"] = [str(p) for p in written]

    rows = [(lv, si(r["peak_Bps"], "B/s"), "", "") for lv, r in resources.items() if lv in MEMORY_LEVELS]
    rows += [
        (u, "", si(r["peak_flops_per_s"], "FLOP/s"), f"{r['ridge_flop_per_B']['hbm']:.3g}")
        for u, r in resources.items() if "peak_flops_per_s" in r
    ]
    text = f"Roofline of {spec.display_name}\n" + table(rows, ("resource", "bandwidth", "compute", "ridge vs HBM (FLOP/B)"))
    if placed:
        text += "\n\n" + table(
            [(p["name"], f"{p['flops'] / p['hbm_bytes']:.3g}", si(p["time_s"], "s"), p["bound"]) for p in placed],
            ("work", "FLOP/B", "time", "bound"),
        )
    if args.plot:
        text += "\nwrote " + ", ".join(data["plot"]) + (" (replaced the file that was there)" if replaced else "")
    return data, text


# ---------------------------------------------------------------- registration


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gpus", help="list the bundled GPU specs")
    p.set_defaults(func=cmd_gpus)

    p = sub.add_parser("roofline", help="ceilings, ridge points and placed work for a GPU")
    p.add_argument("--gpu", type=gpu_name, default=DEFAULT_GPU, help=f"GPU name or spec file (default {DEFAULT_GPU})")
    p.add_argument("--matmul", type=_matmul_shape, action="append", metavar="MxNxK", help="place a matmul (repeatable)")
    p.add_argument("--elementwise", type=positive_int, action="append", metavar="N", help="place an elementwise op on N elements")
    p.add_argument("--dtype", choices=("fp32", "fp16", "bf16", "fp8"), default="fp16")
    p.add_argument("--simt", action="store_true", help="matmuls on the SIMT lanes, not tensor cores")
    p.add_argument("--plot", type=writable_file(".html", ".png"), metavar="FILE.html|FILE.png", help="write the roofline figure")
    p.set_defaults(func=cmd_roofline)


__all__ = ["register"]
