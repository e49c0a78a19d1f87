"""Subcommands of ``ioaware`` that measure on a GPU or read what was measured.

- ``calibrate``: measure the roofline's ceilings and write a calibrated spec.
- ``validate``: run the attention kernels, time them, predict them, write a results file.
- ``report``: turn a results file into one self-contained HTML page.

Handlers return ``(data, text)`` as every ``ioaware`` subcommand does. Nothing here
imports numba at registration, so ``ioaware --help`` stays fast.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from costmodel.cli.args import CommandError, positive_float, positive_int, writable_file
from costmodel.cli.text import si, table, to_jsonable


def _command_line() -> str:
    return shlex.join(["ioaware", *sys.argv[1:]])


def _log(args, bar=None):
    """Log lines on stderr (above the progress bar when one is drawn); none with --json."""
    if args.json:
        return lambda msg: None
    return bar.write if bar is not None else (lambda msg: print(msg, file=sys.stderr, flush=True))


def _progress(args, desc: str):
    """A progress bar on a terminal; silent with --json or when stdout is not a terminal."""
    from costmodel.progress import progress, show_progress

    return progress(None, desc, enabled=show_progress(args.json))


# ---------------------------------------------------------------- calibrate


_UNITS = {"hbm_bandwidth_Bps": "B/s", "l2_bandwidth_Bps": "B/s", "kernel_launch_s": "s",
          "sfu_exp_per_clk_per_sm": "exp/clk/SM"}


def _need_gpu(command: str) -> None:
    """A one-line error, not a driver traceback, where no CUDA device is visible."""
    import os

    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return
    from numba import cuda

    if not cuda.is_available():
        raise CommandError(f"no CUDA GPU is visible to numba (numba.cuda.is_available() is False): {command} "
                           "measures on a GPU; allowed here without one: --repredict (validate), report, "
                           "or NUMBA_ENABLE_CUDASIM=1 for the CUDA simulator (timings then mean nothing)")


def cmd_calibrate(args):
    from costmodel.validation.calibrate import calibrate_gpu
    from costmodel.validation.ceilings import Sizes

    _need_gpu("calibrate")
    sizes = Sizes.quick() if args.quick else Sizes()
    if args.repeats:
        sizes = Sizes(**{**sizes.__dict__, "repeats": args.repeats})
    with _progress(args, "calibrate") as bar:
        data = calibrate_gpu(base=args.base, out=args.out, raw_json=args.raw_json, sizes=sizes,
                             with_torch=not args.no_torch, command=_command_line(), log=_log(args, bar), progress=bar)
    rows = []
    for c in data["ceilings"]:
        unit = _UNITS.get(c["field"], "FLOP/s")
        rows.append((c["field"], si(c["measured"], unit), si(c["datasheet"], unit) if c["datasheet"] else "n/a",
                     "n/a" if c["ratio"] is None else f"{c['ratio']:.2f}"))
    text = (f"Calibrated {data['gpu']} against {data['base']} in {data['wall_s']:.1f} s\n"
            + table(rows, ("field", "measured", "datasheet", "measured/datasheet"))
            + "".join(f"\nnote: {n}" for n in data["notes"])
            + f"\nwrote {data['out']} (spec {data['spec']}) and {data['raw_json']}")
    return data, text


# ---------------------------------------------------------------- validate


def _families(text: str) -> tuple[str, ...]:
    from costmodel.validation.families import FAMILIES

    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in FAMILIES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"{text!r}: unknown family {', '.join(unknown) or '(none)'}; "
                                         f"allowed (comma-separated): {', '.join(FAMILIES)}")
    return names


def _load_all(paths):
    from costmodel.validation.schema import ResultsError, load_results, merge_results

    try:
        return merge_results([load_results(p) for p in paths])
    except ResultsError as exc:
        raise CommandError(str(exc)) from None


def _seq_lens(text: str) -> tuple[int, ...]:
    from costmodel.validation.sweep import SEQ_LENS

    try:
        values = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        values = ()
    if not values or any(v not in SEQ_LENS for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: allowed: comma-separated values of {', '.join(map(str, SEQ_LENS))}")
    return values


def cmd_validate(args):
    import json

    from costmodel.validation.compare import summarize, targets

    if args.implementations:
        from costmodel.validation.implementations import command

        if not args.repredict:
            _need_gpu("validate --implementations")
        return command.run(args)
    if args.repredict:  # no GPU: the recorded measurements against the current model
        from costmodel.validation.predict import repredict

        if args.out is None:
            raise CommandError("--out: required with --repredict (the recorded files are left as they are)")
        from costmodel.outputs import same_file

        clash = next((p for p in args.repredict if same_file(p, args.out)), None)
        if clash is not None:
            raise CommandError(f"--out: {args.out} is one of the recorded files given to --repredict; "
                               "a new path is accepted (the recorded files are left as they are)")
        recorded = _load_all(args.repredict)
        try:
            results = repredict(recorded, args.spec)
        except ValueError as exc:
            raise CommandError(f"--spec: {exc}") from None
    else:
        from costmodel.validation.run import run_validation

        _need_gpu("validate")
        with _progress(args, "validate") as bar:
            results = run_validation(spec_name=args.spec, quick=args.quick, families=args.families,
                                     seq_lens=args.seq_lens, max_seconds=args.max_seconds, ncu=args.ncu,
                                     repeats=args.repeats, command=_command_line(), ncu_path=args.ncu_path,
                                     ncu_families=args.ncu_families, log=_log(args, bar), progress=bar)
    if args.out is None:
        import costmodel.validation

        args.out = (Path(costmodel.validation.__file__).parent / "results"
                    / f"{Path(results.meta.spec).stem}-validation.json")
    from costmodel.outputs import write_atomic

    replaced = write_atomic(args.out, json.dumps(to_jsonable(results.model_dump(mode="json")), indent=1,
                                                 allow_nan=False), "--out")
    summary = summarize(results)
    data = {"out": str(args.out), "records": len(results.records), "skipped": results.meta.skipped,
            "summary": {k: v.model_dump() for k, v in summary.items()},
            "targets": [t.model_dump() for t in targets(summary)]}
    return data, _summary_text(summary, targets(summary)) + (
        f"\n{len(results.records)} records, {len(results.meta.skipped)} skipped; wrote {args.out}"
        + (" (replaced the file that was there)" if replaced else ""))


def _summary_text(summary, checks) -> str:
    def pct(x):
        return "n/a" if x is None else f"{100 * x:.1f}%"

    text = table(
        [(s.family, str(s.n), pct(s.median_abs_time_error), pct(s.worst_abs_time_error), str(s.n_bytes),
          pct(s.median_abs_bytes_error), pct(s.worst_abs_bytes_error), str(s.n_gpu_time),
          pct(s.median_abs_gpu_time_error), pct(s.worst_abs_gpu_time_error)) for s in summary.values()],
        ("family", "n", "median |t err|", "worst |t err|", "n ncu", "median |B err|", "worst |B err|",
         "n ncu t", "median |GPU t err|", "worst |GPU t err|"))
    verdicts = {True: "PASS", False: "FAIL"}
    lines = [f"{verdicts[c.passed]:4s}  {c.target}: {c.family} {pct(c.value)}" for c in checks if c.passed is not None]
    return text + ("\n\n" + "\n".join(lines) if lines else "")


# ---------------------------------------------------------------- report


def cmd_report(args):
    from costmodel.validation.report import write_report
    from costmodel.validation.compare import summarize, targets

    if args.gpu is not None:
        from hardware_specs import SpecError, load_gpu

        from costmodel.cli.args import error_line

        try:
            load_gpu(args.gpu)
        except SpecError as exc:
            raise CommandError(f"--gpu: {error_line(exc).removeprefix('gpu: ')}") from None
    results = _load_all(args.results)
    written = write_report(results, args.out, gpu=args.gpu, png=not args.no_png)
    summary = summarize(results)
    checks = targets(summary)
    data = {"written": [str(p) for p in written], "summary": {k: v.model_dump() for k, v in summary.items()},
            "targets": [t.model_dump() for t in checks]}
    return data, _summary_text(summary, checks) + "\nwrote " + ", ".join(data["written"])


# ---------------------------------------------------------------- registration


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="measure HBM/L2 bandwidth, FP32/exp/tensor rates and launch cost on this GPU")
    p.add_argument("--base", help="datasheet spec to calibrate (default: chosen from the GPU's name)")
    p.add_argument("--out", type=Path, help="calibrated spec YAML (default hardware_specs/calibrated/<base>-measured.yaml)")
    p.add_argument("--raw-json", type=writable_file(".json"), help="every timing sample (default: beside --out, .raw.json)")
    p.add_argument("--quick", action="store_true", help="smaller sizes (a few seconds; still 20 repeats)")
    p.add_argument("--repeats", type=positive_int, help="timed runs per measurement (default 20)")
    p.add_argument("--no-torch", action="store_true", help="skip the tensor-core matmuls even if torch is installed")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("validate", help="time attention kernels on this GPU against the simulator's predictions")
    p.add_argument("--out", type=writable_file(".json"),
                   help="results JSON (default costmodel/validation/results/<spec>-validation.json in the package)")
    p.add_argument("--spec", help="spec for the predictions (default: <base>-measured if calibrated, else the datasheet)")
    p.add_argument("--quick", action="store_true", help="a short subset (N 1024 and 4096, d 64)")
    p.add_argument("--families", type=_families, help="comma-separated families to run (default all)")
    p.add_argument("--seq-lens", type=_seq_lens, help="comma-separated N to keep (default all: 512 ... 16384)")
    p.add_argument("--max-seconds", type=positive_float, help="stop starting new configurations after this long")
    p.add_argument("--repeats", type=positive_int, default=20, help="timed runs per configuration (default 20)")
    p.add_argument("--ncu", action="store_true", help="also measure DRAM bytes with Nsight Compute")
    p.add_argument("--ncu-families", type=_families, help="profile only these families (default: all that ran)")
    p.add_argument("--ncu-path", default="ncu", help="the ncu executable (default: ncu on PATH)")
    p.add_argument("--implementations", action="store_true",
                   help="torch's attention implementations on the held-out grid (costmodel/validation/implementations); "
                        "with --repredict RAW.json no GPU is needed")
    p.add_argument("--repredict", type=Path, nargs="+", metavar="RESULTS",
                   help="no GPU: predict recorded results (merged if several) again with the current model and --spec")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("report", help="HTML report (plots, error table, targets, roofline) from a results file")
    p.add_argument("results", type=Path, nargs="+", help="results JSON written by `ioaware validate` (several: merged)")
    p.add_argument("--out", type=writable_file(".html"), required=True, help="the HTML page to write (PNGs go beside it)")
    p.add_argument("--gpu", help="spec for the roofline (default: the results' meta.spec, else its datasheet base)")
    p.add_argument("--no-png", action="store_true", help="do not try PNG export of the figures")
    p.set_defaults(func=cmd_report)
