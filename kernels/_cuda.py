"""What every kernel module shares: compile options, launching with dynamic shared
memory, moving arrays between host and device, and poisoning outputs in checks.

Conventions the kernels rely on (see costmodel/validation/NOTES.md for how they were checked in PTX):

- Index arithmetic is unsigned (``U = np.uint32`` casts). numba wraps negative
  indices for signed integer types, and that select per access stops NVVM from
  proving alignment: with unsigned indices and 16-byte-aligned shared memory,
  four consecutive float32 reads become one ``ld.shared.v4.f32``.
- Shared memory is one dynamic, 16-byte-aligned float32 array per kernel,
  carved into tiles at compile-time offsets that are multiples of 4 words. A
  launch asking for more than the 48 KB a block gets by default first raises
  the kernel's ``MAX_DYNAMIC_SHARED_SIZE_BYTES`` attribute (the CUDA opt-in).
- Fast math without the no-NaN / no-inf assumptions: masked scores are -inf and
  the kernels test for it; ``afn`` still maps ``math.exp2`` to ``ex2.approx``.
"""
from __future__ import annotations

import contextlib
import functools
import math

import numpy as np
from numba import cuda
from numba.cuda.core import config as _numba_config

SIMULATOR = bool(_numba_config.ENABLE_CUDASIM)

# numba's simulator refuses an alignment argument; on the device it must be 16.
SMEM_ALIGN = None if SIMULATOR else 16

FASTMATH = {"contract", "afn", "arcp", "nsz", "reassoc"}

U = np.uint32
NEG_INF = np.float32(-np.inf)
LOG2E = 1.4426950408889634  # log2(e): scores are kept in base 2, exp2 is one MUFU op
LN2 = np.float32(0.6931471805599453)

DEFAULT_SMEM_BYTES = 48 * 1024  # a block's shared memory without the opt-in
# Largest dynamic shared memory a block may opt in to on sm_90 (H100/H200), from the
# CUDA C++ Programming Guide, "Technical Specifications per Compute Capability".
# Used only where the device cannot be asked (the simulator).
SM90_OPTIN_SMEM_BYTES = 227 * 1024

INPUT_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))
HEAD_DIMS = (32, 64, 128)


def kernel_jit(max_registers=None):
    """``cuda.jit`` for a kernel, with the options the simulator does not take dropped."""
    if SIMULATOR:
        return cuda.jit(fastmath=FASTMATH)
    opts = dict(fastmath=FASTMATH)
    if max_registers:
        opts["max_registers"] = int(max_registers)
    return cuda.jit(**opts)


def smem_limit_bytes() -> int:
    """Dynamic shared memory one block may use on the current device, opt-in included."""
    if SIMULATOR:
        return SM90_OPTIN_SMEM_BYTES
    dev = cuda.get_current_device()
    return int(dev.MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)


def sm_count() -> int:
    """Streaming multiprocessors of the current device (1 in the simulator)."""
    if SIMULATOR:
        return 1
    return int(cuda.get_current_device().MULTIPROCESSOR_COUNT)


_optin_done: set = set()


def _raise_smem_limit(kernel_obj, nbytes: int) -> None:
    """Let one compiled kernel launch with ``nbytes`` of dynamic shared memory."""
    from numba.cuda.cudadrv.driver import binding, driver

    cufunc = kernel_obj._codelibrary.get_cufunc()
    key = (id(cufunc), nbytes)
    if key in _optin_done:
        return
    attr = binding.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
    driver.cuKernelSetAttribute(attr, nbytes, cufunc.handle, cufunc.device.id)
    _optin_done.add(key)


def launch(kernel, grid, block, smem_bytes: int, *args) -> None:
    """Launch ``kernel[grid, block, 0, smem_bytes](*args)``, opting in past 48 KB.

    Past 48 KB, a pre-launch callback (numba-cuda's hook, run with the compiled
    kernel) raises that kernel's dynamic shared-memory limit first.
    """
    smem_bytes = int(smem_bytes)
    config = kernel[grid, block, 0, smem_bytes]
    if not SIMULATOR and smem_bytes > DEFAULT_SMEM_BYTES:
        config.pre_launch_callbacks.append(lambda kobj, _cfg: _raise_smem_limit(kobj, smem_bytes))
    config(*args)


