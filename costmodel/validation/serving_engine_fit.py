"""Fit the serving loop's host time per step (``costmodel.serving.engine_host``) from its recorded steps.

    python3 -m costmodel.validation.serving_engine_fit RESULTS.json [--fit-model M] [--write]

``serving_run`` records, for every step, the scheduler's time, the host time spent building the
step's inputs (``prep_s``) and issuing it (``issue_s``), and the forward's span on the device
(``gpu_s``, CUDA events from its first launch). The engine's host time outside the forward pass is
(``host_s``), for a CUDA-graph step, its time outside the replay's span; for an eager step holding
prefill (its launches are the forward's own, which the step predictor prices), schedule + prep. Which the loop ran is in the
results' setup (``prefill_launch``: graph since the varlen prefill graphs, eager before). Least
squares on the steps of one model (``--fit-model``, default TinyLlama-1.1B) gives the four
parameters; the other model's steps are the held-out check (the host work does not depend on the
model's width or depth: the same Python builds the same inputs). ``--write`` stores the fit as
``costmodel/serving/engines/torch-loop.yaml``. Runs on a CPU.

With eager prefills a fifth, ``eager_attention_call_s`` (the loop's host work per layer around each
attention call), is the value that makes the step predictor's eager forward on the calibrated spec
(``--gpu``) match the fit model's measured eager forwards (time - schedule - prep) in the median;
the held-out model's eager steps are predicted with it and compared the same way.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from costmodel.outputs import write_atomic
from costmodel.serving.engine_host import ENGINES_DIR, EngineHost


def prefill_launch(results: dict) -> str:
    return results.get("setup", {}).get("prefill_launch", "eager")


def host_samples(results: dict, model: str) -> dict[str, np.ndarray]:
    """Per-step host seconds and their regressors, decode-only (graph) and prefill steps apart."""
    steps = [s for r in results["runs"] if r["model"] == model for s in r["steps"] if "prep_s" in s]
    if not steps:
        raise ValueError(f"model: no recorded step of {model!r} carries the host split (prep_s); "
                         "runs of serving_run before it was recorded cannot be fitted")
    graph = [s for s in steps if not s["chunks"]]
    prefill = [s for s in steps if s["chunks"]]
    prefill_graphs = prefill_launch(results) == "graph"
    return {"graph_y": np.array([host_s(s, True) for s in graph]),
            "graph_x": np.array([s["decodes"] for s in graph], dtype=np.float64),
            "prefill_y": np.array([host_s(s, prefill_graphs) for s in prefill]),
            "prefill_x": np.array([s["decodes"] + sum(m for m, _ in s["chunks"]) for s in prefill], dtype=np.float64)}


def host_s(step: dict, graph: bool) -> float:
    """The host seconds of a recorded step the GPU waits for. A graph step recorded with its launch
    mark (``inputs_s``: ``gpu_s`` counts from the replay): the step's time outside the replay's
    span on the device, time - gpu_s (scheduling, inputs, the sampled tokens' return). Recorded
    before the mark, schedule + prep + issue (the replay's own issue counted too). An eager step:
    schedule + prep (its launches are the forward's, which the step predictor prices)."""
    if not graph:
        return step["schedule_s"] + step["prep_s"]
    if "inputs_s" in step:
        return step["time_s"] - step["gpu_s"]
    return step["schedule_s"] + step["prep_s"] + step["issue_s"]


def _line(x, y) -> tuple[float, float]:
    """Least-squares intercept and slope, both held >= 0 (host time cannot shrink with work)."""
    A = np.c_[np.ones_like(x), x]
    a, b = np.linalg.lstsq(A, y, rcond=None)[0]
    if b < 0:
        a, b = float(np.mean(y)), 0.0
    return max(float(a), 0.0), float(b)


def fit(results: dict, model: str, gpu=None) -> dict:
    s = host_samples(results, model)
    g, e = _line(s["graph_x"], s["graph_y"]), _line(s["prefill_x"], s["prefill_y"])
    out = {"graph_step_s": g[0], "graph_per_request_s": g[1], "prefill_step_s": e[0], "prefill_per_token_s": e[1]}
    if gpu is not None and prefill_launch(results) == "eager":
        out["eager_attention_call_s"] = fit_attention_call(results, model, gpu)
    return out


def prefill_forward_ratio(results: dict, model: str, gpu, call_s: float, multiple: int = 1) -> np.ndarray:
    """Predicted / measured forward of each recorded step of ``model`` holding prefill, launched as
    the results' loop launched it: the measured forward is what ``host_s`` leaves of the step's time;
    decodes at their mean context (``serving_compare.step_batches``), a graph's tokens padded to
    ``multiple``."""
    from costmodel.serving.engine_host import pad_tokens
    from costmodel.step import predict_batch
    from costmodel.validation.serving_compare import step_batches

    launch = prefill_launch(results)
    steps = [s for r in results["runs"] if r["model"] == model for s in r["steps"] if "prep_s" in s and s["chunks"]]
    new, ctx = step_batches(steps)
    if launch == "graph":
        new, ctx = pad_tokens(new, ctx, multiple)
    meas = np.array([s["time_s"] - host_s(s, launch == "graph") for s in steps])
    pred = predict_batch(model, gpu, new_tokens=new, context_lens=ctx, launch=launch,
                         attention_host_per_call_s=call_s).time_s
    return np.asarray(pred) / meas


def fit_attention_call(results: dict, model: str, gpu, hi_s: float = 2e-3) -> float:
    """Bisection on the median ratio (monotone in the host cost): the per-call seconds that make it 1."""
    if np.median(prefill_forward_ratio(results, model, gpu, 0.0)) >= 1.0:
        return 0.0
    lo, hi = 0.0, hi_s
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if np.median(prefill_forward_ratio(results, model, gpu, mid)) < 1.0 else (lo, mid)
    return 0.5 * (lo + hi)


def check(params: dict, results: dict, model: str) -> dict:
    """|predicted - measured| host seconds per step on ``model``'s steps (median, p90), and the
    relative error of the summed host time, graph and eager steps apart."""
    s = host_samples(results, model)
    out = {"model": model}
    for kind, a, b in (("graph", "graph_step_s", "graph_per_request_s"),
                       ("prefill", "prefill_step_s", "prefill_per_token_s")):
        pred = params[a] + params[b] * s[f"{kind}_x"]
        y = s[f"{kind}_y"]
        if y.size:
            err = np.abs(pred - y)
            out[kind] = {"steps": int(y.size), "abs_error_p50_s": float(np.median(err)),
                         "abs_error_p90_s": float(np.percentile(err, 90)), "measured_p50_s": float(np.median(y)),
                         "total_rel_error": float(pred.sum() / y.sum() - 1)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("--fit-model", default="tinyllama-1.1b")
    ap.add_argument("--gpu", default="h200-sxm-141gb-measured", help="spec of the step predictor (the calibrated H200)")
    ap.add_argument("--write", action="store_true", help="store the fit as costmodel/serving/engines/torch-loop.yaml")
    args = ap.parse_args(argv)
    with open(args.results) as f:
        results = json.load(f)
    params = fit(results, args.fit_model, args.gpu)
    launch = prefill_launch(results)
    multiple = int(results.get("setup", {}).get("prefill_token_multiple", 1))
    others = sorted({r["model"] for r in results["runs"]} - {args.fit_model})
    held = []
    for m in others:
        h = check(params, results, m)
        call = params.get("eager_attention_call_s", 0.0)
        with_, without = (prefill_forward_ratio(results, m, args.gpu, a, multiple) for a in (call, 0.0))
        h["prefill_forward_ratio"] = {"steps": int(with_.size), "p50": float(np.median(with_)),
                                      "p10": float(np.percentile(with_, 10)), "p90": float(np.percentile(with_, 90))}
        if launch == "eager":
            h["prefill_forward_ratio"]["p50_without_attention_call_s"] = float(np.median(without))
        held.append(h)
    for name, v in params.items():
        print(f"{name} = {v * 1e6:.2f} us")
    for h in held:
        for kind in ("graph", "prefill"):
            if kind in h:
                c = h[kind]
                print(f"held out {h['model']} {kind}: {c['steps']} steps, measured p50 {c['measured_p50_s'] * 1e6:.0f} us, "
                      f"|error| p50 {c['abs_error_p50_s'] * 1e6:.0f} us, p90 {c['abs_error_p90_s'] * 1e6:.0f} us, "
                      f"sum {100 * c['total_rel_error']:+.1f}%")
        e = h["prefill_forward_ratio"]
        print(f"held out {h['model']} {launch} prefill forwards, predicted / measured: p50 {e['p50']:.3f} "
              f"(p10 {e['p10']:.3f}, p90 {e['p90']:.3f})"
              + (f"; without eager_attention_call_s {e['p50_without_attention_call_s']:.3f}" if launch == "eager" else ""))
    if args.write:
        meta = results.get("meta", {})
        engine = EngineHost(
            name="torch-loop",
            description=("The project's PyTorch serving loop (costmodel.validation.serving_loop: Python scheduler, "
                         "paged Triton attention kernels, "
                         + ("every step a CUDA graph: decodes by batch bucket, prefills by token bucket"
                            if launch == "graph" else "CUDA-graph decodes, eager prefills")
                         + ") on the H200 machine's host."),
            **params, prefill_launch=launch, prefill_token_multiple=multiple,
            measured={"method": (f"least squares on the recorded host split of {args.fit_model}'s steps"
                                 + (f" and, for eager_attention_call_s, the median of its eager forwards against "
                                    f"predict_batch on {args.gpu}" if launch == "eager" else "") + " "
                                 f"(costmodel.validation.serving_engine_fit {args.results} --fit-model {args.fit_model}); "
                                 f"run: {meta.get('command', '?')}"),
                      "host": f"{meta.get('gpu', '?')} machine, torch {meta.get('torch', '?')}",
                      "date": (meta.get("date") or "1970-01-01")[:10]},
            check={"held_out": held})
        import yaml

        text = yaml.safe_dump(json.loads(engine.model_dump_json()), sort_keys=False, width=110)
        path = ENGINES_DIR / "torch-loop.yaml"
        write_atomic(path, "# written by python3 -m costmodel.validation.serving_engine_fit --write\n" + text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
