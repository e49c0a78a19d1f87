"""Run attention kernels on a GPU, time them, predict them, and write a results file.

For each configuration of the sweep (``sweep``) this builds inputs, runs the kernel (ours
from kernels/, or torch's scaled_dot_product_attention forced onto one backend), times
it with CUDA events (warm-up, then the median of >= 20 runs), checks its output against
the float64 reference on a slice, and asks the simulator what it predicts for the same
configuration on the calibrated spec. With ``ncu=True`` every configuration is then run
once more under Nsight Compute, in one child process (``python -m kernels.validate --one
CASES.json``), and the DRAM bytes of each of its kernels are attached.

The output is the results file of ``costmodel.validation`` (one JSON object); ``ioaware
report`` turns it into a page. Everything that needs no GPU (the sweep, the prediction
and record assembly, the ncu command and the splitting of its output) is a plain
function, tested on the CPU; the GPU parts are the thin ``run_*`` functions.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numba import cuda

from costmodel.validation import (
    TORCH_FAMILIES, Config, NcuKernel, Predicted, Record, Results, numba_fp32_efficiency, parse_ncu_csv, short_kernel_name,
)

# The sweep (FlashAttention-2 paper, Dao 2023, section 4.1: batch x seq_len = 16k tokens,
# hidden 2048, so 32 heads of 64 or 16 heads of 128; this keeps B*H*N large enough to
# fill the GPU at every N while the work per configuration stays bounded).
TOKENS = 16384
HIDDEN = 2048
SEQ_LENS = (512, 1024, 2048, 4096, 8192, 16384)
HEAD_DIMS = (64, 128)
STANDARD_MAX_N = 4096  # S and P in HBM take B*H*N^2*8 bytes: 4 GiB at N = 4096 (torch math: more, fp32 copies)
BACKWARD_MAX_N = 8192
BACKWARD_TILES = {64: (64, 64), 128: (32, 64)}  # kernels.flash_backward.default_config: what fits in shared memory
DECODE_BATCHES = (1, 16)  # 1: B*H blocks leave most SMs idle, the case split-KV decoding is for
DECODE_KV_LENS = (1024, 4096, 16384)
DECODE_SPLITS = (4, 8)  # at most the 8 key tiles (of 128) of the shortest cache
WINDOWS = (1024, 4096)
TORCH_BACKENDS = {  # family -> torch.nn.attention.SDPBackend member
    "torch_sdpa_flash": "FLASH_ATTENTION", "torch_sdpa_cudnn": "CUDNN_ATTENTION",
    "torch_sdpa_efficient": "EFFICIENT_ATTENTION", "torch_sdpa_math": "MATH",
}
# How each torch backend is predicted: (simulator impl, tensor cores, threads, (B_r, B_c) by head_dim).
# FA2's forward kernels run 4 warps a block (Flash_fwd_kernel_traits, kNWarps = 4).
TORCH_MODEL = {
    "torch_sdpa_flash": ("flash2", True, 128, {64: (128, 128), 128: (128, 64)}),
    "torch_sdpa_cudnn": ("flash2", True, 128, {64: (128, 128), 128: (128, 64)}),
    "torch_sdpa_efficient": ("flash2", True, 128, {64: (64, 64), 128: (64, 64)}),
    "torch_sdpa_math": ("standard", False, None, {}),
}
TORCH_NOTES = (
    "torch flash backend predicted as FlashAttention-2 forward on tensor cores in the input precision, "
    "128x128 tiles for d=64 and 128x64 for d=128 (the sm80 kernel configuration of the FA2 code torch ships).",
    "torch cuDNN backend predicted as a flash-style fused forward with the same tiles (cuDNN's are not public).",
    "torch memory-efficient backend predicted as a flash-style fused forward with 64x64 tiles on tensor cores.",
    "torch math backend predicted as unfused standard attention in fp32 on the SIMT lanes: with "
    "torch.backends.cuda.allow_fp16_bf16_reduction_math_sdp(False) (the default) it upcasts fp16/bf16 q, k, v "
    "to fp32 before its matmuls, and fp32 matmuls do not use TF32 while torch.backends.cuda.matmul.allow_tf32 "
    "is False (the default); the upcast and downcast copies are not in the prediction.",
)
OUR_NOTES = (
    "Our kernels are predicted on the FP32 SIMT lanes (they use no tensor cores) with the tiles they ran with, "
    "at the FP32 rate the register-tiled matmul microkernel (kernels.matmul) attained in calibration "
    "(costmodel.validation.numba_fp32_efficiency); torch's kernels at the calibrated peaks.",
    "Inputs: standard normal, float32 for our kernels; time = median of CUDA-event timings of one call "
    "(the call's own launches included), after warm-up.",
)
NCU_NOTE = ("DRAM bytes: Nsight Compute (dram__bytes_read.sum + dram__bytes_write.sum, caches flushed before each "
            "kernel, --clock-control none); writes still held in L2 when a kernel ends are not counted.")


# ---------------------------------------------------------------- the sweep


@dataclass(frozen=True)
class Case:
    family: str
    config: Config

    @property
    def source(self) -> str:
        return "torch" if self.family in TORCH_FAMILIES else "ours"

    def label(self) -> str:
        return f"{self.family} {self.config.label()}"

    def to_json(self) -> dict:
        return {"family": self.family, "config": self.config.model_dump()}

    @classmethod
    def from_json(cls, data: dict) -> "Case":
        return cls(data["family"], Config.model_validate(data["config"]))


def _cfg(batch, heads, n, d, dtype="fp32", causal=False, kv_heads=None, kv_len=None, **extra) -> Config:
    return Config(batch=batch, heads=heads, kv_heads=kv_heads or heads, seq_len=n, kv_len=kv_len or n,
                  head_dim=d, dtype=dtype, causal=causal, **extra)


def sweep(quick: bool = False, families: tuple[str, ...] | None = None, torch: bool = True,
          block_r: int = 64, block_c: int = 64, seq_lens: tuple[int, ...] | None = None) -> list[Case]:
    """The configurations to run, shortest sequences first.

    ``seq_lens`` keeps only the forward/backward configurations of those N (decode,
    whose N is 1, is kept whole): for a sweep split over several GPU sessions.
    """
    keep = seq_lens
    seq_lens = (1024, 4096) if quick else SEQ_LENS
    head_dims = (64,) if quick else HEAD_DIMS
    tiles = dict(block_r=block_r, block_c=block_c)
    cases: list[Case] = []
    for d in head_dims:
        heads = HIDDEN // d
        for n in seq_lens:
            batch = max(1, TOKENS // n)
            for causal in (False, True):
                if n <= STANDARD_MAX_N:
                    cases.append(Case("standard_fwd", _cfg(batch, heads, n, d, causal=causal)))
                cases.append(Case("flash2_fwd", _cfg(batch, heads, n, d, causal=causal, **tiles)))
                cases.append(Case("flash1_fwd", _cfg(batch, heads, n, d, causal=causal, **tiles)))
                if n <= BACKWARD_MAX_N:
                    br, bc = BACKWARD_TILES[d]
                    cases.append(Case("flash_bwd", _cfg(batch, heads, n, d, causal=causal, block_r=br, block_c=bc)))
                if torch:
                    for family in TORCH_FAMILIES:
                        if family == "torch_sdpa_math" and n > STANDARD_MAX_N:
                            continue
                        dtype = "bf16" if causal else "fp16"  # both precisions, half the runs
                        cases.append(Case(family, _cfg(batch, heads, n, d, dtype=dtype, causal=causal)))
            for window in (WINDOWS[:1] if quick else WINDOWS):
                if window < n:
                    cases.append(Case("window_fwd", _cfg(batch, heads, n, d, causal=True, window=window, **tiles)))
        # Decode: one new token per sequence against a KV cache, grouped heads (4 queries per kv head).
        for batch in DECODE_BATCHES:
            for kv_len in ((4096,) if quick else DECODE_KV_LENS):
                c = dict(kv_heads=heads // 4, kv_len=kv_len)
                cases.append(Case("decode", _cfg(batch, heads, 1, d, **c)))
                for splits in (DECODE_SPLITS[-1:] if quick else DECODE_SPLITS):
                    cases.append(Case("flash_decoding", _cfg(batch, heads, 1, d, splits=splits, **c)))
    # Shortest sequences first, across families and head dims, so a time budget that runs
    # out drops the longest (costliest) configurations of every family, not whole families.
    if keep:
        cases = [c for c in cases if c.config.seq_len == 1 or c.config.seq_len in keep]
    cases.sort(key=lambda c: c.config.seq_len)
    if families:
        unknown = set(families) - {c.family for c in cases} - set(TORCH_FAMILIES)
        if unknown:
            raise ValueError(f"--families: unknown {', '.join(sorted(unknown))}")
        cases = [c for c in cases if c.family in families]
    return cases


# ---------------------------------------------------------------- predictions


def predict_case(spec, case: Case):
    """What the simulator predicts for a case: (flops, Predicted as a dict).

    Our kernels go to ``simulate_attention`` under their family name (the simulator maps
    it to its impl and pass) on the FP32 SIMT lanes; torch's backends as TORCH_MODEL says.
    """
    from simulators import simulate_attention

    c = case.config
    shape = dict(batch=c.batch, heads=c.heads, kv_heads=c.kv_heads, seq_len=c.seq_len, kv_len=c.kv_len,
                 head_dim=c.head_dim, causal=c.causal, window=c.window)
    if case.source == "torch":
        impl, tensor_cores, threads, tiles = TORCH_MODEL[case.family]
        block_r, block_c = tiles.get(c.head_dim, (None, None))
        if tensor_cores:  # fused, half-precision tiles in shared memory
            result = simulate_attention(spec, impl, pass_="fwd", dtype=c.dtype, tensor_cores=True, block_r=block_r,
                                        block_c=block_c, threads_per_block=threads, smem_dtype=c.dtype, **shape)
        else:  # math backend: fp32 after the upcast, on the SIMT lanes
            result = simulate_attention(spec, impl, pass_="fwd", dtype="fp32", tensor_cores=False, **shape)
    else:
        def run(s):
            return simulate_attention(s, case.family, dtype=c.dtype, tensor_cores=False, block_r=c.block_r,
                                      block_c=c.block_c, splits=c.splits, **shape)

        result = run(spec)
        occupancy, dram_fraction = tiled_occupancy(spec, result)
        eff = numba_fp32_efficiency(spec, occupancy, dram_fraction)
        if eff is not None:  # our kernels: the FP32 lanes at the rate our tiled code attains at that occupancy
            result = run(spec.model_copy(update={"efficiency": {**spec.efficiency, "fp32": eff}}))
    return prediction_from_simulation(result)


MICROKERNEL_THREADS = 128  # kernels.matmul.Config().num_threads: the unit of calibration's occupancy sweep


def tiled_occupancy(spec, result) -> tuple[float, float]:
    """(resident warps per SM in 128-thread blocks, share of global reads from DRAM) of the
    kernel doing most FLOPs.

    Resident blocks per SM = min(the blocks/SM that fit, ceil(blocks / SMs)): a grid of
    fewer blocks than slots leaves the SMs partly empty (FA1's B*H blocks, decode). The
    DRAM share is the L2 model's hbm_read_bytes over the kernel's global reads.
    """
    main = max(result.kernels, key=lambda k: k.matmul_flops + k.other_flops)
    resident = min(main.blocks_per_sm, math.ceil(main.blocks / spec.sm_count))
    dram = main.hbm_read_bytes / main.global_read_bytes if main.global_read_bytes else 1.0
    return resident * main.threads_per_block / MICROKERNEL_THREADS, dram


def _get(obj, key, default=None):
    return obj.get(key, default) if isinstance(obj, dict) else getattr(obj, key, default)


def prediction_from_simulation(result) -> tuple[float, dict]:
    """(flops, the results file's ``predicted`` mapping) from a simulator result.

    Takes the totals and the per-kernel list as the simulator reports them (attributes
    or keys: flops, time_s, hbm_bytes, global_bytes, bound, kernels).
    """
    kernels = [
        {"name": str(_get(k, "name")), "time_s": float(_get(k, "time_s")), "hbm_bytes": float(_get(k, "hbm_bytes")),
         "bound": str(_get(k, "bound")), "launch_s": float(_get(k, "launch_s", 0.0) or 0.0)}
        for k in (_get(result, "kernels") or [])
    ]
    predicted = {
        "time_s": float(_get(result, "time_s")), "hbm_bytes": float(_get(result, "hbm_bytes")),
        "global_bytes": float(_get(result, "global_bytes")), "bound": str(_get(result, "bound")), "kernels": kernels,
    }
    return float(_get(result, "flops")), predicted


def build_record(case: Case, flops: float, predicted: dict, samples_s: list[float],
                 ncu_kernels: list[NcuKernel] | None = None, rel_error: float | None = None) -> Record:
    """One results-file record, validated."""
    measured = {"time_s": statistics.median(samples_s), "time_samples_s": list(samples_s),
                "rel_error_vs_reference": rel_error}
    if ncu_kernels is not None:
        measured["ncu_kernels"] = [k.model_dump() for k in ncu_kernels]
        measured["dram_read_bytes"] = sum(k.dram_read_bytes for k in ncu_kernels)
        measured["dram_write_bytes"] = sum(k.dram_write_bytes for k in ncu_kernels)
    return Record.model_validate({"family": case.family, "source": case.source, "config": case.config.model_dump(),
                                  "flops": flops, "measured": measured, "predicted": predicted})


def repredict(results: Results, spec_name: str | None = None, note: str | None = None) -> Results:
    """The same measurements with every prediction made again by the current model (no GPU).

    ``spec_name`` defaults to the spec the results were predicted with. Measured numbers
    are kept as recorded; ``flops`` and ``predicted`` are replaced, and a note says when
    and with which spec.
    """
    from hardware_specs import load_gpu

    name = spec_name or results.meta.spec
    spec = load_gpu(name)
    records = []
    for r in results.records:
        flops, predicted = predict_case(spec, Case(r.family, r.config))
        records.append(r.model_copy(update={"flops": flops, "predicted": Predicted.model_validate(predicted)}))
    notes = list(results.meta.notes) + [note or f"predictions recomputed {_dt.date.today().isoformat()} "
                                        f"with spec {name} (measurements as recorded {results.meta.date})"]
    return Results(meta=results.meta.model_copy(update={"spec": name, "notes": notes}), records=records)


# ---------------------------------------------------------------- Nsight Compute

MARK_BEGIN, MARK_END = "validate_mark_begin", "validate_mark_end"


@cuda.jit
def validate_mark_begin():
    """Empty: its launch tells, in Nsight Compute's list of kernels, where a case begins."""


@cuda.jit
def validate_mark_end():
    """Empty: where a case ends."""


def ncu_command(cases_file: str | Path, log_file: str | Path, ncu: str = "ncu",
                deadline: float | None = None) -> list[str]:
    """Nsight Compute over the child process that runs each case once between two marker kernels.

    ``deadline`` (a time.time() value) makes the child stop starting cases then and exit
    normally, so that ncu still prints what it profiled (it prints the table at exit).
    """
    return [
        ncu, "--csv", "--page", "raw", "--metrics", "dram__bytes_read.sum,dram__bytes_write.sum,gpu__time_duration.sum",
        "--clock-control", "none", "--target-processes", "all", "--log-file", str(log_file),
        sys.executable, "-m", "kernels.validate", "--one", str(cases_file),
    ] + ([] if deadline is None else ["--deadline", f"{deadline:.0f}"])


def split_on_markers(kernels: list[NcuKernel], n_cases: int) -> list[list[NcuKernel] | None]:
    """The kernels between each begin/end marker pair, in case order (None where a case has no pair)."""
    groups: list[list[NcuKernel] | None] = []
    current: list[NcuKernel] | None = None
    for k in kernels:
        name = short_kernel_name(k.name)
        if name == MARK_BEGIN:
            current = []
        elif name == MARK_END:
            groups.append(current)
            current = None
        elif current is not None:
            current.append(k)
    groups += [None] * (n_cases - len(groups))
    return groups[:n_cases]


def run_ncu(cases: list[Case], timeout_s: float, ncu: str = "ncu") -> tuple[list[list[NcuKernel] | None], str]:
    """Profile every case once; (kernels per case, a note on what happened)."""
    with tempfile.TemporaryDirectory(prefix="ioaware-ncu-") as tmp:
        cases_file = Path(tmp) / "cases.json"
        cases_file.write_text(json.dumps([c.to_json() for c in cases]))
        log = Path(tmp) / "ncu.csv"
        # The child stops starting cases with a margin left for ncu to write its table.
        t_end = time.time() + timeout_s
        cmd = ncu_command(cases_file, log, ncu, deadline=t_end - min(60.0, 0.2 * timeout_s))
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=Path.cwd())
            if not log.exists() and proc.returncode != 0:  # an ncu without --log-file: the table on stdout
                cmd = [a for i, a in enumerate(cmd) if a != "--log-file" and cmd[i - 1] != "--log-file"]
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(30.0, t_end - time.time()),
                                      cwd=Path.cwd())
        except FileNotFoundError:
            return [None] * len(cases), f"ncu not found ({ncu}); no DRAM bytes"
        except subprocess.TimeoutExpired:
            return [None] * len(cases), f"ncu did not finish in {timeout_s:.0f} s; no DRAM bytes"
        text = log.read_text() if log.exists() else proc.stdout
        try:
            kernels = parse_ncu_csv(text)
        except ValueError as exc:
            tail = "\n".join((text, proc.stderr or "")).strip().splitlines()[-3:]
            return [None] * len(cases), f"ncu output unreadable ({exc}; rc {proc.returncode}): {' | '.join(tail)}"
        groups = split_on_markers(kernels, len(cases))
        status_file = Path(str(cases_file) + ".status")
        if status_file.exists():  # a case that failed in the child has its (empty) pair: drop it
            ran = json.loads(status_file.read_text())
            groups = [g if i < len(ran) and ran[i] else None for i, g in enumerate(groups)]
        return groups, f"ncu: {len(kernels)} kernels profiled, {sum(g is not None for g in groups)} cases matched"


