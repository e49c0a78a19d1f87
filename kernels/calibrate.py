"""Measure the ceilings the roofline uses on the GPU at hand, and write a calibrated spec.

Each ceiling is timed with CUDA events (warm-up launches, then the median of at least
20 timed runs) on a microkernel that does nothing but exercise it:

- HBM bandwidth: a device-to-device copy of >= 1 GiB, bytes read + written, by a Numba
  copy kernel (8-byte loads, four in flight per thread) and by the driver's
  device-to-device memcpy; the better of the two is kept and the method says which.
- L2 bandwidth: a read-only kernel that sums a working set of 40 % of the L2 (20 MB on
  an H100's 50 MB) many times over, with ``ld.global.cg`` loads (cached in L2, not L1),
  reduced to one value per block so the reads cannot be dropped.
- FP32 SIMT rate: eight independent FMA chains per thread in registers, enough blocks to
  fill every SM; 2 FLOP per FMA.
- exp throughput: eight independent chains ``x = exp(-x)`` per thread, compiled with
  fast math so each is one ``ex2.approx`` on the special-function unit; counted in
  exps, and written to the spec as exps / (SMs x boost clock of the base spec), so that
  the spec's ``sfu_exp_per_s`` equals the measured rate.
- Tensor-core matmul rates through torch where it is installed: bf16 and fp16 8192^3
  and tf32 (fp32 inputs, TF32 allowed), random inputs.
- Kernel launch: an empty kernel taking six device arrays (as an attention kernel
  does), launched back to back; time per launch. Launch + synchronize latency and the
  event-bracketed time of one launch are recorded beside it.

Every microkernel also runs in numba's CUDA simulator at tiny sizes (``Sizes.tiny()``),
where the events carry no time: the tests check what the kernels compute, not how fast.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import re
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from numba import cuda, uint64

from ._cuda import SIMULATOR

WORD_BYTES = 8  # the copy and L2 kernels move uint64 words
THREADS = 256  # threads per block of the bandwidth kernels (a power of two: tree reduction)
UNROLL = 4  # words in flight per thread per step
CHAINS = 8  # independent FMA / exp chains per thread
STEPS_PER_ITER = 4  # each loop iteration advances every chain this many times

# The driver has no cache-hint loads in the simulator; there a plain load stands in.
if SIMULATOR or cuda.ldcg is None:
    @cuda.jit(device=True)
    def _load_cg(a, i):
        return a[i]
else:
    _load_cg = cuda.ldcg


# ---------------------------------------------------------------- microkernels


@cuda.jit
def fill_kernel(a):
    """a[i] = i * 2654435761 (Knuth's multiplicative hash: a varied, reproducible pattern)."""
    i = cuda.grid(1)
    stride = cuda.gridsize(1)
    while i < a.shape[0]:
        a[i] = uint64(i) * uint64(2654435761)
        i += stride


@cuda.jit
def copy_kernel(src, dst):
    """dst[:] = src[:] over uint64 words. A block handles UNROLL chunks of blockDim words
    per step (loads issued before stores, so four are in flight); the grid strides on."""
    n = src.shape[0]
    bd = cuda.blockDim.x
    step = cuda.gridDim.x * bd * UNROLL
    i = cuda.blockIdx.x * bd * UNROLL + cuda.threadIdx.x
    while i + (UNROLL - 1) * bd < n:
        a = src[i]
        b = src[i + bd]
        c = src[i + 2 * bd]
        d = src[i + 3 * bd]
        dst[i] = a
        dst[i + bd] = b
        dst[i + 2 * bd] = c
        dst[i + 3 * bd] = d
        i += step
    for j in range(UNROLL):  # the last, partial step
        k = i + j * bd
        if k < n:
            dst[k] = src[k]


@cuda.jit
def l2_read_kernel(data, passes, out):
    """out[block] = passes x (sum of the words this block reads), wrapping mod 2^64.

    Each block reads the same slice every pass, through L2 only (ld.global.cg), so with a
    working set smaller than L2 every pass after the first is served by L2.
    """
    partial = cuda.shared.array(THREADS, dtype=uint64)
    n = data.shape[0]
    t = cuda.threadIdx.x
    bd = cuda.blockDim.x
    step = cuda.gridDim.x * bd * UNROLL
    acc0 = uint64(0)
    acc1 = uint64(0)
    acc2 = uint64(0)
    acc3 = uint64(0)
    for _pass in range(passes):
        i = cuda.blockIdx.x * bd * UNROLL + t
        while i + (UNROLL - 1) * bd < n:
            acc0 += _load_cg(data, i)
            acc1 += _load_cg(data, i + bd)
            acc2 += _load_cg(data, i + 2 * bd)
            acc3 += _load_cg(data, i + 3 * bd)
            i += step
        for j in range(UNROLL):
            k = i + j * bd
            if k < n:
                acc0 += _load_cg(data, k)
    partial[t] = acc0 + acc1 + acc2 + acc3
    cuda.syncthreads()
    s = bd // 2
    while s > 0:
        if t < s:
            partial[t] += partial[t + s]
        cuda.syncthreads()
        s //= 2
    if t == 0:
        out[cuda.blockIdx.x] = partial[0]


@cuda.jit
def fma_kernel(seed, mul, add, iters, out):
    """Eight independent chains x <- x * mul + add, STEPS_PER_ITER x iters steps each;
    out[thread] = the sum of the chains. mul, add and seed are float32, so every step is
    one FP32 FMA (NVVM contracts the multiply-add)."""
    x0 = seed[0]
    x1 = seed[1]
    x2 = seed[2]
    x3 = seed[3]
    x4 = seed[4]
    x5 = seed[5]
    x6 = seed[6]
    x7 = seed[7]
    for _it in range(iters):
        for _step in range(STEPS_PER_ITER):
            x0 = x0 * mul + add
            x1 = x1 * mul + add
            x2 = x2 * mul + add
            x3 = x3 * mul + add
            x4 = x4 * mul + add
            x5 = x5 * mul + add
            x6 = x6 * mul + add
            x7 = x7 * mul + add
    out[cuda.grid(1)] = ((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7))


@cuda.jit(fastmath=True)
def exp_kernel(seed, iters, out):
    """Eight independent chains x <- exp(-x) (they converge to 0.567..., never overflow);
    with fast math each exp is one multiply and one ex2.approx on the SFU."""
    x0 = seed[0]
    x1 = seed[1]
    x2 = seed[2]
    x3 = seed[3]
    x4 = seed[4]
    x5 = seed[5]
    x6 = seed[6]
    x7 = seed[7]
    for _it in range(iters):
        for _step in range(STEPS_PER_ITER):
            x0 = math.exp(-x0)
            x1 = math.exp(-x1)
            x2 = math.exp(-x2)
            x3 = math.exp(-x3)
            x4 = math.exp(-x4)
            x5 = math.exp(-x5)
            x6 = math.exp(-x6)
            x7 = math.exp(-x7)
    out[cuda.grid(1)] = ((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7))


@cuda.jit
def empty_kernel(a, b, c, d, e, f):
    """Does nothing; six array arguments, as many as an attention kernel passes."""
    pass


@cuda.jit
def empty_kernel_noargs():
    pass


# ---------------------------------------------------------------- timing


@cuda.jit
def _hold_kernel(steps):
    """One thread sleeping ``steps`` microseconds (roughly: nanosleep is approximate)."""
    for _ in range(steps):
        cuda.nanosleep(np.uint32(1000))


def time_launches(launch, repeats: int, warmup: int, hold_us: int = 0) -> list[float]:
    """Seconds per call of ``launch()``, each bracketed by two CUDA events.

    With ``hold_us`` each bracket starts behind a kernel that sleeps that long, so that by
    the time the GPU reaches the start event the host has issued the whole call: the
    samples are then GPU time alone, without the host's launch work. The simulator's
    events carry no time (nor has it nanosleep); there the wall clock stands in.
    """
    for _ in range(warmup):
        launch()
    cuda.synchronize()
    samples = []
    for _ in range(repeats):
        start, stop = cuda.event(), cuda.event()
        if hold_us and not SIMULATOR:
            _hold_kernel[1, 1](hold_us)
        t0 = time.perf_counter()
        start.record()
        launch()
        stop.record()
        stop.synchronize()
        wall = time.perf_counter() - t0
        ms = start.elapsed_time(stop)
        samples.append(ms * 1e-3 if ms > 0 else wall)
    return samples


@dataclass(frozen=True)
class Sizes:
    """How much work each microkernel does. ``blocks=None`` means SMs x blocks_per_sm."""

    copy_bytes: int = 1 << 30
    l2_fraction: float = 0.4  # working set of the L2 kernel, as a fraction of the spec's L2
    l2_passes: int = 100
    threads: int = THREADS
    blocks_per_sm: int = 8
    blocks: int | None = None
    fma_iters: int = 2048
    exp_iters: int = 256
    launches: int = 2000
    matmul_n: int = 8192
    occupancies: tuple[int, ...] = (1, 2, 3, 4)  # resident blocks per SM for the tiled-matmul sweep
    repeats: int = 20
    warmup: int = 3

    @classmethod
    def quick(cls) -> "Sizes":
        """A fast GPU run (~10 s): a quarter-GiB copy, fewer iterations, still 20 repeats."""
        return cls(copy_bytes=256 << 20, l2_passes=30, fma_iters=512, exp_iters=64, launches=500, matmul_n=4096,
                   warmup=2)

    @classmethod
    def tiny(cls) -> "Sizes":
        """Sizes the CUDA simulator runs in seconds (for tests; the timings mean nothing)."""
        return cls(copy_bytes=8 * 1000, l2_fraction=0.0, l2_passes=2, threads=32, blocks=2, fma_iters=2,
                   exp_iters=2, launches=3, matmul_n=64, occupancies=(1,), repeats=2, warmup=1)


@dataclass
class Ceiling:
    """One measured ceiling: the spec field it replaces, its value and how it was measured."""

    field: str
    value: float
    method: str
    samples_s: list[float]
    work: float  # bytes, FLOPs, exps or launches per timed run
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------- measurements


def _grid(sizes: Sizes, sms: int) -> int:
    return sizes.blocks or sms * sizes.blocks_per_sm


def measure_hbm(sizes: Sizes, sms: int) -> Ceiling:
    n_words = sizes.copy_bytes // WORD_BYTES
    src = cuda.device_array(n_words, dtype=np.uint64)
    dst = cuda.device_array(n_words, dtype=np.uint64)
    grid = _grid(sizes, sms)
    fill_kernel[grid, sizes.threads](src)
    moved = 2.0 * n_words * WORD_BYTES  # read + written
    kernel_s = time_launches(lambda: copy_kernel[grid, sizes.threads](src, dst), sizes.repeats, sizes.warmup)
    # The copy must be exact: compare both ends (the whole array would cost seconds over PCIe).
    edge = min(n_words, 1 << 17)
    for sl in (slice(0, edge), slice(n_words - edge, n_words)):
        if not np.array_equal(src[sl].copy_to_host(), dst[sl].copy_to_host()):
            raise RuntimeError("calibrate: the copy kernel did not copy exactly")
    results = {"numba copy kernel": kernel_s}
    results_note = ""
    try:
        results["driver memcpy device-to-device"] = time_launches(lambda: dst.copy_to_device(src), sizes.repeats,
                                                                  sizes.warmup)
    except Exception as exc:  # noqa: BLE001 - an optional second method
        results_note = f"device-to-device memcpy unavailable: {exc}"
    torch_s = _torch_copy(sizes)  # torch's vectorised copy kernel, where torch is there
    if torch_s:
        results["torch copy_ kernel"] = torch_s
    best = max(results, key=lambda k: moved / statistics.median(results[k]))
    rates = {k: moved / statistics.median(v) for k, v in results.items()}
    method = (
        f"copy of {sizes.copy_bytes / 2**30:.3g} GiB device to device, bytes read + written, CUDA events, "
        f"median of {sizes.repeats} after {sizes.warmup} warm-up; best of "
        + ", ".join(f"{k} {r / 1e12:.3f} TB/s" for k, r in rates.items())
        + f"; kept: {best}" + (f"; {results_note}" if results_note else "")
    )
    return Ceiling("hbm_bandwidth_Bps", rates[best], method, results[best], moved,
                   {"samples_s": results, "rates_Bps": rates})


def _torch_copy(sizes: Sizes) -> list[float] | None:
    """Seconds per ``dst.copy_(src)`` of ``copy_bytes`` through torch (CUDA events), or None."""
    torch = _torch_cuda()
    if torch is None or SIMULATOR:
        return None
    n = sizes.copy_bytes // 4
    src = torch.randn(n, device="cuda", dtype=torch.float32)
    dst = torch.empty_like(src)
    for _ in range(sizes.warmup):
        dst.copy_(src)
    torch.cuda.synchronize()
    samples = []
    for _ in range(sizes.repeats):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        stop.record()
        stop.synchronize()
        samples.append(start.elapsed_time(stop) * 1e-3)
    if not torch.equal(src[:1 << 17], dst[:1 << 17]) or not torch.equal(src[-(1 << 17):], dst[-(1 << 17):]):
        raise RuntimeError("calibrate: torch's copy did not copy exactly")
    del src, dst
    torch.cuda.empty_cache()
    return samples


def measure_l2(sizes: Sizes, sms: int, l2_bytes: int) -> Ceiling:
    n_words = max(int(sizes.l2_fraction * l2_bytes) // WORD_BYTES, sizes.threads * UNROLL)
    data = cuda.device_array(n_words, dtype=np.uint64)
    grid = _grid(sizes, sms)
    fill_kernel[grid, sizes.threads](data)
    out = cuda.device_array(grid, dtype=np.uint64)
    passes = np.int64(sizes.l2_passes)
    samples = time_launches(lambda: l2_read_kernel[grid, sizes.threads](data, passes, out), sizes.repeats,
                            sizes.warmup)
    read = float(n_words * WORD_BYTES * sizes.l2_passes)
    method = (
        f"read-only kernel (ld.global.cg, 8-byte loads) summing a {n_words * WORD_BYTES / 1e6:.3g} MB working set "
        f"({sizes.l2_fraction:.0%} of L2) {sizes.l2_passes} times, {grid} blocks x {sizes.threads} threads; "
        f"bytes read / time, CUDA events, median of {sizes.repeats}"
    )
    return Ceiling("l2_bandwidth_Bps", read / statistics.median(samples), method, samples, read,
                   {"working_set_bytes": n_words * WORD_BYTES})


FMA_MUL = np.float32(0.999999)
FMA_ADD = np.float32(1e-6)
SEED = np.linspace(0.1, 0.8, CHAINS, dtype=np.float32)


def measure_fp32(sizes: Sizes, sms: int) -> Ceiling:
    grid = _grid(sizes, sms)
    seed = cuda.to_device(SEED)
    out = cuda.device_array(grid * sizes.threads, dtype=np.float32)
    iters = np.int64(sizes.fma_iters)
    samples = time_launches(lambda: fma_kernel[grid, sizes.threads](seed, FMA_MUL, FMA_ADD, iters, out),
                            sizes.repeats, sizes.warmup)
    flops = 2.0 * grid * sizes.threads * CHAINS * STEPS_PER_ITER * sizes.fma_iters
    method = (
        f"FMA kernel: {CHAINS} independent chains per thread x {STEPS_PER_ITER * sizes.fma_iters} FMAs, "
        f"{grid} blocks x {sizes.threads} threads, 2 FLOP per FMA; CUDA events, median of {sizes.repeats}"
    )
    return Ceiling("peak_flops_per_s.fp32", flops / statistics.median(samples), method, samples, flops)


def measure_tiled_fp32(sizes: Sizes) -> Ceiling:
    """FP32 rate our register-tiled code attains: ``kernels.matmul`` (the loop of
    FlashAttention-2's S = Q_i K_j^T step, 64 x 64 x 64 tiles, 128 threads) on square
    fp32 matrices. Not a spec field: it describes the code, not the GPU, and goes to the
    calibrated spec's ``calibration`` block, from which our kernels' predictions take
    their FP32 efficiency (``costmodel.validation.numba_fp32_efficiency``)."""
    from ._cuda import reused_buffers
    from .matmul import Config, matmul

    cfg = Config()
    n = max(cfg.block_m, sizes.matmul_n // cfg.block_m * cfg.block_m)
    rng = np.random.default_rng(0)
    a = cuda.to_device(rng.standard_normal((n, n)).astype(np.float32))
    b = cuda.to_device(rng.standard_normal((n, n)).astype(np.float32))
    c = matmul(a, b, cfg)  # compiles; checked on a corner against float64
    corner = min(n, 128)
    ref = a[:corner].copy_to_host().astype(np.float64) @ b[:, :corner].copy_to_host().astype(np.float64)
    err = float(np.abs(c[:corner, :corner].copy_to_host() - ref).max() / np.abs(ref).max())
    if not err < 1e-4:
        raise RuntimeError(f"calibrate: the tiled matmul is wrong (relative error {err:.2e})")
    with reused_buffers():  # no allocation inside the timed calls
        samples = time_launches(lambda: matmul(a, b, cfg), sizes.repeats, sizes.warmup)
    by_occupancy = _tiled_fp32_by_occupancy(sizes, cfg)
    flops = 2.0 * n ** 3
    method = (f"kernels.matmul register-tiled fp32 matmul {n}^3, tiles {cfg.block_m}x{cfg.block_n}x{cfg.block_k}, "
              f"{cfg.num_threads} threads; 2 FLOP per multiply-add; CUDA events, median of {sizes.repeats}; "
              f"max relative error {err:.1e} on a {corner}x{corner} corner")
    return Ceiling("numba_tiled_fp32_flops_per_s", flops / statistics.median(samples), method, samples, flops,
                   {"by_blocks_per_sm": by_occupancy})


def _tiled_fp32_by_occupancy(sizes: Sizes, cfg) -> dict[int, float]:
    """The tiled matmul's FP32 rate with exactly k blocks per SM, k in ``sizes.occupancies``.

    A grid of k x SMs blocks of equal work (C = A B with A (64 k SMs x K), B (K x 64)):
    the block scheduler gives each SM k of them, so the rate is what k resident blocks of
    this code attain, the question a kernel with few blocks per SM (FA1's B*H grid,
    the backward's one 175 KB block per SM, decode) asks. K = matmul_n, so each block
    runs a long reduction and launch cost is negligible.
    """
    from ._cuda import reused_buffers, sm_count
    from .matmul import matmul

    sms = sm_count()
    k_len = max(cfg.block_k, sizes.matmul_n // cfg.block_k * cfg.block_k)
    rng = np.random.default_rng(1)
    b = cuda.to_device(rng.standard_normal((k_len, cfg.block_n)).astype(np.float32))
    rates = {}
    for k in sizes.occupancies:
        m = cfg.block_m * k * sms
        a = cuda.to_device(rng.standard_normal((m, k_len)).astype(np.float32))
        with reused_buffers():
            samples = time_launches(lambda: matmul(a, b, cfg), sizes.repeats, sizes.warmup)
        rates[k] = 2.0 * m * cfg.block_n * k_len / statistics.median(samples)

    return rates


def measure_exp(sizes: Sizes, sms: int, boost_clock_Hz: float, sm_count: int) -> Ceiling:
    grid = _grid(sizes, sms)
    seed = cuda.to_device(SEED)
    out = cuda.device_array(grid * sizes.threads, dtype=np.float32)
    iters = np.int64(sizes.exp_iters)
    samples = time_launches(lambda: exp_kernel[grid, sizes.threads](seed, iters, out), sizes.repeats, sizes.warmup)
    exps = float(grid * sizes.threads * CHAINS * STEPS_PER_ITER * sizes.exp_iters)
    exp_per_s = exps / statistics.median(samples)
    per_clk = exp_per_s / (sm_count * boost_clock_Hz)
    method = (
        f"exp kernel (fast math: ex2.approx): {CHAINS} independent chains x {STEPS_PER_ITER * sizes.exp_iters} exps "
        f"per thread, {grid} blocks x {sizes.threads} threads; measured {exp_per_s:.4g} exp/s, written as "
        f"exp/s / ({sm_count} SMs x {boost_clock_Hz / 1e9:.4g} GHz boost clock of the base spec) so that "
        f"sfu_exp_per_s equals the measurement; CUDA events, median of {sizes.repeats}"
    )
    return Ceiling("sfu_exp_per_clk_per_sm", per_clk, method, samples, exps, {"exp_per_s": exp_per_s})


def measure_launch(sizes: Sizes) -> Ceiling:
    arrays = [cuda.device_array(1, dtype=np.float32) for _ in range(6)]

    def back_to_back(kernel, args):
        def run():
            for _ in range(sizes.launches):
                kernel[1, 32](*args)
        return [s / sizes.launches for s in time_launches(run, max(3, sizes.repeats // 4), 1)]

    per_launch = back_to_back(empty_kernel, arrays)
    per_launch_noargs = back_to_back(empty_kernel_noargs, ())
    bracketed = time_launches(lambda: empty_kernel[1, 32](*arrays), sizes.repeats, sizes.warmup)
    sync = []
    for _ in range(sizes.repeats):
        t0 = time.perf_counter()
        empty_kernel[1, 32](*arrays)
        cuda.synchronize()
        sync.append(time.perf_counter() - t0)
    value = statistics.median(per_launch)
    method = (
        f"empty Numba kernel with 6 array arguments launched {sizes.launches} times back to back between two CUDA "
        f"events, time per launch (median of {len(per_launch)}); also: no arguments "
        f"{statistics.median(per_launch_noargs) * 1e6:.3g} us, one launch between events "
        f"{statistics.median(bracketed) * 1e6:.3g} us, launch + synchronize (wall clock) "
        f"{statistics.median(sync) * 1e6:.3g} us"
    )
    return Ceiling("kernel_launch_s", value, method, per_launch, float(sizes.launches), {
        "per_launch_noargs_s": per_launch_noargs, "one_launch_between_events_s": bracketed,
        "launch_and_sync_wall_s": sync,
    })


def _torch_cuda():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def measure_tensor(sizes: Sizes) -> tuple[list[Ceiling], list[str]]:
    """bf16, fp16 and tf32 matmul rates through torch (cuBLAS), or a note saying why not."""
    torch = _torch_cuda()
    if torch is None or SIMULATOR:
        return [], ["tensor-core rates not measured: torch with CUDA is not importable (datasheet values kept)"]
    n = sizes.matmul_n
    out = []
    old_tf32 = torch.backends.cuda.matmul.allow_tf32
    try:
        for unit, dtype in (("bf16_tensor", torch.bfloat16), ("fp16_tensor", torch.float16),
                            ("tf32_tensor", torch.float32)):
            torch.backends.cuda.matmul.allow_tf32 = unit == "tf32_tensor"
            gen = torch.Generator(device="cuda").manual_seed(0)
            a = torch.randn(n, n, device="cuda", dtype=dtype, generator=gen)
            b = torch.randn(n, n, device="cuda", dtype=dtype, generator=gen)
            c = torch.empty(n, n, device="cuda", dtype=dtype)
            for _ in range(sizes.warmup):
                torch.matmul(a, b, out=c)
            torch.cuda.synchronize()
            samples = []
            for _ in range(sizes.repeats):
                start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                torch.matmul(a, b, out=c)
                stop.record()
                stop.synchronize()
                samples.append(start.elapsed_time(stop) * 1e-3)
            flops = 2.0 * n**3
            precision = "fp32 inputs with allow_tf32" if unit == "tf32_tensor" else str(dtype).replace("torch.", "")
            out.append(Ceiling(
                f"peak_flops_per_s.{unit}", flops / statistics.median(samples),
                f"torch.matmul {n}x{n}x{n} ({precision}, random normal inputs, cuBLAS), 2n^3 FLOP, "
                f"CUDA events, median of {sizes.repeats} after {sizes.warmup} warm-up", samples, flops))
            del a, b, c
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old_tf32
    return out, []


# ---------------------------------------------------------------- the device and the spec


# GPU name (lower case; every listed substring present) -> bundled datasheet spec, first match wins.
BASE_BY_GPU_NAME = (
    (("h200",), "h200-sxm-141gb"),
    (("h100", "pcie"), "h100-pcie-80gb"),
    (("h100",), "h100-sxm5-80gb"),
    (("a100", "40gb"), "a100-sxm4-40gb"),
    (("a100",), "a100-sxm4-80gb"),
    (("l4",), "l4"),
    (("4090",), "rtx-4090"),
    (("v100",), "v100-sxm2-32gb"),
    (("mi300x",), "mi300x"),
)


def default_base(gpu_name: str) -> str:
    """The bundled datasheet spec for a device name ("NVIDIA H100 80GB HBM3" -> h100-sxm5-80gb)."""
    from hardware_specs import list_gpus

    low = gpu_name.lower()
    for needles, base in BASE_BY_GPU_NAME:
        if all(s in low for s in needles):
            if base not in list_gpus():
                raise ValueError(f"--base: GPU {gpu_name!r} maps to {base!r}, which is not bundled; "
                                 f"pass --base NAME (bundled: {', '.join(list_gpus())})")
            return base
    raise ValueError(f"--base: no bundled spec known for GPU {gpu_name!r}; pass --base NAME "
                     f"(bundled: {', '.join(list_gpus())})")


def device_info() -> dict:
    """Name, driver and runtime versions, library versions of the current device and process."""
    import numba
    import numpy

    info: dict = {"numba": numba.__version__, "numpy": numpy.__version__}
    try:
        import numba_cuda
        info["numba_cuda"] = numba_cuda.__version__
    except ImportError:
        info["numba_cuda"] = "not installed"
    torch = _torch_cuda()
    try:
        import torch as _t
        info["torch"] = _t.__version__
    except ImportError:
        info["torch"] = None
    if SIMULATOR:
        info.update(gpu="CUDA simulator", driver="simulator", cuda_runtime="simulator", sm_count=1)
        return info
    dev = cuda.get_current_device()
    name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
    info["gpu"] = name
    info["sm_count"] = int(dev.MULTIPROCESSOR_COUNT)
    info["clock_Hz"] = float(dev.CLOCK_RATE) * 1e3
    info["compute_capability"] = ".".join(str(x) for x in dev.compute_capability)
    try:
        from numba.cuda.cudadrv.driver import driver
        api = driver.get_version()
        info["driver_api"] = f"{api[0]}.{api[1]}"
    except Exception:  # noqa: BLE001 - versions are best effort
        info["driver_api"] = "unknown"
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        info["driver"] = smi.stdout.strip().splitlines()[0] + f" (CUDA driver API {info['driver_api']})"
    except Exception:  # noqa: BLE001
        info["driver"] = f"CUDA driver API {info['driver_api']}"
    try:
        rt = cuda.runtime.get_version()
        info["cuda_runtime"] = f"{rt[0]}.{rt[1]}"
    except Exception:  # noqa: BLE001
        info["cuda_runtime"] = "unknown"
    if torch is not None:
        info["torch_cuda"] = torch.version.cuda
    return info


def run_calibration(base_spec, sizes: Sizes = Sizes(), with_torch: bool = True, info: dict | None = None,
                    log=lambda msg: None) -> tuple[list[Ceiling], dict, list[str]]:
    """Measure every ceiling; returns (ceilings, device info, notes)."""
    info = info or device_info()
    sms = info.get("sm_count") or base_spec.sm_count
    ceilings = []
    log(f"calibrating on {info['gpu']} ({sms} SMs) against {base_spec.name}")
    ceilings.append(measure_hbm(sizes, sms))
    ceilings.append(measure_l2(sizes, sms, base_spec.l2_bytes))
    ceilings.append(measure_fp32(sizes, sms))
    ceilings.append(measure_exp(sizes, sms, base_spec.boost_clock_Hz, base_spec.sm_count))
    ceilings.append(measure_tiled_fp32(sizes))
    notes = []
    if with_torch:
        tensor, notes = measure_tensor(sizes)
        ceilings += tensor
    else:
        notes.append("tensor-core rates not measured (--no-torch): datasheet values kept")
    ceilings.append(measure_launch(sizes))
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
                  log=lambda msg: None) -> dict:
    """Measure, write the calibrated spec (YAML) and the raw samples (JSON); return a summary."""
    from hardware_specs import load_gpu, spec_to_yaml

    t0 = time.perf_counter()
    info = device_info()
    base = base or default_base(info["gpu"])
    base_spec = load_gpu(base)
    ceilings, info, notes = run_calibration(base_spec, sizes, with_torch, info, log)
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