class BoundLaunch:
    """One launch with its grid, block, shared memory and arguments fixed once.

    Calling it issues ``cuLaunchKernel`` with a parameter array built at bind time, so the
    host's work per call is the driver call alone. numba's own launch (``launch`` above)
    types every argument, marshals each array's descriptor and builds a launch config on
    every call: an empty six-array kernel took 58 us a launch that way on the H200 and
    7.1 us bound (back to back, 2026-12-02, costmodel/validation/bench_decode.py). The
    arrays must stay alive and in place while it is in use; the
    kernel reads whatever they hold when it runs, as a CUDA graph's node would.

    In the simulator, and if the driver path cannot be set up, it falls back to ``launch``
    (``raw`` says which).
    """

    def __init__(self, kernel, grid, block, smem_bytes: int, *args):
        self.grid = tuple(grid) if isinstance(grid, tuple) else (int(grid),)
        self.block = int(block)
        self.smem_bytes = int(smem_bytes)
        self._kernel, self._args = kernel, args
        self.raw, self.why_not_raw = False, "simulator" if SIMULATOR else ""
        if not SIMULATOR:
            try:
                self._bind()
                self.raw = True
            except Exception as exc:  # noqa: BLE001 - numba's launch still works; say why
                self.why_not_raw = f"{type(exc).__name__}: {exc}"

    def _bind(self) -> None:
        import ctypes

        from cuda.bindings import driver as drv

        kobj = self._kernel.compile(tuple(self._kernel.typeof_pyval(a) for a in self._args))
        if self.smem_bytes > DEFAULT_SMEM_BYTES:
            _raise_smem_limit(kobj, self.smem_bytes)
        flat: list = []
        for ty, val in zip(kobj.argument_types, self._args):
            kobj._prepare_args(ty, val, 0, [], flat)  # numba's own marshalling, done once
        # Array descriptors are flattened to pointer-sized integers; scalars are ctypes already.
        self._values = [ctypes.c_int64(v) if isinstance(v, int) else v for v in flat]
        self._params = (ctypes.c_void_p * len(self._values))(*[ctypes.addressof(v) for v in self._values])
        self._params_addr = ctypes.addressof(self._params)
        self._func = kobj._codelibrary.get_cufunc().handle  # a CUkernel, which cuLaunchKernel takes
        self._stream = drv.CUstream(0)
        self._drv = drv
        grid = self.grid + (1,) * (3 - len(self.grid))
        self._dims = (*grid, self.block, 1, 1)

    def __call__(self) -> None:
        if not self.raw:
            launch(self._kernel, self.grid, self.block, self.smem_bytes, *self._args)
            return
        (err,) = self._drv.cuLaunchKernel(self._func, *self._dims, self.smem_bytes, self._stream,
                                          self._params_addr, 0)
        if err != self._drv.CUresult.CUDA_SUCCESS:
            _check_driver(err, "cuLaunchKernel")


def _check_driver(err, what: str) -> None:
    from cuda.bindings import driver as drv

    if err != drv.CUresult.CUDA_SUCCESS:
        raise RuntimeError(f"{what} failed: {err}")


def compiled_kernels(kernel) -> list:
    """The compiled variants of a dispatcher (empty in the simulator)."""
    if SIMULATOR:
        return []
    return list(kernel.overloads.values())


# ---------------------------------------------------------------------------
# Arrays in and out

def is_device_array(x) -> bool:
    if SIMULATOR:
        from numba.cuda.simulator.cudadrv.devicearray import is_cuda_ndarray

        return is_cuda_ndarray(x)
    return cuda.is_cuda_array(x)


def as_device(x):
    """A device array for ``x`` (numpy arrays are copied to the device, contiguous)."""
    if is_device_array(x):
        return x
    return cuda.to_device(np.ascontiguousarray(x))


def to_caller(x_dev, like_host: bool):
    """Return ``x_dev`` as numpy when the caller passed numpy, else as is."""
    return x_dev.copy_to_host() if like_host else x_dev


_poison = False


@contextlib.contextmanager
def poisoned_outputs():
    """Inside this block every output and intermediate buffer starts as NaN.

    Checks use it so that an element a kernel never writes fails the comparison.
    """
    global _poison
    old, _poison = _poison, True
    try:
        yield
    finally:
        _poison = old


_reuse: dict | None = None


@contextlib.contextmanager
def reused_buffers():
    """Inside this block, buffers with the same tag, shape and dtype are allocated once.

    For timing loops: allocation (cudaMalloc) stays out of the measured time. The
    returned outputs alias each other across calls.
    """
    global _reuse
    old, _reuse = _reuse, {}
    try:
        yield
    finally:
        _reuse = old


def empty(shape, dtype, tag: str):
    """Uninitialised device array, NaN-filled under ``poisoned_outputs``.

    ``tag`` names the buffer (``"o"``, ``"lse"``, ...) for ``reused_buffers``.
    """
    if _poison:
        return _nan_filled(shape, dtype)
    if _reuse is not None:
        key = (tag, tuple(shape), np.dtype(dtype).str)
        if key not in _reuse:
            _reuse[key] = cuda.device_array(shape, dtype=dtype)
        return _reuse[key]
    return cuda.device_array(shape, dtype=dtype)


@functools.lru_cache(maxsize=None)
def _fill_kernel():
    @cuda.jit
    def fill(out, value, count):
        i = U(cuda.blockIdx.x) * U(cuda.blockDim.x) + U(cuda.threadIdx.x)
        if i < U(count):
            out[i] = value

    return fill


def _nan_filled(shape, dtype):
    """A device array of NaN, filled on the device (no host copy of its size)."""
    arr = cuda.device_array(shape, dtype=dtype)
    count = int(np.prod(shape))
    if count:
        flat = arr.reshape(count)
        _fill_kernel()[(count + 255) // 256, 256](flat, np.float32(np.nan), np.int64(count))
    return arr


def default_scale(head_dim: int, scale) -> float:
    return 1.0 / math.sqrt(head_dim) if scale is None else float(scale)
