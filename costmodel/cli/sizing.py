"""``ioaware sizing``: the what-if report for a few models on one GPU.

For each bundled model: what the weights and the KV cache take, how large a batch fits,
and the lower bounds of a decode step and of a prefill (``costmodel.inference``), with the
seed lecture's two worked examples on the same roofline plot. This module only chooses
what to ask for and lays it out.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from costmodel.cli.args import DEFAULT_GPU, CommandError, fraction, gpu_name, model_name, positive_int, writable_folder
from costmodel.cli.calculators import checked_matmul_unit, context_len
from costmodel.cli.text import si, table

SIZING_MODELS = ("gpt2-medium", "llama2-7b", "mistral-7b", "codellama-34b", "llama2-70b")
PREFILL_LENS = (128, 1024, 4096)
SIZING_DTYPE = "fp16"  # weights and KV cache in the sizing report


def _per_byte(intensity: float) -> str:
    return f"{intensity:.3g}" if intensity < 1000 else f"{intensity:,.0f}"



def _lecture_examples():
    """The seed lecture's two worked examples (see hardware_specs.roofline's docstrings)."""
    from hardware_specs.roofline import elementwise_work, matmul_work

    return {
        "lecture: 100x100 fp32 matmul": matmul_work(100, 100, 100, "fp32", tensor_cores=False, count_output=False),
        "lecture: scale a 100x100 fp32 matrix": elementwise_work(10_000, writes_per_element=0),
    }


def _placed(spec, name: str, work, **extra) -> dict:
    from hardware_specs.roofline import roofline_time

    t = roofline_time(spec, work)
    flops, hbm_bytes = float(work.flops), float(work.hbm_bytes)
    return {"name": name, **extra, "flops": flops, "hbm_bytes": hbm_bytes, "intensity_flop_per_B": flops / hbm_bytes,
            "time_s": float(t.time_s), "bound": str(t.bound)}



def _row(name: str, bound, **extra) -> dict:
    """A decode or prefill bound (``costmodel.inference.StepBound``) as a row of the report."""
    return {"name": name, **extra, "flops": float(bound.flops), "hbm_bytes": float(bound.hbm_bytes),
            "intensity_flop_per_B": float(bound.flops) / float(bound.hbm_bytes), "time_s": float(bound.time_s),
            "bound": str(bound.bound)}


def _size_model(cfg, spec, context: int, batch: int, prefill_lens, reserve_fraction: float) -> dict:
    """One model's row of the report: memory, FLOPs, and the decode and prefill bounds."""
    from costmodel.flops import forward_flops_per_token
    from costmodel.inference import decode_step_bound, prefill_bound
    from costmodel.kvcache import kv_cache_bytes, kv_cache_bytes_per_token, max_batch_that_fits
    from costmodel.params import count_params
    from costmodel.step import predict_step

    dtype = SIZING_DTYPE
    unit = checked_matmul_unit(spec, dtype)
    fit = max_batch_that_fits(cfg, spec.hbm_bytes, context, dtype, dtype, reserve_fraction=reserve_fraction)
    step = decode_step_bound(spec, cfg, seq_len=context, batch=batch, weight_dtype=dtype, matmul_unit=unit)
    decode = _row(f"{cfg.name} decode, batch {batch} @ {context}", step)
    decode["tokens_per_s"] = float(step.tokens_per_s)
    # beside each bound, the whole-step prediction of plain PyTorch (costmodel.step: decode as a CUDA graph)
    decode["predicted_s"] = float(predict_step(cfg, spec, "decode", batch=batch, seq_len=context, dtype=dtype).time_s)
    prefill = [_row(f"{cfg.name} prefill {n} tokens, batch {batch}",
                    prefill_bound(spec, cfg, seq_len=n, batch=batch, weight_dtype=dtype, matmul_unit=unit), seq_len=n,
                    predicted_s=float(predict_step(cfg, spec, "prefill", batch=batch, seq_len=n, dtype=dtype).time_s))
               for n in prefill_lens if n <= cfg.max_seq_len]
    return {
        "model": cfg.name, "context_len": context, "model_context_len": cfg.max_seq_len,
        "params": count_params(cfg).total, "weights_bytes": fit.weights_bytes,
        "kv_bytes_per_token": kv_cache_bytes_per_token(cfg, dtype),
        "kv_bytes": kv_cache_bytes(cfg, batch, context, dtype).total_bytes, "weights_fit": fit.free_bytes >= 0,
        "max_batch": fit.max_batch, "forward_flops_per_token": forward_flops_per_token(cfg, context).total,
        "decode": decode, "prefill": prefill,
    }


