"""Float64 numpy references the kernels are checked against.

Shapes follow the kernels: q (B, H, Nq, d), k and v (B, Hkv, N, d) with H a multiple
of Hkv (query head h uses kv head h // (H // Hkv)). Products go through matmul
(BLAS) so that checks at real sizes stay fast.
"""
from __future__ import annotations

import math

import numpy as np


def _expand_kv(x: np.ndarray, heads: int) -> np.ndarray:
    """(B, Hkv, N, d) -> (B, H, N, d) by repeating each kv head for its query group."""
    return np.repeat(x, heads // x.shape[1], axis=1)


def mask(q_pos: np.ndarray, n_k: int, causal: bool, window: int | None = None) -> np.ndarray:
    """(len(q_pos), n_k) booleans: True where the query at position i may see key j.

    Causal: j <= i. Sliding window (causal by definition): i - window < j <= i.
    """
    i = np.asarray(q_pos)[:, None]
    j = np.arange(n_k)[None, :]
    ok = np.ones((i.shape[0], n_k), dtype=bool)
    if causal or window is not None:
        ok &= j <= i
    if window is not None:
        ok &= j > i - window
    return ok


def attention(q, k, v, causal=False, window=None, scale=None, q_pos=None):
    """Softmax attention forward: returns (o, lse), o (B, H, Nq, d), lse (B, H, Nq).

    ``q_pos`` gives the sequence positions of q's rows (default 0..Nq-1), so a check
    can pass a subset of rows.
    """
    q, k, v = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    H, nq, d = q.shape[1], q.shape[2], q.shape[-1]
    k, v = _expand_kv(k, H), _expand_kv(v, H)
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    q_pos = np.arange(nq) if q_pos is None else q_pos
    s = (q @ np.swapaxes(k, -1, -2)) * scale  # (B, H, Nq, N)
    s = np.where(mask(q_pos, k.shape[2], causal, window), s, -np.inf)
    m = s.max(axis=-1, keepdims=True)
    p = np.exp(s - m)
    l = p.sum(axis=-1, keepdims=True)
    o = (p / l) @ v
    return o, (m + np.log(l))[..., 0]


def attention_backward(q, k, v, do, causal=False, scale=None):
    """Gradients (dq, dk, dv) of sum(o * do) for o = attention(q, k, v) (same heads)."""
    q, k, v, do = (np.asarray(x, dtype=np.float64) for x in (q, k, v, do))
    n, d = q.shape[2], q.shape[-1]
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    s = (q @ np.swapaxes(k, -1, -2)) * scale
    s = np.where(mask(np.arange(n), k.shape[2], causal), s, -np.inf)
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    o = p @ v
    dv = np.swapaxes(p, -1, -2) @ do
    dp = do @ np.swapaxes(v, -1, -2)
    ds = p * (dp - (do * o).sum(axis=-1, keepdims=True))
    dq = (ds @ k) * scale
    dk = (np.swapaxes(ds, -1, -2) @ q) * scale
    return dq, dk, dv


def decode(q, k_cache, v_cache, scale=None):
    """One query token per sequence against the whole cache.

    q (B, H, 1, d); caches (B, Hkv, L, d). Returns (o (B, H, 1, d), lse (B, H, 1)).
    """
    return attention(q, k_cache, v_cache, causal=False, scale=scale)


def rel_error(out, ref) -> float:
    """||out - ref|| / ||ref|| in float64 (NaN anywhere in out gives NaN)."""
    out = np.asarray(out, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    return float(np.linalg.norm(out - ref) / np.linalg.norm(ref))
