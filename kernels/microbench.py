"""Kernels the measuring harness launches that compute no attention.

- The calibration microkernels (``costmodel.validation.ceilings`` times them): a word
  copy (HBM bandwidth), repeated ``ld.global.cg`` reads of a working set smaller than L2
  (L2 bandwidth), eight independent FMA chains and eight ``exp`` chains per thread (FP32
  and SFU rates), an empty kernel with six array arguments (launch cost).
- Two empty marker kernels, launched around each case profiled by Nsight Compute so
  that its kernel list splits back into cases (``costmodel.validation.ncu``).
- A device-side fill with uniform unit-variance numbers (inputs of the kernel sweep,
  where drawing 10^8 normals on the host would take longer than the runs).

Every kernel also runs in numba's CUDA simulator at tiny sizes; the tests check what
they compute, not how fast. Imports nothing of ours but kernels/_cuda.py.
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda, uint64

from ._cuda import SIMULATOR, U

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


# Inputs of the FMA and exp chains: x <- x * FMA_MUL + FMA_ADD stays near its start for
# thousands of steps, x <- exp(-x) converges to 0.567...; neither overflows.
FMA_MUL = np.float32(0.999999)
FMA_ADD = np.float32(1e-6)
SEED = np.linspace(0.1, 0.8, CHAINS, dtype=np.float32)


# ---------------------------------------------------------------- Nsight Compute markers


@cuda.jit
def validate_mark_begin():
    """Empty: its launch tells, in Nsight Compute's list of kernels, where a case begins."""


@cuda.jit
def validate_mark_end():
    """Empty: where a case ends."""


# ---------------------------------------------------------------- inputs


@cuda.jit
def uniform_fill(out, seed, count):
    """Uniform numbers with unit variance from a hash of (seed, index)."""
    i = cuda.grid(1)
    if i < count:
        x = U(i) * U(2654435761) + U(seed) * U(97531)
        x ^= x >> U(16)
        x *= U(2246822519)
        x ^= x >> U(13)
        x *= U(3266489917)
        x ^= x >> U(16)
        u = np.float32(x & U(0xFFFFFF)) * np.float32(1.0 / 16777216.0)
        out[i] = (u - np.float32(0.5)) * np.float32(3.4641016)  # sqrt(12)
