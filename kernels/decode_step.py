"""The decode kernels' callers: checks, buffers and launches of one decode step.

``decode_attention`` and ``flash_decoding`` (the public API) build a ``DecodeStep`` per
call and launch it through numba; ``prepare_decode`` builds one to call again and again,
its launches bound once (``_cuda.BoundLaunch``): a call is then the launches alone. The
schedules and the kernel body are in ``decode``.
"""
from __future__ import annotations

import numpy as np

from . import _checks
from ._cuda import LOG2E, BoundLaunch, as_device, empty, launch, to_caller
from .decode import DecodeTiles, build_combine, build_kernel, default_num_splits, default_threads


def _decode_inputs(q, k_cache, v_cache, num_threads, scale, heads_per_block=1):
    for name, x in (("q", q), ("k_cache", k_cache), ("v_cache", v_cache)):
        _checks._array(name, x)
        if x.ndim != 4:
            raise ValueError(f"{name} must have 4 dimensions, got shape {x.shape}")
    if q.shape[2] != 1:
        raise ValueError(f"q must have shape (batch, heads, 1, head_dim) for decoding, got {q.shape}")
    B, H, _, d = q.shape
    Bk, Hkv, L, dk = k_cache.shape
    if k_cache.shape != v_cache.shape:
        raise ValueError(f"k_cache {k_cache.shape} and v_cache {v_cache.shape} must have the same shape")
    if (Bk, dk) != (B, d):
        raise ValueError(f"k_cache shape {k_cache.shape} does not match q shape {q.shape}: "
                         "batch and head_dim must agree")
    if L < 1:
        raise ValueError(f"k_cache {k_cache.shape} holds no keys: the cache length must be at least 1")
    if H % Hkv:
        raise ValueError(f"q has {H} heads and the cache {Hkv}: heads must be a multiple of kv_heads")
    dts = {np.dtype(_checks._dtype(n, x)) for n, x in (("q", q), ("k_cache", k_cache), ("v_cache", v_cache))}
    if len(dts) != 1:
        raise TypeError(f"q, k_cache, v_cache must share one dtype, got {sorted(map(str, dts))}")
    for name, x in (("q", q), ("k_cache", k_cache), ("v_cache", v_cache)):
        _checks._contiguous(name, x)
    _checks._head_dim("q", d)
    rows = _checks.positive_int("heads_per_block", heads_per_block)
    if (H // Hkv) % rows:
        raise ValueError(f"heads_per_block={rows} must divide the {H // Hkv} query heads per kv head "
                         f"(q has {H} heads, the cache {Hkv}): a block serves query heads of one kv head")
    cfg = DecodeTiles(d, _checks.positive_int("num_threads", default_threads(d) if num_threads is None
                                               else num_threads), np.dtype(q.dtype).itemsize, rows)
    try:
        cfg.check()
    except ValueError as err:
        raise ValueError(f"decode: {err}") from None
    return B, H, Hkv, L, d, cfg, _checks.scale(d, scale)


class DecodeStep:
    """One decode step, checked, allocated and (on the device) bound to its launches once.

    ``decode_attention`` and ``flash_decoding`` build one per call; a caller that runs
    the same step again (a decode loop, a timing loop) builds it once with
    ``prepare_decode`` and calls it: each call is then the kernel launches alone
    (``_cuda.BoundLaunch``), with no argument checks, reshapes, allocations or numba
    dispatch. The step reads its device arrays ``q``, ``k_cache``, ``v_cache`` when it
    runs: write the next query into ``q`` and the new keys into the caches in place.
    The cache length is fixed when the step is built. Outputs: ``o`` (B, H, 1, d) in
    q's dtype and ``lse`` (B, H, 1) float32, the same buffers every call.
    """

    def __init__(self, q, k_cache, v_cache, num_splits=None, scale=None, num_threads=None, heads_per_block=1,
                 bind=True):
        self.host = not _checks.is_device(q)
        B, H, Hkv, L, d, cfg, scale = _decode_inputs(q, k_cache, v_cache, num_threads, scale, heads_per_block)
        T = cfg.keys_per_tile
        blocks = B * H // cfg.rows  # blocks per split: one per R query heads of one kv head
        if num_splits is None:
            num_splits = default_num_splits(blocks, L, T)
        self.num_splits = S = _checks.positive_int("num_splits", num_splits)
        chunk = -(-(-(-L // S)) // T) * T  # ceil(L / S) rounded up to whole tiles
        self.config = cfg
        self.q, self.k_cache, self.v_cache = (as_device(x) for x in (q, k_cache, v_cache))
        self.o = empty((B, H, 1, d), q.dtype, "o")
        self.lse = empty((B, H, 1), np.float32, "lse")
        word = np.float32 if cfg.pack == 1 else np.uint32  # fp16 caches are read as pairs, one word each
        args = (self.q.reshape(B * H, d), self.k_cache.reshape(B * Hkv, L, d).view(word),
                self.v_cache.reshape(B * Hkv, L, d).view(word))
        tail = (np.int32(L), np.int32(chunk), np.int32(H // Hkv), np.float32(scale * LOG2E))
        o2, lse1 = self.o.reshape(B * H, d), self.lse.reshape(B * H)
        if S == 1:
            self.launches = [(build_kernel(cfg, True), (1, blocks), cfg.num_threads, cfg.smem_bytes(),
                              *args, o2, lse1, *tail)]
        else:
            o_part = empty((B * H, S, d), np.float32, "o_part")
            lse_part = empty((B * H, S), np.float32, "lse_part")
            self.launches = [(build_kernel(cfg, False), (S, blocks), cfg.num_threads, cfg.smem_bytes(),
                              *args, o_part, lse_part, *tail),
                             (build_combine(S), (B * H,), d, 0, o_part, lse_part, o2, lse1)]
        self.bound = [BoundLaunch(*x) for x in self.launches] if bind else None

    def __call__(self):
        """Run the step; returns ``(o, lse)`` (device arrays)."""
        if self.bound is None:
            for x in self.launches:
                launch(*x)
        else:
            for x in self.bound:
                x()
        return self.o, self.lse


def prepare_decode(q, k_cache, v_cache, num_splits=1, scale=None, *, num_threads=None,
                   heads_per_block=1) -> DecodeStep:
    """A ``DecodeStep`` to call repeatedly: ``num_splits=1`` is ``decode_attention``, more
    (or None, the default count) is ``flash_decoding``. numpy inputs are copied to the
    device once (the step's ``q``, ``k_cache``, ``v_cache``); outputs stay on the device."""
    return DecodeStep(q, k_cache, v_cache, num_splits, scale, num_threads, heads_per_block)


def _run(q, k_cache, v_cache, num_splits, num_threads, scale, heads_per_block=1):
    step = DecodeStep(q, k_cache, v_cache, num_splits, scale, num_threads, heads_per_block, bind=False)
    o, lse = step()
    return to_caller(o, step.host), to_caller(lse, step.host)


def decode_attention(q, k_cache, v_cache, scale=None, *, num_threads=None, heads_per_block=1):
    """One block per (batch, head) over the whole cache, or per ``heads_per_block`` query
    heads of one kv head (the GQA group: K/V read once for them). Returns ``(o, lse)``."""
    return _run(q, k_cache, v_cache, 1, num_threads, scale, heads_per_block)


def flash_decoding(q, k_cache, v_cache, num_splits=None, scale=None, *, num_threads=None, heads_per_block=1):
    """Split-KV decoding (partials per split, then a log-sum-exp combine). Returns ``(o, lse)``."""
    return _run(q, k_cache, v_cache, num_splits, num_threads, scale, heads_per_block)
