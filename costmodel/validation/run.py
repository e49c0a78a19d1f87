"""``ioaware validate`` on the GPU: run each case, time it, check it, attach its prediction.

For each case of the sweep (``costmodel.validation.sweep``) this builds inputs, runs the
kernel (ours from kernels/, or torch's scaled_dot_product_attention forced onto one
backend), times it with CUDA events (warm-up, then the median of >= 20 runs), checks its
output against the float64 reference on a slice, and asks the simulator what it predicts
for the same case on the calibrated spec (``costmodel.validation.predict``). With
``ncu=True`` every case is then run once more under Nsight Compute, in one child process
(``python -m costmodel.validation.run --one CASES.json``, this module's ``main``), and the
DRAM bytes of each of its kernels are attached (``costmodel.validation.ncu``).

The output is the results file of ``costmodel.validation.schema``; ``ioaware report``
turns it into a page.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from numba import cuda

from costmodel.progress import NO_PROGRESS
from costmodel.validation.device import default_base, device_info, time_torch
from costmodel.validation.families import TORCH_NOTES, family
from costmodel.validation.ncu import NCU_NOTE, run_ncu
from costmodel.validation.predict import build_record, predict_case
from costmodel.validation.schema import Results
from costmodel.validation.sweep import Case, sweep
from kernels import microbench
from kernels._cuda import reused_buffers
from kernels.timing import time_launches

OUR_NOTES = (
    "Our kernels are predicted on the FP32 SIMT lanes (they use no tensor cores) with the tiles they ran with, "
    "at the FP32 rate the register-tiled matmul microkernel (kernels.matmul) attained in calibration "
    "(costmodel.validation.predict.numba_fp32_efficiency); torch's kernels at the calibrated peaks.",
    "Inputs: standard normal, float32 for our kernels; time = median of CUDA-event timings of one call "
    "(the call's own launches included), after warm-up.",
)


_NP_DTYPES = {"fp32": np.float32, "fp16": np.float16, "bf16": np.float32}  # bf16: made on the host as fp32


_INPUTS: dict = {}  # the last few input sets, by shape and dtype (drawing 10^8 normals takes seconds)
_INPUTS_KEPT = 4


def make_inputs(case: Case, seed: int = 0) -> dict[str, np.ndarray]:
    """Host arrays: q (B, H, N, d); k, v (B, Hkv, L, d); do like q for the backward pass.

    Cases of one shape (the families of a sweep point) get the same arrays: the last
    ``_INPUTS_KEPT`` sets are kept, keyed by shape, dtype and seed.
    """
    c = case.config
    key = (c.batch, c.heads, c.kv_heads, c.seq_len, c.kv_len, c.head_dim, _NP_DTYPES[c.dtype],
           case.family == "flash_bwd", seed)
    if key not in _INPUTS:
        while len(_INPUTS) >= _INPUTS_KEPT:
            _INPUTS.pop(next(iter(_INPUTS)))
        _INPUTS[key] = _draw_inputs(case, seed)
    return _INPUTS[key]


def _draw_inputs(case: Case, seed: int) -> dict[str, np.ndarray]:
    c = case.config
    rng = np.random.default_rng(seed)
    dt = _NP_DTYPES[c.dtype]

    def randn(*shape):
        return rng.standard_normal(shape, dtype=np.float32).astype(dt, copy=False)

    out = {"q": randn(c.batch, c.heads, c.seq_len, c.head_dim),
           "k": randn(c.batch, c.kv_heads, c.kv_len, c.head_dim),
           "v": randn(c.batch, c.kv_heads, c.kv_len, c.head_dim)}
    if case.family == "flash_bwd":
        out["do"] = randn(c.batch, c.heads, c.seq_len, c.head_dim)
    return out


def prepare_ours(case: Case, host: dict):
    """(a callable running the case once on device arrays, a function checking its output)."""
    import kernels
    from kernels import reference

    c = case.config
    dev = {k: cuda.to_device(v) for k, v in host.items()}
    q, k, v = dev["q"], dev["k"], dev["v"]
    tiles = dict(block_r=c.block_r, block_c=c.block_c)
    fn = getattr(kernels, family(case.family).call)  # the kernels API function of the family (kernels/api.py)
    if case.family == "standard_fwd":
        run = lambda: fn(q, k, v, causal=c.causal)  # noqa: E731
    elif case.family in ("flash2_fwd", "window_fwd"):
        run = lambda: fn(q, k, v, causal=c.causal, window=c.window, **tiles)[0]  # noqa: E731
    elif case.family == "flash1_fwd":
        run = lambda: fn(q, k, v, causal=c.causal, **tiles)[0]  # noqa: E731
    elif case.family == "flash_bwd":  # the forward first: the backward takes its o and lse
        o, lse = kernels.flash_attention(q, k, v, causal=c.causal, **tiles)
        run = lambda: fn(q, k, v, o, lse, dev["do"], causal=c.causal, **tiles)  # noqa: E731
    elif case.family in ("decode", "flash_decoding"):  # checked and bound once: a call is its launches
        step = kernels.prepare_decode(q, k, v, num_splits=c.splits or 1)
        run = lambda: step()[0]  # noqa: E731
    else:
        raise ValueError(f"family: {case.family!r} is not one of ours")

    def check(out) -> float | None:
        """Relative error of head (0, 0) against float64 numpy (the last 128 queries; gradients up to N=2048)."""
        hq, hk, hv = (host[x][:1, :1] for x in "qkv")
        if case.family == "flash_bwd":
            if c.seq_len > 2048:
                return None
            ref = reference.attention_backward(hq, hk, hv, host["do"][:1, :1], causal=c.causal)
            got = [g.copy_to_host()[:1, :1] for g in out]
            return max(reference.rel_error(g, r) for g, r in zip(got, ref))
        rows = min(c.seq_len, 128)
        ref, _ = reference.attention(hq[:, :, -rows:], hk, hv, causal=c.causal, window=c.window,
                                     q_pos=np.arange(c.seq_len - rows, c.seq_len))
        return reference.rel_error(out.copy_to_host()[:1, :1, -rows:], ref)

    return run, check


def prepare_torch(case: Case, host: dict):
    """The same for torch.nn.functional.scaled_dot_product_attention on one backend."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.functional import scaled_dot_product_attention as sdpa

    from kernels import reference

    c = case.config
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[c.dtype]
    # Converted on the host, so that under ncu no conversion kernel runs before the op.
    q, k, v = (torch.from_numpy(host[x]).to(dtype).cuda() for x in "qkv")
    backend = getattr(SDPBackend, family(case.family).call)

    def run():
        with sdpa_kernel(backend):
            return sdpa(q, k, v, is_causal=c.causal)

    def check(out) -> float:
        rows = min(c.seq_len, 128)
        hq, hk, hv = (t[:1, :1].float().cpu().numpy() for t in (q, k, v))
        ref, _ = reference.attention(hq[:, :, -rows:], hk, hv, causal=c.causal,
                                     q_pos=np.arange(c.seq_len - rows, c.seq_len))
        return reference.rel_error(out[:1, :1, -rows:].float().cpu().numpy(), ref)

    return run, check


