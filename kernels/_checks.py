"""Argument checks shared by the public kernel functions.

Each error names the argument, the value it got and what is allowed.
"""
from __future__ import annotations

import numpy as np

from ._cuda import HEAD_DIMS, INPUT_DTYPES, default_scale, is_device_array, smem_limit_bytes


def is_device(x) -> bool:
    return is_device_array(x)


def _array(name: str, x):
    if isinstance(x, np.ndarray) or is_device_array(x):
        return x
    raise TypeError(f"{name} must be a numpy array or a numba device array, got {type(x).__name__}")


def _dtype(name: str, x) -> np.dtype:
    dt = np.dtype(x.dtype)
    if dt not in INPUT_DTYPES:
        allowed = ", ".join(str(d) for d in INPUT_DTYPES)
        raise TypeError(f"{name}.dtype is {dt}; allowed: {allowed}")
    return dt


def _contiguous(name: str, x) -> None:
    if is_device_array(x) and not x.is_c_contiguous():
        raise ValueError(f"{name} must be C-contiguous on the device (strides {x.strides})")


def _head_dim(name: str, d: int) -> None:
    if d not in HEAD_DIMS:
        raise ValueError(f"{name} has head_dim {d}; supported head_dim: {', '.join(map(str, HEAD_DIMS))}")


def attention_inputs(q, k, v, *, same_heads: bool = False):
    """Check (B, H, N, d) queries and (B, Hkv, N, d) keys/values; return (B, H, N, d)."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        _array(name, x)
        if x.ndim != 4:
            raise ValueError(f"{name} must have 4 dimensions (batch, heads, seq, head_dim), got shape {x.shape}")
        _contiguous(name, x)
    dts = [_dtype(n, x) for n, x in (("q", q), ("k", k), ("v", v))]
    if len(set(dts)) != 1:
        raise TypeError(f"q, k, v must share one dtype, got {dts[0]}, {dts[1]}, {dts[2]}")
    B, H, N, d = q.shape
    if k.shape != v.shape:
        raise ValueError(f"k and v must have the same shape, got k {k.shape} and v {v.shape}")
    Bk, Hkv, Nk, dk = k.shape
    if (Bk, Nk, dk) != (B, N, d):
        raise ValueError(
            f"k shape {k.shape} does not match q shape {q.shape}: batch, seq and head_dim must agree"
        )
    if Hkv < 1 or H % Hkv:
        raise ValueError(f"q has {H} heads and k/v {Hkv}: heads must be a multiple of kv_heads")
    if same_heads and Hkv != H:
        raise ValueError(f"k/v must have as many heads as q here (got {Hkv} and {H}): grouped-query "
                         "attention is not supported by this kernel")
    if N < 1:
        raise ValueError(f"seq length must be at least 1, got {N}")
    _head_dim("q", d)
    return B, H, N, d


def same_shape(name: str, x, shape, dtype=None) -> None:
    _array(name, x)
    _contiguous(name, x)
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(x.shape)}, expected {tuple(shape)}")
    if dtype is not None and np.dtype(x.dtype) != np.dtype(dtype):
        raise TypeError(f"{name}.dtype is {np.dtype(x.dtype)}, expected {np.dtype(dtype)}")


def positive_int(name: str, value) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def config(config_cls, block_r, block_c, head_dim, num_threads):
    """Build a kernel's ``config_cls(block_r, block_c, head_dim, num_threads)`` and check it
    against the register tiling (``cfg.check()``) and the device's shared memory."""
    block_r = positive_int("block_r", block_r)
    block_c = positive_int("block_c", block_c)
    num_threads = positive_int("num_threads", num_threads)
    if num_threads > 1024:
        raise ValueError(f"num_threads={num_threads}: a block has at most 1024 threads")
    for name, val in (("block_r", block_r), ("block_c", block_c)):
        if val % 4:
            raise ValueError(f"{name}={val} must be a multiple of 4")
    cfg = config_cls(block_r, block_c, head_dim, num_threads)
    try:
        cfg.check()
    except ValueError as err:
        raise ValueError(f"block_r={block_r}, block_c={block_c}, head_dim={head_dim}, "
                         f"num_threads={num_threads}: {err}") from None
    need, limit = cfg.smem_bytes(), smem_limit_bytes()
    if need > limit:
        raise ValueError(
            f"block_r={block_r}, block_c={block_c} with head_dim={head_dim} need {need} bytes of "
            f"shared memory per block; the device allows {limit} (opt-in maximum). Use smaller blocks."
        )
    return cfg


def window(value, causal: bool) -> int:
    value = positive_int("window", value)
    if not causal:
        raise ValueError(f"window={value} is a causal sliding window (key j in (i - window, i]); "
                         "pass causal=True with it")
    return value


def scale(head_dim: int, value) -> float:
    if value is not None and not np.isfinite(float(value)):
        raise ValueError(f"scale must be a finite number, got {value!r}")
    return default_scale(head_dim, value)
