"""kernels/microbench.py and kernels/timing.py in numba's CUDA simulator: each microkernel
computes what it should. Timings in the simulator mean nothing and are not checked beyond
being positive.
"""
import numpy as np
from numba import cuda

from kernels import microbench as mb
from kernels.timing import time_launches

BLOCKS, THREADS = 2, 32


def test_copy_kernel_copies_exactly():
    rng = np.random.default_rng(1)
    n = 1000  # not a multiple of blocks x threads x UNROLL: the tail is exercised
    src = rng.integers(0, 2**63, n, dtype=np.uint64)
    d_src, d_dst = cuda.to_device(src), cuda.to_device(np.zeros(n, dtype=np.uint64))
    mb.copy_kernel[BLOCKS, THREADS](d_src, d_dst)
    np.testing.assert_array_equal(d_dst.copy_to_host(), src)


def test_fill_kernel_pattern():
    d = cuda.device_array(300, dtype=np.uint64)
    mb.fill_kernel[BLOCKS, THREADS](d)
    np.testing.assert_array_equal(d.copy_to_host(), np.arange(300, dtype=np.uint64) * np.uint64(2654435761))


def test_l2_kernel_reads_every_word_every_pass():
    data = (np.arange(777, dtype=np.uint64) % 13) + 1
    out = cuda.device_array(BLOCKS, dtype=np.uint64)
    passes = 3
    mb.l2_read_kernel[BLOCKS, THREADS](cuda.to_device(data), np.int64(passes), out)
    assert int(out.copy_to_host().sum()) == passes * int(data.sum())


def test_fma_kernel_matches_the_recurrence_in_numpy():
    iters = 3
    out = cuda.device_array(BLOCKS * THREADS, dtype=np.float32)
    mb.fma_kernel[BLOCKS, THREADS](cuda.to_device(mb.SEED), mb.FMA_MUL, mb.FMA_ADD, np.int64(iters), out)
    x = mb.SEED.astype(np.float64)
    for _ in range(iters * mb.STEPS_PER_ITER):
        x = x * float(mb.FMA_MUL) + float(mb.FMA_ADD)
    np.testing.assert_allclose(out.copy_to_host(), np.full(BLOCKS * THREADS, x.sum()), rtol=1e-6)


def test_exp_kernel_matches_the_recurrence_in_numpy():
    iters = 2
    out = cuda.device_array(BLOCKS * THREADS, dtype=np.float32)
    mb.exp_kernel[BLOCKS, THREADS](cuda.to_device(mb.SEED), np.int64(iters), out)
    x = mb.SEED.astype(np.float64)
    for _ in range(iters * mb.STEPS_PER_ITER):
        x = np.exp(-x)
    np.testing.assert_allclose(out.copy_to_host(), np.full(BLOCKS * THREADS, x.sum()), rtol=1e-5)
    # The chains head for the fixed point of x = exp(-x) (the omega constant), never overflow.
    assert abs(x[0] - 0.5671432904) < 0.1


def test_time_launches_gives_positive_samples():
    samples = time_launches(lambda: mb.empty_kernel_noargs[1, 1](), repeats=3, warmup=1)
    assert len(samples) == 3 and all(s > 0 for s in samples)