def run_case(case: Case, repeats: int, warmup: int) -> tuple[list[float], float | None]:
    """Time one case; (samples in seconds, relative error against the reference)."""
    host = make_inputs(case)
    if case.source == "torch":
        run, check = prepare_torch(case, host)
        samples = time_torch(run, repeats, warmup)
        return samples, check(run())
    run, check = prepare_ours(case, host)
    with reused_buffers():  # outputs allocated once: cudaMalloc/cudaFree stay out of the timed calls
        samples = time_launches(run, repeats, warmup)
    return samples, check(run())  # a fresh call, outside the reuse: its own output


def run_once_for_ncu(cases: list[Case], status_file: Path | None = None, deadline: float | None = None) -> None:
    """Run each case once between marker kernels (the child process under ncu).

    The markers come in pairs even when a case fails, so the parent's split stays aligned;
    ``status_file`` records which cases ran (a JSON list of booleans, rewritten after each).
    """
    status: list[bool] = []
    for case in cases:
        if deadline is not None and time.time() > deadline:
            print(f"validate --one: deadline reached, {len(cases) - len(status)} cases not run", file=sys.stderr)
            break
        ok, run = False, None
        try:
            run, _ = (prepare_torch if case.source == "torch" else prepare_ours)(case, make_inputs(case))
        except Exception as exc:  # noqa: BLE001 - one case failing must not lose the others
            print(f"validate --one: {case.label()}: {type(exc).__name__}: {exc}", file=sys.stderr)
        cuda.synchronize()
        microbench.validate_mark_begin[1, 1]()
        try:
            if run is not None:
                run()
                cuda.synchronize()
                ok = True
        except Exception as exc:  # noqa: BLE001
            print(f"validate --one: {case.label()}: {type(exc).__name__}: {exc}", file=sys.stderr)
        finally:
            microbench.validate_mark_end[1, 1]()
            cuda.synchronize()
        status.append(ok)
        if status_file is not None:
            status_file.write_text(json.dumps(status))
        _free_memory()


def _free_memory() -> None:
    import gc

    gc.collect()
    try:
        cuda.current_context().deallocations.clear()
    except Exception:  # noqa: BLE001
        pass
    if "torch" in sys.modules:
        sys.modules["torch"].cuda.empty_cache()