# ---------------------------------------------------------------- running on the GPU


def _kernels_api(name: str):
    """A function of the kernels API (kernels/api.py) by name."""
    import kernels

    return getattr(kernels, name)


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
    from kernels import reference

    c = case.config
    dev = {k: cuda.to_device(v) for k, v in host.items()}
    q, k, v = dev["q"], dev["k"], dev["v"]
    tiles = dict(block_r=c.block_r, block_c=c.block_c)
    if case.family == "standard_fwd":
        fn = _kernels_api("standard_attention")
        run = lambda: fn(q, k, v, causal=c.causal)  # noqa: E731
    elif case.family in ("flash2_fwd", "window_fwd"):
        fn = _kernels_api("flash_attention")
        run = lambda: fn(q, k, v, causal=c.causal, window=c.window, **tiles)[0]  # noqa: E731
    elif case.family == "flash1_fwd":
        fn = _kernels_api("flash_attention_v1")
        run = lambda: fn(q, k, v, causal=c.causal, **tiles)[0]  # noqa: E731
    elif case.family == "flash_bwd":
        fwd, bwd = _kernels_api("flash_attention"), _kernels_api("flash_attention_backward")
        o, lse = fwd(q, k, v, causal=c.causal, **tiles)
        run = lambda: bwd(q, k, v, o, lse, dev["do"], causal=c.causal, **tiles)  # noqa: E731
    elif case.family in ("decode", "flash_decoding"):  # checked and bound once: a call is its launches
        step = _kernels_api("prepare_decode")(q, k, v, num_splits=c.splits or 1)
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
    backend = getattr(SDPBackend, TORCH_BACKENDS[case.family])

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


