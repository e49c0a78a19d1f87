"""Exact parameter count of a decoder-only transformer, per component.

Counted tensor by tensor, as the checkpoint stores them (``h`` = d_model, ``V`` = vocab,
``S`` = max_seq_len, ``a`` = n_heads, ``g`` = n_kv_heads, ``d`` = head_dim, ``f`` = ffn_dim,
``L`` = n_layers):

    embeddings  V·h  (+ S·h for a learned position table)
    attention   L · [ h·a·d (q) + 2·h·g·d (k, v) + a·d·h (o)  (+ a·d + 2·g·d + h biases) ]
    mlp         L · [ 2·h·f (+ f + h biases) ]              gelu_mlp (fc in, fc out)
                L · [ 3·h·f (+ 2·f + h biases) ]            swiglu (gate, up, down)
    norms       (2·L + 1) · h · (2 for LayerNorm's weight and bias, 1 for RMSNorm's weight)
    lm_head     V·h, or 0 when tied to the token embedding

This is Kaplan et al. 2020 Table 1's ``N = 2·d_model·n_layer·(2·d_attn + d_ff)`` made exact:
GQA (Ainslie et al. 2023) narrows k and v to g heads, SwiGLU (Shazeer 2020) has three
matrices, and biases, norms and embeddings are kept. Buffers that are not parameters
(GPT-2's causal-mask ``attn.bias``, RoPE's ``inv_freq``) are not counted. Every preset's
total equals its published count (tests/test_params.py cites each source).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from costmodel.calculator_io import Number, Result, check, element_bytes, require, require_config, to_value
from costmodel.models import ModelConfig


class ParamCount(Result):
    """Parameters per component; each field is a count (an array when swept)."""

    embeddings: Number  # token embedding + learned position table
    attention: Number  # all layers: q, k, v, o weights and biases
    mlp: Number  # all layers
    norms: Number  # 2 per layer + the final norm
    lm_head: Number  # 0 when tied to the token embedding
    total: Number
    attention_per_layer: Number
    mlp_per_layer: Number
    non_embedding: Number  # total - embeddings - lm_head (Kaplan et al. 2020's N, made exact)


def count_params_arrays(
    *,
    vocab_size,
    d_model,
    n_layers,
    n_heads,
    ffn_dim,
    n_kv_heads=None,
    head_dim=None,
    max_seq_len=0,
    ffn_type: str = "swiglu",
    norm_type: str = "rmsnorm",
    attn_bias: bool = False,
    mlp_bias: bool = False,
    tied_embeddings: bool = False,
    position_embedding: str = "rope",
) -> ParamCount:
    """The count of the module docstring for numbers that may be numpy arrays (they broadcast).

    ``n_kv_heads`` defaults to ``n_heads`` and ``head_dim`` to ``d_model // n_heads``.
    ``max_seq_len`` matters only for ``position_embedding='learned'``.
    """
    f = "count_params_arrays"
    V = check(f, "vocab_size", vocab_size, gt=0, integer=True)
    h = check(f, "d_model", d_model, gt=0, integer=True)
    L = check(f, "n_layers", n_layers, gt=0, integer=True)
    a = check(f, "n_heads", n_heads, gt=0, integer=True)
    ff = check(f, "ffn_dim", ffn_dim, gt=0, integer=True)
    g = a if n_kv_heads is None else check(f, "n_kv_heads", n_kv_heads, gt=0, integer=True)
    d = h // a if head_dim is None else check(f, "head_dim", head_dim, gt=0, integer=True)
    S = check(f, "max_seq_len", max_seq_len, ge=0, integer=True)
    # The same consistency rules as ModelConfig's validators, element by element.
    if head_dim is None:  # then n_heads > d_model would give heads of no width
        require(f, "n_heads", a, np.asarray(h) % np.asarray(a) == 0,
                "head_dim is not given and d_model is not a multiple of n_heads ({}); give head_dim")
    require(f, "n_kv_heads", g, np.asarray(g) <= np.asarray(a), "n_kv_heads ({}) must not exceed n_heads")
    require(f, "n_kv_heads", g, np.asarray(a) % np.asarray(g) == 0,
            "n_heads must be a multiple of n_kv_heads ({}): each K/V head serves a whole group of query heads")

    q_dim, kv_dim = a * d, g * d
    attention_per_layer = h * q_dim + 2 * h * kv_dim + q_dim * h
    if attn_bias:
        attention_per_layer = attention_per_layer + q_dim + 2 * kv_dim + h
    if ffn_type == "gelu_mlp":
        mlp_per_layer = 2 * h * ff + ((ff + h) if mlp_bias else 0)
    elif ffn_type == "swiglu":
        mlp_per_layer = 3 * h * ff + ((2 * ff + h) if mlp_bias else 0)
    else:
        raise ValueError(f"ffn_type: unknown {ffn_type!r}; allowed: 'gelu_mlp', 'swiglu'")
    if norm_type not in ("layernorm", "rmsnorm"):
        raise ValueError(f"norm_type: unknown {norm_type!r}; allowed: 'layernorm', 'rmsnorm'")
    if position_embedding not in ("learned", "rope", "alibi", "none"):
        raise ValueError(
            f"position_embedding: unknown {position_embedding!r}; allowed: 'learned', 'rope', 'alibi', 'none'"
        )
    norm_params = 2 if norm_type == "layernorm" else 1

    embeddings = V * h + (S * h if position_embedding == "learned" else 0)
    attention = L * attention_per_layer
    mlp = L * mlp_per_layer
    norms = (2 * L + 1) * h * norm_params
    lm_head = 0 if tied_embeddings else V * h
    total = embeddings + attention + mlp + norms + lm_head
    values = dict(
        embeddings=embeddings, attention=attention, mlp=mlp, norms=norms, lm_head=lm_head, total=total,
        attention_per_layer=attention_per_layer, mlp_per_layer=mlp_per_layer,
        non_embedding=attention + mlp + norms,
    )
    return ParamCount(**{k: to_value(v) for k, v in values.items()})


# The ModelConfig fields the count reads (``count_params_arrays``' keywords).
PARAM_FIELDS = ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "ffn_dim", "max_seq_len",
                "ffn_type", "norm_type", "attn_bias", "mlp_bias", "tied_embeddings", "position_embedding")


def count_params(cfg: ModelConfig) -> ParamCount:
    """Exact parameter count of ``cfg`` per component (Python ints)."""
    require_config("count_params", cfg, optional=False)
    return count_params_arrays(**{f: getattr(cfg, f) for f in PARAM_FIELDS})


def weights_bytes(cfg: ModelConfig | None = None, weight_dtype: Any = "bf16", **shape) -> Number:
    """Bytes of the stored weights: every parameter (``count_params``' total) x the weight
    dtype's bytes per element (a name from ``hardware_specs.dtypes`` or a number, arrays
    allowed). Keyword numbers (n_layers=..., arrays allowed) replace cfg's, or stand alone
    without a cfg, as ``count_params_arrays`` takes them."""
    unknown = set(shape) - set(PARAM_FIELDS)
    if unknown:
        raise TypeError(f"weights_bytes: unexpected field(s) {sorted(unknown)}; accepted: {', '.join(PARAM_FIELDS)}")
    fields = {f: getattr(cfg, f) for f in PARAM_FIELDS} if cfg is not None else {}
    fields.update({k: v for k, v in shape.items() if v is not None})
    return to_value(count_params_arrays(**fields).total * element_bytes("weights_bytes", "weight_dtype", weight_dtype))


__all__ = ["PARAM_FIELDS", "ParamCount", "count_params", "count_params_arrays", "weights_bytes"]
