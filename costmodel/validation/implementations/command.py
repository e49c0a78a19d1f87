"""``ioaware validate --implementations``: the torch implementations' held-out check.

With ``--repredict RAW.json ...`` (one or more raw files, merged; the committed H200 runs are
``data/impls-raw.json data/impls-raw-2.json data/impls-raw-4.json data/impls-raw-5.json``) no GPU is
needed: the recorded measurements are predicted again by the current model on ``--spec`` (default: the calibrated
H200 spec) and the error table is printed and written to ``--out``. Without it the GPU runner
measures both grids first (``gpu_run``; ``--max-seconds`` bounds it) and the fit is redone.
"""

from __future__ import annotations

import json
from pathlib import Path

from costmodel.validation.implementations import heldout, records


def run(args) -> tuple[dict, str]:
    from hardware_specs import load_gpu

    raws = [Path(p) for p in args.repredict] if args.repredict else None
    raw = raws[0] if raws else None
    if raw is None:
        from costmodel.validation.implementations import calibrate, gpu_run

        out_dir = Path(args.out).parent if args.out else Path("out/impls")
        budget = args.max_seconds or 330.0
        gpu_run.main(["--out", str(out_dir), "--budget-s", str(0.75 * budget), "--ncu-budget-s", str(0.25 * budget)])
        raw = out_dir / "impls-raw.json"
        calibrate.main(["--raw", str(raw), "--out", str(out_dir / "heldout-results.json"),
                        "--spread-reps", "0,1"])
        raws = [raw]
    spec = load_gpu(args.spec or "h200-sxm-141gb-measured")
    data = records.load(raws)
    held = records.per_case([m for m in records.measurements(data) if m.case.grid == "heldout"])
    t_rows = heldout.time_rows(spec, held)
    d_rows = heldout.dram_rows(spec, [p for p in records.profiles(data, raw.parent / "ncu.csv")
                                      if p.case.grid == "heldout"])
    out = {"raw": ", ".join(str(p) for p in raws), "spec": spec.name, "time_summary": heldout.summarize(t_rows),
           "dram_summary": heldout.summarize(d_rows), "time": t_rows, "dram": d_rows}
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))
    text = "\n\n".join([heldout.table(out["time_summary"], f"held-out time ({spec.name})"),
                        heldout.table(out["dram_summary"], "held-out DRAM bytes")])
    return {k: v for k, v in out.items() if k not in ("time", "dram")}, text
