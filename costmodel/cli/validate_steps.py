"""``ioaware validate-steps``: the committed H200 whole-step runs re-predicted, no GPU needed.

Measuring needs the GPU: ``python3 -m costmodel.validation.step_run --out DIR`` (its docstring says
what it runs); pass the file it writes with ``--results`` to compare it instead of the committed ones.
"""

from __future__ import annotations

import argparse

from costmodel.cli.args import gpu_name


def register(sub) -> None:
    p = sub.add_parser("validate-steps", help="whole-step predictions against the measured H200 runs (no GPU)",
                       description="Re-predict the committed prefill / decode / training runs and print the errors.")
    p.add_argument("--results", nargs="*", metavar="FILE", help="results files of step_run (default: the committed ones)")
    p.add_argument("--gpu", type=gpu_name, default="h200-sxm-141gb-measured", help="spec to predict with")
    p.add_argument("--markdown", action="store_true", help="the table as Markdown")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> tuple[dict, str]:
    import json

    from costmodel.validation.step_compare import compare, markdown, summary, text_table
    from costmodel.validation.step_results import load_results, load_results_run2

    try:
        runs = [load_results(f) for f in args.results] if args.results else [load_results(), load_results_run2()]
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"--results: {exc}") from None
    rows = [row for r in runs for row in compare(r, args.gpu)]
    s = summary(rows)
    table = markdown(rows) if args.markdown else text_table(rows)
    return {"rows": rows, "summary": s}, table + "\n\n" + json.dumps(s, indent=1)