def time_torch(run, repeats: int, warmup: int) -> list[float]:
    import torch

    for _ in range(warmup):
        run()
    torch.cuda.synchronize()
    samples = []
    for _ in range(repeats):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        stop.record()
        stop.synchronize()
        samples.append(start.elapsed_time(stop) * 1e-3)
    return samples


def run_case(case: Case, repeats: int, warmup: int) -> tuple[list[float], float | None]:
    """Time one case; (samples in seconds, relative error against the reference)."""
    from kernels._cuda import reused_buffers
    from kernels.calibrate import time_launches

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
        validate_mark_begin[1, 1]()
        try:
            if run is not None:
                run()
                cuda.synchronize()
                ok = True
        except Exception as exc:  # noqa: BLE001
            print(f"validate --one: {case.label()}: {type(exc).__name__}: {exc}", file=sys.stderr)
        finally:
            validate_mark_end[1, 1]()
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
                   log=lambda msg: None) -> Results:
    """The whole sweep on the current GPU; returns the validated results.

    ``max_seconds`` bounds the whole run: no configuration starts after it (with ``ncu``,
    the timed sweep gets 60 % of it and Nsight Compute the rest). ``ncu_families``
    limits the profiled configurations (default: all that ran).
    """
    from hardware_specs import list_calibrated, load_gpu
    from kernels.calibrate import default_base, device_info

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
    for i, case in enumerate(cases):
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
            continue
        done.append((case, flops, predicted, samples, rel_err))
        log(f"{case.label():60s} {statistics.median(samples) * 1e3:9.3f} ms  predicted "
            f"{predicted['time_s'] * 1e3:9.3f} ms  err {rel_err if rel_err is None else f'{rel_err:.1e}'}")
        _free_memory()
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
    """``python -m kernels.validate --one CASES.json [--deadline EPOCH]``: the child process ncu profiles."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m kernels.validate",
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