def run_validation(spec_name: str | None = None, quick: bool = False, families: tuple[str, ...] | None = None,
                   seq_lens: tuple[int, ...] | None = None,
                   max_seconds: float | None = None, ncu: bool = False, repeats: int = 20, warmup: int = 3,
                   command: str | None = None, ncu_path: str = "ncu", ncu_families: tuple[str, ...] | None = None,
                   log=lambda msg: None, progress=NO_PROGRESS) -> Results:
    """The whole sweep on the current GPU; returns the validated results.

    ``max_seconds`` bounds the whole run: no configuration starts after it (with ``ncu``,
    the timed sweep gets 60 % of it and Nsight Compute the rest). ``ncu_families``
    limits the profiled configurations (default: all that ran).
    """
    from hardware_specs import list_calibrated, load_gpu

    t0 = time.perf_counter()
    info = device_info()
    if spec_name is None:
        base = default_base(info["gpu"])
        spec_name = f"{base}-measured" if f"{base}-measured" in list_calibrated() else base
    spec = load_gpu(spec_name)
    torch_ok = info.get("torch") is not None and _torch_cuda_ok()
    cases = sweep(quick, families, torch=torch_ok, seq_lens=seq_lens)
    notes = list(OUR_NOTES) + (list(TORCH_NOTES) if torch_ok else ["torch not importable: no torch SDPA runs"])
    if not spec.measured:
        notes.append(f"predictions use the datasheet spec {spec.name}: run `ioaware calibrate` first for measured ceilings")
    records, done, skipped = [], [], []
    sweep_budget = None if max_seconds is None else max_seconds * (0.6 if ncu else 1.0)
    progress.start(len(cases))
    for i, case in enumerate(cases):
        progress.update(0, item=case.label())  # name the case while it runs; counted when done
        if sweep_budget is not None and time.perf_counter() - t0 > sweep_budget:
            skipped += [f"{c.label()}: time budget ({sweep_budget:.0f} s) spent" for c in cases[i:]]
            break
        try:
            flops, predicted = predict_case(spec, case)
            samples, rel_err = run_case(case, repeats, warmup)
        except Exception as exc:  # noqa: BLE001 - record the failure and go on
            skipped.append(f"{case.label()}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            log(f"skip {case.label()}: {skipped[-1]}")
            _free_memory()
            progress.update(item=case.label())
            continue
        done.append((case, flops, predicted, samples, rel_err))
        log(f"{case.label():60s} {statistics.median(samples) * 1e3:9.3f} ms  predicted "
            f"{predicted['time_s'] * 1e3:9.3f} ms  err {rel_err if rel_err is None else f'{rel_err:.1e}'}")
        _free_memory()
        progress.update(item=case.label())
    groups: list = [None] * len(done)
    profiled = [i for i, d in enumerate(done) if ncu_families is None or d[0].family in ncu_families]
    if ncu and profiled:
        budget = 900.0 if max_seconds is None else max(60.0, max_seconds - (time.perf_counter() - t0))
        log(f"Nsight Compute: {len(profiled)} configurations, at most {budget:.0f} s")
        found, note = run_ncu([done[i][0] for i in profiled], budget, ncu_path)
        for i, g in zip(profiled, found):
            groups[i] = g
        notes += [NCU_NOTE, note]
        log(note)
    for (case, flops, predicted, samples, rel_err), kernels in zip(done, groups):
        records.append(build_record(case, flops, predicted, samples, kernels, rel_err))
    notes.append(f"sweep took {time.perf_counter() - t0:.0f} s; {len(records)} records, {len(skipped)} skipped")
    meta = {
        "command": command or shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]), "gpu": info["gpu"],
        "spec": spec_name, "driver": info.get("driver", "unknown"), "cuda_runtime": info.get("cuda_runtime", "unknown"),
        "numba": info["numba"], "numba_cuda": info["numba_cuda"], "numpy": info["numpy"], "torch": info["torch"],
        "date": _dt.date.today().isoformat(), "ncu": bool(ncu), "notes": notes, "skipped": skipped,
    }
    return Results.model_validate({"meta": meta, "records": [r.model_dump() for r in records]})


def _torch_cuda_ok() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def main(argv: list[str] | None = None) -> int:
    """``python -m costmodel.validation.run --one CASES.json [--deadline EPOCH]``: the child process ncu profiles."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m costmodel.validation.run",
                                     description="Run cases once each between marker kernels (for Nsight Compute); "
                                                 "the sweep itself is `ioaware validate`.")
    parser.add_argument("--one", required=True, metavar="CASES", help="a JSON file or JSON text: one case or a list")
    parser.add_argument("--deadline", type=float, help="time.time() after which no case is started")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    text = Path(args.one).read_text() if os.path.exists(args.one) else args.one
    data = json.loads(text)
    cases = [Case.from_json(d) for d in (data if isinstance(data, list) else [data])]
    status = Path(args.one + ".status") if os.path.exists(args.one) else None
    run_once_for_ncu(cases, status, args.deadline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
