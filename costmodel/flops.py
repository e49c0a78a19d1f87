"""FLOPs of a decoder-only transformer: forward per token, training, decode, and MFU.

Convention: one multiply-add is 2 FLOPs, so an (m×k)·(k×n) matmul costs 2·m·k·n. Only
matmuls are counted, as in Kaplan et al. 2020 Table 1 and Narayanan et al. 2021 §5.1:
norms, softmax, activation functions, biases, residual adds and embedding lookups are
O(h) per token against the matmuls' O(h²) and are left out.

Per token and per layer, with h = d_model, a = n_heads, g = n_kv_heads, d = head_dim,
f = ffn_dim, V = vocab_size and k = the number of keys the token's query attends to:

    qkv_proj     2·h·(a·d + 2·g·d)          Kaplan Table 1 "Attention: QKV" (GQA narrows k, v)
    attn_scores  2·a·d·k                    Q·Kᵀ, one d-long dot product per head and key
    attn_values  2·a·d·k                    softmax(QKᵀ)·V
    out_proj     2·a·d·h                    Kaplan Table 1 "Attention: Project"
    mlp          2·2·h·f (gelu_mlp) or 2·3·h·f (swiglu: gate, up, down)
    lm_head      2·h·V, once per token      Kaplan Table 1 "De-embed"

For a training or prefill sequence of S tokens, k is the mean over its queries. Without a
causal mask k = S. With one, query i (1-based) sees min(i, W) keys (W the sliding window,
W = ∞ without one), so k = Σᵢ min(i, W) / S, which is (S + 1)/2 for S ≤ W: the exact form
of Kaplan's "causal halving" (their 2·n_layer·n_ctx·d_attn counts QKᵀ and AV at half the
context each). Decoding one token after ``context_len`` cached ones gives k = min(context_len + 1, W).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from costmodel.calculator_io import Number, Result, check, default_seq_len, require_config, resolve, to_value
from costmodel.models import ModelConfig

_SHAPE = ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "ffn_dim", "ffn_type")
_MLP_MATRICES = {"gelu_mlp": 2, "swiglu": 3}

Recompute = Literal["none", "selective", "full"]


class FlopsPerToken(Result):
    """Forward FLOPs for one token, per layer by operation, then the whole model."""

    keys_per_query: Number  # mean number of keys the token's query attends to
    qkv_proj: Number  # per layer
    attn_scores: Number  # per layer: Q·Kᵀ
    attn_values: Number  # per layer: P·V
    out_proj: Number  # per layer
    mlp: Number  # per layer
    per_layer: Number  # sum of the five above
    layers: Number  # per_layer · n_layers
    lm_head: Number
    total: Number  # layers + lm_head


def mean_keys_per_query(seq_len, causal: bool = True, sliding_window=None):
    """Mean keys per query over a sequence of ``seq_len`` tokens (module docstring).

    Causal: Σ_{i=1..S} min(i, W) / S = (S+1)/2 when S ≤ W, else (W(W+1)/2 + (S−W)·W) / S.
    Non-causal: S (the window is ignored: every query meets every key).
    """
    S = check("mean_keys_per_query", "seq_len", seq_len, gt=0, integer=True)
    if not causal:
        return S
    if sliding_window is None:
        return to_value((S + 1) / 2)
    W = check("mean_keys_per_query", "sliding_window", sliding_window, gt=0, integer=True)
    S_arr, W_arr = np.asarray(S, dtype=np.float64), np.asarray(W, dtype=np.float64)
    keys_total = np.where(S_arr <= W_arr, S_arr * (S_arr + 1) / 2, W_arr * (W_arr + 1) / 2 + (S_arr - W_arr) * W_arr)
    return to_value(keys_total / S_arr)


def attention_core_flops(batch_heads, seq_len, head_dim, *, kv_len=None, causal: bool = True,
                         sliding_window=None, pass_: str = "fwd") -> Number:
    """Matmul FLOPs of the attention core (Q K^T and P V; backward: their gradients too) of
    ``batch_heads`` heads: ``simulators.counting.PAIR_MATMUL_FLOPS`` (4 forward, 10 backward)
    x head_dim x the (query, key) pairs attended.

    Pairs: seq_len x ``mean_keys_per_query`` for a causal sequence, with an optional sliding
    window (Dao 2023 section 4.1 halves the unmasked count for a causal mask; this counts
    the S (S + 1) / 2 pairs exactly); without a mask, seq_len x ``kv_len`` (default seq_len),
    as in decoding one query against a cache of kv_len keys. Arrays broadcast.
    """
    from simulators.counting import PAIR_MATMUL_FLOPS  # lazily: the simulator's package loads numba

    func = "attention_core_flops"
    if pass_ not in PAIR_MATMUL_FLOPS:
        raise ValueError(f"pass_: {pass_!r}; allowed: {', '.join(PAIR_MATMUL_FLOPS)}")
    bh = check(func, "batch_heads", batch_heads, gt=0, integer=True)
    S = check(func, "seq_len", seq_len, gt=0, integer=True)
    d = check(func, "head_dim", head_dim, gt=0, integer=True)
    if causal:
        if kv_len is not None:
            raise ValueError(f"{func}: kv_len is for an unmasked call (causal=False); a causal one has kv_len = seq_len")
        pairs = S * mean_keys_per_query(S, True, sliding_window)
    else:
        pairs = S * (S if kv_len is None else check(func, "kv_len", kv_len, gt=0, integer=True))
    return to_value(PAIR_MATMUL_FLOPS[pass_] * d * pairs * bh)


def _window(cfg: ModelConfig | None, sliding_window: Any):
    require_config("flops", cfg)
    if isinstance(sliding_window, str):
        if sliding_window != "model":
            raise ValueError(f"sliding_window: {sliding_window!r}; allowed: 'model', None or a positive integer")
        return cfg.sliding_window if cfg is not None else None
    return sliding_window


def _per_token(func: str, shape: dict, keys) -> FlopsPerToken:
    h, a, g, d = shape["d_model"], shape["n_heads"], shape["n_kv_heads"], shape["head_dim"]
    if shape["ffn_type"] not in _MLP_MATRICES:
        raise ValueError(f"ffn_type: unknown {shape['ffn_type']!r}; allowed: {', '.join(_MLP_MATRICES)}")
    qkv = 2 * h * (a * d + 2 * g * d)
    scores = 2 * a * d * keys
    values = 2 * a * d * keys
    out = 2 * a * d * h
    mlp = 2 * _MLP_MATRICES[shape["ffn_type"]] * h * shape["ffn_dim"]
    per_layer = qkv + scores + values + out + mlp
    layers = per_layer * shape["n_layers"]
    lm_head = 2 * h * shape["vocab_size"]
    values_ = dict(
        keys_per_query=keys, qkv_proj=qkv, attn_scores=scores, attn_values=values, out_proj=out, mlp=mlp,
        per_layer=per_layer, layers=layers, lm_head=lm_head, total=layers + lm_head,
    )
    return FlopsPerToken(**{k: to_value(v) for k, v in values_.items()})


def forward_flops_per_token(
    cfg: ModelConfig | None = None, seq_len=None, *, causal: bool = True, sliding_window: Any = "model", **shape
) -> FlopsPerToken:
    """Forward FLOPs per token of a sequence of ``seq_len`` tokens (default: cfg.max_seq_len).

    Sources: Kaplan et al. 2020 Table 1 (per-operation counts), Hoffmann et al. 2022
    (Chinchilla) Appendix F (same matmul terms; it also counts softmax and the embedding
    lookup, which we omit), Narayanan et al. 2021 eq. (3) (the same terms for a GPT layer).
    ``sliding_window='model'`` takes the window from ``cfg``; ``None`` means none. Keyword
    overrides (d_model=..., n_kv_heads=..., arrays allowed) replace cfg's numbers.
    """
    func = "forward_flops_per_token"
    s = resolve(func, cfg, _SHAPE, shape)
    seq_len = default_seq_len(func, cfg, "seq_len", seq_len)
    keys = mean_keys_per_query(seq_len, causal, _window(cfg, sliding_window))
    return _per_token(func, s, keys)


def decode_flops_per_token(
    cfg: ModelConfig | None = None, context_len=0, *, sliding_window: Any = "model", **shape
) -> FlopsPerToken:
    """FLOPs to generate one token with a KV cache already holding ``context_len`` tokens.

    The new token's q, k, v are projected (its k, v join the cache) and its query attends to
    min(context_len + 1, W) keys; projections, MLP and lm_head act on this one token only.
    Same terms and convention as ``forward_flops_per_token`` (Kaplan et al. 2020 Table 1).
    """
    func = "decode_flops_per_token"
    s = resolve(func, cfg, _SHAPE, shape)
    ctx = check(func, "context_len", context_len, ge=0, integer=True)
    window = _window(cfg, sliding_window)
    keys = ctx + 1
    if window is not None:
        keys = to_value(np.minimum(keys, check(func, "sliding_window", window, gt=0, integer=True)))
    return _per_token(func, s, keys)


def matmul_params(cfg: ModelConfig | None = None, **shape) -> Number:
    """Parameters that multiply every token: attention and MLP weight matrices plus the
    output projection (counted even when tied: it is still a matmul per token).

    2 × this is the forward matmul FLOPs per token outside the attention core, i.e. the
    N of "2N per token" (Kaplan et al. 2020 Table 1, with the de-embedding kept since it is a
    matmul; embeddings lookups, norms and biases are not).
    """
    s = resolve("matmul_params", cfg, _SHAPE, shape)
    h, a, g, d = s["d_model"], s["n_heads"], s["n_kv_heads"], s["head_dim"]
    per_layer = h * (a * d + 2 * g * d) + a * d * h + _MLP_MATRICES[s["ffn_type"]] * h * s["ffn_dim"]
    return to_value(per_layer * s["n_layers"] + h * s["vocab_size"])


class TrainingFlops(Result):
    """FLOPs to train on ``tokens`` tokens in sequences of ``seq_len``."""

    forward_flops_per_token: Number
    flops_per_token: Number  # forward + backward (+ recomputation)
    total_flops: Number  # flops_per_token · tokens
    attention_flops: Number  # the attention-core (QKᵀ, PV) share of total_flops
    matmul_params: Number  # N of 6·N·D
    six_n_d_flops: Number  # 6·N·D, the attention-free rule of thumb


def training_flops(
    cfg: ModelConfig | None = None,
    tokens=1,
    seq_len=None,
    *,
    causal: bool = True,
    recompute: Recompute = "none",
    sliding_window: Any = "model",
    **shape,
) -> TrainingFlops:
    """Training FLOPs: forward plus a backward that costs twice the forward, plus recomputation.

    Per token, with F the forward FLOPs (``forward_flops_per_token``), F_layers its
    transformer-layer part (F minus the output projection), N = ``matmul_params`` and
    A = n_layers · (attn_scores + attn_values):

        none       3·F               = 6·N + 3·A  (Kaplan et al. 2020 §2.1: C ≈ 6N + 6·n_layer·n_ctx·d_attn;
                                                    3·A is that attention term with n_ctx → S+1 when causal)
        full       3·F + F_layers                 (every transformer layer re-runs its forward in the backward
                                                    pass, the output layer does not: Narayanan et al. 2021
                                                    eq. (3), 96·B·s·l·h²·(1 + s/6h + V/16lh) per batch,
                                                    i.e. ≈ 8·N + 4·A for the layers)
        selective  3·F + A                        (Korthikanti et al. 2022 §5: only QKᵀ, softmax and PV are redone)
    """
    func = "training_flops"
    if recompute not in ("none", "selective", "full"):
        raise ValueError(f"recompute: unknown {recompute!r}; allowed: 'none', 'selective', 'full'")
    D = check(func, "tokens", tokens, ge=0)
    fwd = forward_flops_per_token(cfg, seq_len, causal=causal, sliding_window=sliding_window, **shape)
    attention_fwd = (fwd.attn_scores + fwd.attn_values) * resolve(func, cfg, _SHAPE, shape)["n_layers"]
    redo = {"none": 0, "selective": attention_fwd, "full": fwd.layers}[recompute]
    per_token = 3 * fwd.total + redo
    attention = (3 if recompute == "none" else 4) * attention_fwd
    N = matmul_params(cfg, **shape)
    values = dict(
        forward_flops_per_token=fwd.total, flops_per_token=per_token, total_flops=per_token * D,
        attention_flops=attention * D, matmul_params=N, six_n_d_flops=6 * N * D,
    )
    return TrainingFlops(**{k: to_value(v) for k, v in values.items()})


def model_flops_utilization(
    cfg: ModelConfig | None = None,
    tokens_per_s=None,
    peak_flops_per_s=None,
    seq_len=None,
    *,
    n_devices=1,
    causal: bool = False,
    sliding_window: Any = "model",
    **shape,
) -> Number:
    """MFU: model FLOPs per token × measured tokens/s ÷ (peak FLOP/s × devices).

    Chowdhery et al. 2022 (PaLM) Appendix B: model FLOPs per token = 6N + 12·L·H·Q·T (N the
    parameters, L layers, H heads, Q head size, T sequence length) and recomputation does
    not count (that would be hardware FLOPs utilization). Here that is 3·F of
    ``forward_flops_per_token``; ``causal=False`` (the default) gives PaLM's 12·L·H·Q·T,
    ``causal=True`` the exact causal count instead.
    """
    func = "model_flops_utilization"
    rate = check(func, "tokens_per_s", tokens_per_s, ge=0)
    peak = check(func, "peak_flops_per_s", peak_flops_per_s, gt=0)
    devices = check(func, "n_devices", n_devices, gt=0)
    fwd = forward_flops_per_token(cfg, seq_len, causal=causal, sliding_window=sliding_window, **shape)
    mfu = 3 * fwd.total * rate / (peak * devices)
    over = np.asarray(mfu) > 1
    if over.any():
        worst = float(np.max(mfu))
        raise ValueError(f"{func}: tokens_per_s: the throughput given needs {100 * worst:.0f}% of the peak "
                         "FLOP/s, more than the hardware has; check tokens_per_s, peak_flops_per_s and n_devices")
    return to_value(mfu)


__all__ = [
    "FlopsPerToken", "TrainingFlops", "attention_core_flops", "decode_flops_per_token", "forward_flops_per_token", "matmul_params",
    "mean_keys_per_query", "model_flops_utilization", "training_flops",
]
