"""Measure the ceilings the roofline uses on the GPU at hand.

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


The microkernels are ``kernels.microbench``'s, the timer ``kernels.timing.time_launches``;
they run in numba's CUDA simulator at tiny sizes (``Sizes.tiny()``), where the events
carry no time. ``costmodel.validation.calibrate`` turns the ceilings into a spec.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import numpy as np
from numba import cuda

from costmodel.validation.device import time_torch, torch_cuda
from kernels._cuda import SIMULATOR
from kernels.microbench import (CHAINS, FMA_ADD, FMA_MUL, SEED, STEPS_PER_ITER, THREADS, UNROLL, WORD_BYTES,
                                copy_kernel, empty_kernel, empty_kernel_noargs, exp_kernel, fill_kernel, fma_kernel,
                                l2_read_kernel)
from kernels.timing import time_launches


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
    torch = torch_cuda()
    if torch is None or SIMULATOR:
        return None
    n = sizes.copy_bytes // 4
    src = torch.randn(n, device="cuda", dtype=torch.float32)
    dst = torch.empty_like(src)
    samples = time_torch(lambda: dst.copy_(src), sizes.repeats, sizes.warmup)
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
    their FP32 efficiency (``costmodel.validation.predict.numba_fp32_efficiency``)."""
    from kernels._cuda import reused_buffers
    from kernels.matmul import MatmulTiles, matmul

    cfg = MatmulTiles()
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
    from kernels._cuda import reused_buffers, sm_count
    from kernels.matmul import matmul

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


def measure_tensor(sizes: Sizes) -> tuple[list[Ceiling], list[str]]:
    """bf16, fp16 and tf32 matmul rates through torch (cuBLAS), or a note saying why not."""
    torch = torch_cuda()
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
            samples = time_torch(lambda: torch.matmul(a, b, out=c), sizes.repeats, sizes.warmup)
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
