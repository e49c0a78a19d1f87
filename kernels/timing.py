"""The CUDA-event timer of numba launches: warm-up, medians, a hold kernel, L2 rotation.

``time_launches(launch, repeats, warmup)`` brackets each call of ``launch()`` by two
events (optionally behind a sleeping kernel, so the samples hold GPU time alone); it is
the one timer (torch's calls are timed by ``costmodel.validation.device.time_torch``).
``time_kernel(fn, *args)`` runs ``fn(*args)`` (any callable that launches device work)
through it with the sweep's conveniences. Several calls may share one bracket
(``inner``) so that launch gaps of microsecond kernels are amortised; each sample
is the bracket's time divided by ``inner``. When ``input_sets`` is given the calls
rotate over those argument tuples, so that inputs smaller than the L2 cache are not
served from it on every repeat (``rotation_count`` says how many sets to make).
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field

import numpy as np
from numba import cuda

from ._cuda import SIMULATOR, compiled_kernels


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


@dataclass
class Timing:
    median_s: float
    samples_s: list[float] = field(default_factory=list)
    inner: int = 1

    @property
    def min_s(self) -> float:
        return min(self.samples_s)


def time_kernel(fn, *args, warmup: int = 2, repeats: int = 10, input_sets=None, inner: int | None = None,
                min_bracket_s: float = 1e-3, budget_s: float | None = None) -> Timing:
    """Median time of one call of ``fn`` in seconds: ``time_launches`` over brackets of
    ``inner`` calls, each sample the bracket's time / inner.

    ``inner=None`` picks the calls per bracket so a bracket lasts ``min_bracket_s``
    (from the warm-up time, at most 64). ``budget_s`` caps ``repeats`` so that the
    samples take about that long (at least 3 samples).
    """
    sets = list(input_sets) if input_sets else [args]
    calls = 0

    def call():
        nonlocal calls
        fn(*sets[calls % len(sets)])
        calls += 1

    first_s = time_launches(call, 1, max(1, warmup) - 1)[0]  # the last warm-up call, timed
    if SIMULATOR:  # events carry no time there: one call per bracket, the budget as if a call took 1 s
        inner, first_s = 1, 1.0
    if inner is None:
        inner = int(min(64, max(1, math.ceil(min_bracket_s / max(first_s, 1e-9)))))
    if budget_s is not None:
        repeats = int(max(3, min(repeats, budget_s // max(first_s * inner, 1e-9))))

    def bracket():
        for _ in range(inner):
            call()

    samples = [s / inner for s in time_launches(bracket, repeats, 0)]
    return Timing(statistics.median(samples), samples, inner)


def rotation_count(bytes_per_set: int, l2_bytes: int, cap: int = 8) -> int:
    """Input sets to rotate over so that consecutive calls miss the L2: enough sets
    to cover twice the L2, 1 when a single set already does, at most ``cap``."""
    if bytes_per_set >= 2 * l2_bytes:
        return 1
    return int(min(cap, math.ceil(2 * l2_bytes / max(bytes_per_set, 1))))


def l2_bytes() -> int:
    """L2 cache size of the current device (0 in the simulator)."""
    if SIMULATOR:
        return 0
    return int(cuda.get_current_device().L2_CACHE_SIZE)


def kernel_resources(name: str, dispatcher, dynamic_smem_bytes: int | None = None) -> list[dict]:
    """Registers, shared and local memory of each compiled variant of a kernel.

    numba-cuda 0.30's dispatcher gives ``get_regs_per_thread`` and friends per
    signature; static shared memory is reported by the driver, the dynamic shared
    memory the launch asks for is passed in.
    """
    out = []
    for kern in compiled_kernels(dispatcher):
        out.append(dict(
            kernel=name,
            signature=str(kern.argument_types),
            regs_per_thread=int(kern.regs_per_thread),
            static_smem_bytes=int(kern.shared_mem_per_block),
            dynamic_smem_bytes=dynamic_smem_bytes,
            local_bytes_per_thread=int(kern.local_mem_per_thread),
            max_threads_per_block=int(kern.max_threads_per_block),
        ))
    return out
