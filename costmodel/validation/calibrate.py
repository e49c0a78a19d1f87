"""``ioaware calibrate``: measure every ceiling and write a calibrated spec beside its raw samples.

The measurements are ``costmodel.validation.ceilings``'; this module runs them, turns
them into an overlay of the datasheet spec (``hardware_specs.calibrate``), and writes it
to ``hardware_specs/calibrated/<base>-measured.yaml`` where ``load_gpu`` finds it by name.
"""
from __future__ import annotations

import datetime as _dt
import json
import re
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

from costmodel.validation.ceilings import (Ceiling, Sizes, measure_exp, measure_fp32, measure_hbm, measure_l2,
                                           measure_launch, measure_tensor, measure_tiled_fp32)
from costmodel.progress import NO_PROGRESS
from costmodel.validation.device import default_base, device_info


def run_calibration(base_spec, sizes: Sizes = Sizes(), with_torch: bool = True, info: dict | None = None,
                    log=lambda msg: None, progress=NO_PROGRESS) -> tuple[list[Ceiling], dict, list[str]]:
    """Measure every ceiling; returns (ceilings, device info, notes)."""
    info = info or device_info()
    sms = info.get("sm_count") or base_spec.sm_count
    ceilings = []
    log(f"calibrating on {info['gpu']} ({sms} SMs) against {base_spec.name}")
    progress.start(6 + with_torch)
    for name, measure in (("HBM", lambda: measure_hbm(sizes, sms)),
                          ("L2", lambda: measure_l2(sizes, sms, base_spec.l2_bytes)),
                          ("FP32", lambda: measure_fp32(sizes, sms)),
                          ("exp", lambda: measure_exp(sizes, sms, base_spec.boost_clock_Hz, base_spec.sm_count)),
                          ("tiled FP32 matmul", lambda: measure_tiled_fp32(sizes))):
        ceilings.append(measure())
        progress.update(item=name)
    notes = []
    if with_torch:
        tensor, notes = measure_tensor(sizes)
        ceilings += tensor
        progress.update(item="tensor cores")
    else:
        notes.append("tensor-core rates not measured (--no-torch): datasheet values kept")
    ceilings.append(measure_launch(sizes))
    progress.update(item="launch")
    for c in ceilings:
        log(f"  {c.field:28s} {c.value:.4g}")
    return ceilings, info, notes


# Rates that describe our code rather than the GPU: kept in the spec's calibration block.
CODE_RATES = ("numba_tiled_fp32_flops_per_s",)


def calibrated_spec(base_spec, ceilings: list[Ceiling], date: _dt.date, info: dict, name: str):
    """``hardware_specs.calibrate`` with the measured ceilings, tolerating fields the base lacks."""
    from hardware_specs import calibrate

    measurements = {c.field: c.value for c in ceilings if c.field not in CODE_RATES}
    methods = {c.field: c.method for c in ceilings if c.field not in CODE_RATES}
    info = {**info, **{c.field: {"value": c.value, "method": c.method, **c.extra}
                       for c in ceilings if c.field in CODE_RATES}}
    # calibrate() replaces values the base has; a field the base leaves empty (an L2
    # bandwidth no datasheet gives) is first given a placeholder, and the datasheet value
    # recorded beside the measurement is then set back to None.
    missing = [k for k in measurements if "." not in k and getattr(base_spec, k) is None]
    if missing:
        base_spec = base_spec.model_copy(update={
            **{k: measurements[k] for k in missing},
            "sources": {**base_spec.sources, **{k: "placeholder" for k in missing}},
        })
    spec = calibrate(base_spec, measurements, methods, date, info=info, name=name)
    if missing:
        measured = {k: (m.model_copy(update={"value_datasheet": None}) if k in missing else m)
                    for k, m in spec.measured.items()}
        spec = spec.model_copy(update={"measured": measured})
    return spec


def default_out(base: str) -> Path:
    """hardware_specs/calibrated/<base>-measured.yaml, in the package (so load_gpu finds it by name)."""
    import hardware_specs

    return Path(hardware_specs.__file__).parent / "calibrated" / f"{base}-measured.yaml"


def calibrate_gpu(base: str | None = None, out: str | Path | None = None, raw_json: str | Path | None = None,
                  sizes: Sizes = Sizes(), with_torch: bool = True, command: str | None = None,
                  log=lambda msg: None, progress=NO_PROGRESS) -> dict:
    """Measure, write the calibrated spec (YAML) and the raw samples (JSON); return a summary."""
    from hardware_specs import load_gpu, spec_to_yaml

    t0 = time.perf_counter()
    info = device_info()
    base = base or default_base(info["gpu"])
    base_spec = load_gpu(base)
    ceilings, info, notes = run_calibration(base_spec, sizes, with_torch, info, log, progress)
    out = Path(out) if out else default_out(base_spec.name)
    raw_json = Path(raw_json) if raw_json else out.with_suffix(".raw.json")
    date = _dt.date.today()
    calibration_info = {
        "gpu": info["gpu"], "driver": info.get("driver"), "cuda_runtime": info.get("cuda_runtime"),
        "numba": info["numba"], "numba_cuda": info["numba_cuda"], "numpy": info["numpy"], "torch": info["torch"],
        "command": command or shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "sizes": asdict(sizes), "notes": notes,
    }
    name = re.sub(r"[^a-z0-9.\-]+", "-", out.stem.lower()).strip("-.") if out.suffix == ".yaml" else ""
    spec = calibrated_spec(base_spec, ceilings, date, calibration_info, name or f"{base_spec.name}-measured")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(spec_to_yaml(spec))
    raw = {
        "meta": {"date": str(date), "base": base_spec.name, **info, "command": calibration_info["command"],
                 "sizes": asdict(sizes), "notes": notes, "wall_s": time.perf_counter() - t0},
        "ceilings": [asdict(c) for c in ceilings],
    }
    raw_json.parent.mkdir(parents=True, exist_ok=True)
    raw_json.write_text(json.dumps(raw, indent=1))
    rows = []
    for c in ceilings:
        key = c.field
        datasheet = None if key in CODE_RATES else (base_spec.peak_flops_per_s.get(key.split(".", 1)[1]) if key.startswith("peak_flops_per_s.")
                     else getattr(base_spec, key))
        rows.append({"field": key, "measured": c.value, "datasheet": datasheet,
                     "ratio": None if not datasheet else c.value / datasheet, "method": c.method})
    return {"spec": spec.name, "base": base_spec.name, "out": str(out), "raw_json": str(raw_json),
            "gpu": info["gpu"], "ceilings": rows, "notes": notes, "wall_s": time.perf_counter() - t0}
