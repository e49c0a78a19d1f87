"""Fit the H200's ``gemm:`` and ``memory_ops:`` sections from the committed op grids and write them
into the calibrated spec.

    python3 -m costmodel.validation.step_calibrate [--write]

Inputs: ``results/h200/step_run1.json`` (GEMM lattice and held-out projections, memory ops, SDPA) and
``results/h200/step_run2.json`` (kernel families, per-op host costs, unaligned GEMMs), both
measured by ``costmodel.validation.step_run`` (commands and versions in their ``meta``). The model
runs in those files are not read here. ``results/h200/attn_ops/attn_ops_h200.json`` (``attn_ops_run``:
repeat_interleave families and the strided-batched score / PV GEMMs of eager attention) adds the
``repeat_bf16`` / ``repeat_fp32`` families and the batched-GEMM terms; its later runs (``_2`` .. ``_4``) the
block softmax, masked_fill_, the unaligned score GEMMs and the softmax of causally masked rows. ``results/h200/step_calib_run.json`` (synthetic decoders, no
validated preset; ``step_calib_run``) gives the whole-step launch terms (``step_calib_fit``). ``--write`` replaces the two sections of
``hardware_specs/calibrated/h200-sxm-141gb-measured.yaml``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import yaml

from costmodel.validation.step_results import load_results, load_results_run2
from costmodel.validation.step_calib_fit import fit_step_launch
from costmodel.validation.step_calib_fit import load as load_calib
from costmodel.validation.step_fit import family_errors, fit_attention, fit_gemm, fit_memory_ops, fit_unaligned
from costmodel.validation.step_fit_batched import fit_batched

SPEC_FILE = Path(__file__).resolve().parents[2] / "hardware_specs" / "calibrated" / "h200-sxm-141gb-measured.yaml"
ATTN_OPS = Path(__file__).resolve().parent / "results" / "h200" / "attn_ops" / "attn_ops_h200.json"
# the second op run (2026-12-02 05:59 UTC, impls11c): masked_fill_ by dtype, more softmax row lengths
ATTN_OPS_2 = ATTN_OPS.with_name("attn_ops_h200_2.json")
# the score GEMMs whose rows are not whole 32-byte sectors (2026-12-02 16:48 UTC, attn_ops_run --sections bmm_pitch)
ATTN_OPS_3 = ATTN_OPS.with_name("attn_ops_h200_3.json")
# softmax on causally masked scores beside the same rows unmasked (2026-12-03 11:44 UTC, --sections softmax_causal)
ATTN_OPS_4 = ATTN_OPS.with_name("attn_ops_h200_4.json")


def load_attn_ops(path: Path = ATTN_OPS, *more: Path) -> dict:
    """The op runs merged: families, bmm and softmax rows concatenated, ``meta`` the first run's with every
    run's under ``runs``; by default both committed runs."""
    import json

    paths = [path, *more] if more or path != ATTN_OPS else [ATTN_OPS, ATTN_OPS_2, ATTN_OPS_3, ATTN_OPS_4]
    files = [json.loads(p.read_text()) for p in paths if p.is_file()]
    out = {**files[0], "meta": {**files[0]["meta"], "runs": [f["meta"] for f in files]}}
    for key in ("families", "bmm", "softmax", "softmax_causal"):
        out[key] = [r for f in files for r in f.get(key, [])]
    return out


from costmodel.validation.step_fit_softmax import fit_softmax_block, fit_softmax_masked  # noqa: E402


def fitted_sections(run1: dict, run2: dict, base="h200-sxm-141gb-measured", calib: dict | None = None,
                    attn: dict | None = None):
    """(spec with both sections, gemm model, memory-ops model); ``calib``: the step calibration run;
    ``attn``: the eager-attention op run (its families and batched GEMMs)."""
    from hardware_specs import load_gpu

    spec = load_gpu(base) if isinstance(base, str) else base
    spec = spec.model_copy(update={"gemm": None, "memory_ops": None})
    date = dt.date.fromisoformat(run2["meta"]["date"][:10])
    gpu = run1["meta"].get("gpu", "unknown")
    host = {**run2.get("host", {}), "graph_gap": run2.get("graph_gap")}  # graph_gap: none measured yet
    family_rows = list(run2.get("families", [])) + list((attn or {}).get("families", []))
    mem = fit_memory_ops(run1["memory_ops"], run2["launch"], date, gpu, host, family_rows=family_rows)
    spec = spec.model_copy(update={"memory_ops": mem})
    errs = family_errors(spec, family_rows)
    fams = {k: v.model_copy(update={"heldout_median_abs_err": errs[k][0], "heldout_max_abs_err": errs[k][1]})
            for k, v in mem.families.items() if k in errs}
    mem = mem.model_copy(update={"families": fams})
    if attn is not None:  # torch's register block softmax, from the op runs' softmax rows
        mem = mem.model_copy(update={"softmax_block": fit_softmax_block(spec, attn.get("softmax", []), date, gpu),
                                     "softmax_masked": fit_softmax_masked(attn.get("softmax_causal", []), gpu=gpu)})
    spec = spec.model_copy(update={"memory_ops": mem})
    gemm = fit_gemm(spec, run1["gemm"], date, gpu)
    gemm = fit_unaligned(spec, run2["gemm"], gemm)
    gemm = fit_attention(spec, run1["sdpa"], gemm, mem)
    if attn is not None:
        gemm = fit_batched(spec, attn["bmm"], gemm)
    spec = spec.model_copy(update={"gemm": gemm})
    if calib is not None:  # whole-step launch terms, from the synthetic decoders of the calibration run
        f = fit_step_launch(calib, spec)
        launch = mem.launch.model_copy(update={k: f[k] for k in ("graph_per_kernel_s", "host_per_block_s",
                                                                 "host_per_kernel_autograd_s")} | {"step_fit": f["fit"]})
        mem = mem.model_copy(update={"launch": launch})
        spec = spec.model_copy(update={"memory_ops": mem})
    return spec, gemm, mem


def write_sections(gemm, mem, path: Path = SPEC_FILE) -> None:
    raw = yaml.safe_load(path.read_text())
    raw["gemm"] = gemm.model_dump(mode="json")
    raw["memory_ops"] = mem.model_dump(mode="json")
    path.write_text(yaml.safe_dump(raw, sort_keys=False, width=120))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m costmodel.validation.step_calibrate")
    p.add_argument("--write", action="store_true")
    args = p.parse_args(argv)
    spec, gemm, mem = fitted_sections(load_results(), load_results_run2(), calib=load_calib(), attn=load_attn_ops())
    print(yaml.safe_dump({"gemm": gemm.model_dump(mode="json"), "memory_ops": mem.model_dump(mode="json")},
                         sort_keys=False, width=120))
    if args.write:
        write_sections(gemm, mem)
    return 0


if __name__ == "__main__":
    sys.exit(main())
