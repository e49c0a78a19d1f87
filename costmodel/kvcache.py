"""KV-cache size: per token, per batch, paged against contiguous, and the largest batch that fits.

Every layer keeps one key and one value vector per KV head for every token it has seen:

    bytes per token = 2 · n_layers · n_kv_heads · head_dim · bytes per element

(the seed lecture's "KV cache per token = 2 × num_layers × (num_heads × dim_head) ×
precision_in_bytes", module 5, with num_heads → n_kv_heads: multi-query attention shares one
KV head across all query heads, Shazeer 2019, and grouped-query attention one per group,
Ainslie et al. 2023). A sliding window of W tokens (Mistral 7B's rolling buffer cache,
Jiang et al. 2023 §2) caps the tokens held at min(seq_len, W).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from costmodel.calculator_io import (Number, Result, check, default_seq_len, element_bytes, require_config, resolve,
                                     to_value)
from costmodel.models import ModelConfig
from costmodel.params import weights_bytes

_KV_SHAPE = ("n_layers", "n_kv_heads", "head_dim")


def _window(func: str, cfg: ModelConfig | None, sliding_window: Any):
    require_config(func, cfg)
    if isinstance(sliding_window, str):
        if sliding_window != "model":
            raise ValueError(f"sliding_window: {sliding_window!r}; allowed: 'model', None or a positive integer")
        return cfg.sliding_window if cfg is not None else None
    if sliding_window is None:
        return None
    return check(func, "sliding_window", sliding_window, gt=0, integer=True)


def kv_cache_bytes_per_token(cfg: ModelConfig | None = None, dtype: Any = "bf16", **shape) -> Number:
    """2 · n_layers · n_kv_heads · head_dim · bytes per element (module docstring).

    ``dtype`` is a name from ``hardware_specs.dtypes`` ('fp32', 'bf16', 'fp8', 'int4', ...) or a
    number of bytes per element (array allowed). Give a ModelConfig, or the numbers
    n_layers=, n_kv_heads=, head_dim= (which also override cfg's; arrays broadcast).
    """
    func = "kv_cache_bytes_per_token"
    s = resolve(func, cfg, _KV_SHAPE, shape)
    e = element_bytes(func, "dtype", dtype)
    return to_value(2 * s["n_layers"] * s["n_kv_heads"] * s["head_dim"] * e)


class KVCacheBytes(Result):
    """KV cache of ``batch`` sequences of ``seq_len`` tokens each."""

    per_token_bytes: Number
    tokens_held: Number  # per sequence: min(seq_len, sliding window)
    per_sequence_bytes: Number
    total_bytes: Number  # per_sequence_bytes · batch


def kv_cache_bytes(
    cfg: ModelConfig | None = None,
    batch=1,
    seq_len=None,
    dtype: Any = "bf16",
    *,
    sliding_window: Any = "model",
    **shape,
) -> KVCacheBytes:
    """Per token, per sequence and total KV-cache bytes; total = per_token · min(seq_len, W) · batch.

    ``seq_len`` defaults to cfg.max_seq_len; ``sliding_window='model'`` uses cfg's window,
    ``None`` none, an integer that window (Jiang et al. 2023 §2, rolling buffer cache).
    """
    func = "kv_cache_bytes"
    b = check(func, "batch", batch, ge=0, integer=True)
    n = check(func, "seq_len", default_seq_len(func, cfg, "seq_len", seq_len), ge=0, integer=True)
    window = _window(func, cfg, sliding_window)
    held = n if window is None else to_value(np.minimum(n, window))
    per_token = kv_cache_bytes_per_token(cfg, dtype, **shape)
    per_seq = per_token * held
    return KVCacheBytes(
        per_token_bytes=per_token, tokens_held=held, per_sequence_bytes=to_value(per_seq),
        total_bytes=to_value(per_seq * b),
    )


class PagedKVCache(Result):
    """Paged (vLLM) against contiguous KV-cache allocation for a batch of sequences.

    Per-sequence fields have the broadcast shape of the inputs; ``total_*`` fields sum them
    over the last axis (the batch axis), so they are scalars for a 1-d batch of lengths.
    """

    per_token_bytes: Number
    blocks: Number  # per sequence: ceil(seq_len / block_size)
    used_bytes: Number  # per sequence: seq_len · per_token
    paged_bytes: Number  # per sequence: blocks · block_size · per_token
    paged_waste_bytes: Number  # per sequence: internal fragmentation of the last block
    contiguous_bytes: Number  # per sequence: max_seq_len · per_token reserved up front
    contiguous_waste_bytes: Number  # per sequence: (max_seq_len − seq_len) · per_token
    total_used_bytes: Number
    total_paged_bytes: Number
    total_paged_waste_bytes: Number
    total_contiguous_bytes: Number
    total_contiguous_waste_bytes: Number


def paged_kv_cache_bytes(
    cfg: ModelConfig | None = None, seq_lens=None, block_size=16, dtype: Any = "bf16", *, max_seq_len=None, **shape
) -> PagedKVCache:
    """KV bytes for sequences of lengths ``seq_lens`` under paged and contiguous allocation.

    Kwon et al. 2023 (vLLM, PagedAttention) §4.1-4.2: the cache is cut into blocks of
    ``block_size`` tokens (vLLM's default 16) allocated on demand, so a sequence of n tokens
    holds ceil(n / block_size) blocks and wastes only the unfilled tail of its last block,
    fewer than block_size tokens. A contiguous allocator (their §3, Figure 3) reserves
    ``max_seq_len`` (default cfg.max_seq_len) slots per sequence up front and wastes
    (max_seq_len − n) of them (their "reserved" plus "internal fragmentation"; external
    fragmentation between requests is not modelled). No sliding-window cap is applied here.
    """
    func = "paged_kv_cache_bytes"
    n = check(func, "seq_lens", seq_lens, ge=0, integer=True)
    B = check(func, "block_size", block_size, gt=0, integer=True)
    M = check(func, "max_seq_len", default_seq_len(func, cfg, "max_seq_len", max_seq_len), gt=0, integer=True)
    too_long = np.asarray(n) > np.asarray(M)
    if np.any(too_long):
        raise ValueError(f"{func}: seq_lens exceed max_seq_len ({M}), which a contiguous allocator cannot hold")
    per_token = kv_cache_bytes_per_token(cfg, dtype, **shape)
    blocks = -(-np.asarray(n) // np.asarray(B))  # ceil division, exact for integers
    used = np.asarray(n) * per_token
    paged = blocks * np.asarray(B) * per_token
    contiguous = np.broadcast_to(np.asarray(M) * per_token, np.broadcast(used, np.asarray(M)).shape)
    per_seq = dict(
        blocks=blocks, used_bytes=used, paged_bytes=paged, paged_waste_bytes=paged - used,
        contiguous_bytes=contiguous, contiguous_waste_bytes=contiguous - used,
    )
    totals = {f"total_{k}": np.sum(v, axis=-1) if np.ndim(v) else v for k, v in per_seq.items() if k != "blocks"}
    return PagedKVCache(per_token_bytes=per_token, **{k: to_value(v) for k, v in {**per_seq, **totals}.items()})


def batch_that_fits(free_bytes, kv_bytes_per_sequence):
    """floor(free_bytes / kv_bytes_per_sequence), at least 0 (arrays broadcast): the sequences
    whose KV caches fit in what the weights and any reserve leave."""
    return np.maximum(np.floor_divide(free_bytes, kv_bytes_per_sequence), 0).astype(np.int64)


class BatchFit(Result):
    """How many sequences' KV caches fit beside the weights."""

    max_batch: Number  # floor(free_bytes / kv_bytes_per_sequence), at least 0
    weights_bytes: Number  # params · weight dtype bytes
    kv_bytes_per_sequence: Number
    reserve_bytes: Number  # reserve_bytes + reserve_fraction · gpu_memory_bytes
    free_bytes: Number  # gpu_memory_bytes − weights − reserve (may be negative: the weights do not fit)


def max_batch_that_fits(
    cfg: ModelConfig,
    gpu_memory_bytes,
    seq_len=None,
    weight_dtype: Any = "bf16",
    kv_dtype: Any = "bf16",
    *,
    reserve_bytes=0,
    reserve_fraction=0.0,
    sliding_window: Any = "model",
) -> BatchFit:
    """Largest batch of ``seq_len``-token sequences whose KV cache fits in what the weights leave.

    weights = total parameters × weight dtype bytes (``costmodel.params.weights_bytes``); each sequence
    needs ``kv_cache_bytes(cfg, 1, seq_len, kv_dtype).total_bytes``; ``reserve_bytes`` and
    ``reserve_fraction`` of the GPU memory are held back (activations, workspace, allocator
    slack). Every numeric argument may be an array.
    """
    func = "max_batch_that_fits"
    require_config(func, cfg, optional=False)
    mem = check(func, "gpu_memory_bytes", gpu_memory_bytes, gt=0)
    res = check(func, "reserve_bytes", reserve_bytes, ge=0)
    frac = check(func, "reserve_fraction", reserve_fraction, ge=0, lt=1)
    weights = weights_bytes(cfg, element_bytes(func, "weight_dtype", weight_dtype))
    per_seq = kv_cache_bytes(cfg, 1, seq_len, kv_dtype, sliding_window=sliding_window).total_bytes
    if np.any(np.asarray(per_seq) <= 0):
        raise ValueError(f"{func}: seq_len must be positive for a batch to be limited by the KV cache")
    reserve = res + frac * mem
    free = mem - weights - reserve
    batch = batch_that_fits(free, per_seq)
    return BatchFit(
        max_batch=to_value(batch), weights_bytes=to_value(weights), kv_bytes_per_sequence=to_value(per_seq),
        reserve_bytes=to_value(reserve), free_bytes=to_value(free),
    )


__all__ = [
    "BatchFit", "KVCacheBytes", "PagedKVCache", "batch_that_fits", "kv_cache_bytes", "kv_cache_bytes_per_token",
    "max_batch_that_fits", "paged_kv_cache_bytes",
]