def cmd_sizing(args):
    from costmodel.models import load_model
    from costmodel.plots import RooflinePoint, roofline_figure, save_figure
    from hardware_specs.roofline import ridge_point

    spec, out = args.gpu, args.out
    if out.exists() and not out.is_dir():
        raise CommandError(f"--out: {out} exists and is not a folder; a folder path is accepted")
    models = args.model or [load_model(n) for n in SIZING_MODELS]
    unit = checked_matmul_unit(spec, SIZING_DTYPE)
    sized = [_size_model(cfg, spec, context_len(args, cfg), args.batch, args.prefill_len or PREFILL_LENS,
                         args.reserve_fraction) for cfg in models]
    lecture = [_placed(spec, name, w) for name, w in _lecture_examples().items()]

    # Named on the plot: the lecture's two examples and each model's decode step; prefills on hover.
    points = [RooflinePoint(p["name"], p["flops"], p["hbm_bytes"], p["time_s"], p["bound"], group="seed lecture",
                            label=p["name"].removeprefix("lecture: ")) for p in lecture]
    for m in sized:
        d = m["decode"]
        points.append(RooflinePoint(d["name"], d["flops"], d["hbm_bytes"], d["time_s"], d["bound"], group="decode step",
                                    label=f"{m['model']} decode"))
        points += [RooflinePoint(p["name"], p["flops"], p["hbm_bytes"], p["time_s"], p["bound"], group="prefill")
                   for p in m["prefill"]]
    top = max(p.intensity for p in points)
    fig = roofline_figure(spec, points, intensity_range=(1e-2, max(1e4, 3 * top)),
                          title=f"Sizing on {spec.display_name}: decode steps, prefills and the seed lecture's examples")

    # Everything is computed; only now touch the out folder, through a rename so a reader
    # never sees a half-written file.
    path = out / f"sizing-roofline-{spec.name}.html"
    replaced = path.exists()
    save_figure(fig, path, png=False)  # written whole or not at all (costmodel.outputs)

    ridge = ridge_point(spec, unit, "hbm")
    data = {
        "gpu": spec.name, "gpu_memory_bytes": spec.hbm_bytes, "hbm_bandwidth_Bps": spec.attainable_rate("hbm"),
        "matmul_unit": unit, "peak_flops_per_s": spec.attainable_rate(unit), "ridge_flop_per_B": ridge,
        "weight_dtype": SIZING_DTYPE, "kv_dtype": SIZING_DTYPE, "batch": args.batch,
        "reserve_fraction": args.reserve_fraction, "models": sized, "lecture_examples": lecture,
        "files": [str(path)],
    }
    return data, _sizing_text(spec, unit, ridge, args, sized, lecture, path, replaced)


def _sizing_text(spec, unit, ridge, args, sized, lecture, path, replaced: bool = False) -> str:
    b = args.batch
    head = (f"What-if sizing on {spec.display_name}: {si(spec.hbm_bytes, 'B')} HBM at "
            f"{si(spec.attainable_rate('hbm'), 'B/s')}, {unit} {si(spec.attainable_rate(unit), 'FLOP/s')} "
            f"(ridge {ridge:.3g} FLOP/B)\n{SIZING_DTYPE} weights and KV cache; each model at "
            + (f"{args.seq_len} tokens" if args.seq_len else "its own context")
            + f"; batch {b} for KV and decode; '>=' times are roofline lower bounds, 'predicted' the step of "
              "plain PyTorch (ioaware predict)")
    rows = []
    for m in sized:
        d = m["decode"]
        batch = str(m["max_batch"]) if m["weights_fit"] else "no: weights"
        rows.append((
            m["model"], str(m["context_len"]), si(m["params"], ""), si(m["weights_bytes"], "B"),
            si(m["kv_bytes_per_token"], "B"), si(m["kv_bytes"], "B"), batch,
            si(m["forward_flops_per_token"], "FLOP"), si(d["time_s"], "s"), si(d["predicted_s"], "s"),
            _per_byte(d["intensity_flop_per_B"]), d["bound"],
        ))
    main = table(rows, ("model", "context", "params", "weights", "KV/token", f"KV @ctx x{b}", "max batch @ctx",
                        "fwd FLOP/token", "decode step >=", "predicted", "decode FLOP/B", "bound"))
    lens = args.prefill_len or PREFILL_LENS
    pre_rows = []
    for m in sized:
        by_len = {p["seq_len"]: p for p in m["prefill"]}
        pre_rows.append((m["model"], *(
            f"{si(by_len[n]['predicted_s'], 's')} (>= {si(by_len[n]['time_s'], 's')} "
            f"{_per_byte(by_len[n]['intensity_flop_per_B'])} FLOP/B {by_len[n]['bound']})"
            if n in by_len else "beyond context" for n in lens)))
    prefill = table(pre_rows, ("prefill, batch " + str(b), *(f"{n} tokens" for n in lens)))
    lec = table([(p["name"], si(p["flops"], "FLOP"), si(p["hbm_bytes"], "B"), _per_byte(p["intensity_flop_per_B"]),
                  si(p["time_s"], "s"), p["bound"]) for p in lecture],
                ("seed lecture example", "FLOPs", "HBM bytes", "FLOP/B", "time >=", "bound"))
    notes = [f"{m['model']} at {m['context_len']} tokens is beyond its context ({m['model_context_len']})"
             for m in sized if m["context_len"] > m["model_context_len"]]
    return "\n\n".join([head, main, prefill, lec] + (["note: " + "; ".join(notes)] if notes else [])
                       + [f"wrote {path}" + (" (replaced the file that was there)" if replaced else "")])


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sizing", help="what-if sizing report for a few models on one GPU, with a roofline plot")
    p.add_argument("--gpu", type=gpu_name, default=DEFAULT_GPU, help=f"default {DEFAULT_GPU}")
    p.add_argument("--model", type=model_name, nargs="+", action="extend",
                   help=f"models (default {' '.join(SIZING_MODELS)})")
    p.add_argument("--seq-len", type=positive_int, help="context for KV, batch and decode (default: each model's own)")
    p.add_argument("--prefill-len", type=positive_int, action="append", metavar="N",
                   help=f"prefill lengths, repeatable (default {' '.join(map(str, PREFILL_LENS))})")
    p.add_argument("--batch", type=positive_int, default=1, help="sequences for the KV and decode columns (default 1)")
    p.add_argument("--reserve-fraction", type=fraction, default=0.0, help="of GPU memory held back from the KV cache")
    p.add_argument("--out", type=writable_folder, default=Path("out/sizing"), help="folder for the plot (default out/sizing)")
    p.set_defaults(func=cmd_sizing)
