"""Lower bounds on a decode step and on a prefill: the roofline of the least work each must do.

Decode step, ``batch`` sequences each adding one token to ``seq_len - 1`` cached ones:

    flops      batch x decode FLOPs per token (``flops.decode_flops_per_token``, context seq_len - 1)
    hbm_bytes  every stored weight read once (``params.weights_bytes``) + the KV cache of
               batch x seq_len tokens read once (``kvcache.kv_cache_bytes``, the new token's k, v included)

This is the bound the Flash-Decoding authors hold decoding against, "the time it takes to
read the whole model and the KV cache from memory" (Dao, Haziza, Massa & Sizov 2023,
https://princeton-nlp.github.io/flash-decoding/), and Pope et al. 2022 ("Efficiently Scaling
Transformer Inference", section 2: at small batch, decode is bound by loading the weights
and the KV cache). The whole stored model is counted, the token-embedding table too, although
a step reads only its batch's rows of it: a bound looser by that table (2 % of Llama-2-7B).

Prefill of ``seq_len`` tokens per sequence:

    flops      batch x seq_len x causal forward FLOPs per token (``flops.forward_flops_per_token``)
    hbm_bytes  every stored weight read once + the KV cache of batch x seq_len tokens written once

Activations are left out of both: what a step must move at the least, so the roofline time
(``hardware_specs.roofline.roofline_time``: the max of FLOPs / peak and bytes / bandwidth)
is a lower bound. Every numeric argument may be a numpy array (the result broadcasts), and
keyword model numbers (n_layers=..., head_dim=...) replace the config's or stand without one.
"""

from __future__ import annotations

from typing import Any

from costmodel.calculator_io import Number, Result, check, to_value
from costmodel.flops import decode_flops_per_token, forward_flops_per_token
from costmodel.kvcache import kv_cache_bytes
from costmodel.models import ModelConfig
from costmodel.params import PARAM_FIELDS, weights_bytes
from hardware_specs.roofline import Work, matmul_unit, roofline_time

_FLOPS_FIELDS = ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "ffn_dim", "ffn_type")
_KV_FIELDS = ("n_layers", "n_kv_heads", "head_dim")


class StepBound(Result):
    """The least work of one step and its roofline time."""

    flops: Number  # matmul FLOPs
    weights_bytes: Number  # every stored weight, read once
    kv_bytes: Number  # decode: the KV cache read once; prefill: written once
    hbm_bytes: Number  # weights_bytes + kv_bytes
    time_s: Number  # roofline lower bound
    bound: Any  # the binding resource ("hbm", "bf16_tensor", ...), an array of them when swept
    tokens: Number  # tokens the step produces: batch (decode) or batch x seq_len (prefill)
    tokens_per_s: Number  # tokens / time_s


def _split(func: str, shape: dict) -> tuple[dict, dict, dict]:
    unknown = set(shape) - set(PARAM_FIELDS)
    if unknown:
        raise TypeError(f"{func}: unexpected field(s) {sorted(unknown)}; accepted: {', '.join(PARAM_FIELDS)}")
    pick = lambda names: {k: v for k, v in shape.items() if k in names}  # noqa: E731
    return pick(PARAM_FIELDS), pick(_FLOPS_FIELDS), pick(_KV_FIELDS)


def _bound(spec, flops, weights, kv, unit, tokens) -> StepBound:
    t = roofline_time(spec, Work(matmul_flops=flops, matmul_unit=unit, hbm_bytes=weights + kv))
    return StepBound(flops=to_value(flops), weights_bytes=to_value(weights), kv_bytes=to_value(kv),
                     hbm_bytes=to_value(weights + kv), time_s=to_value(t.time_s), bound=to_value(t.bound),
                     tokens=to_value(tokens), tokens_per_s=to_value(tokens / t.time_s))


def _unit(unit: str | None, weight_dtype: Any) -> str:
    if unit is not None:
        return unit
    if not isinstance(weight_dtype, str):
        raise TypeError("matmul_unit: give it (e.g. 'bf16_tensor') when weight_dtype is a number of bytes")
    return matmul_unit(weight_dtype)


def decode_step_bound(spec, cfg: ModelConfig | None = None, *, seq_len, batch=1, weight_dtype: Any = "bf16",
                      kv_dtype: Any = None, matmul_unit: str | None = None, sliding_window: Any = "model",
                      **shape) -> StepBound:
    """Lower bound on one decode step (module docstring) of ``batch`` sequences reaching ``seq_len`` tokens.

    ``kv_dtype`` defaults to ``weight_dtype``; ``matmul_unit`` to the tensor-core unit of
    ``weight_dtype`` (``hardware_specs.roofline.matmul_unit``).
    """
    func = "decode_step_bound"
    n = check(func, "seq_len", seq_len, gt=0, integer=True)
    b = check(func, "batch", batch, gt=0, integer=True)
    params, flops_shape, kv_shape = _split(func, shape)
    kv_dtype = weight_dtype if kv_dtype is None else kv_dtype
    flops = b * decode_flops_per_token(cfg, n - 1, sliding_window=sliding_window, **flops_shape).total
    kv = kv_cache_bytes(cfg, b, n, kv_dtype, sliding_window=sliding_window, **kv_shape).total_bytes
    return _bound(spec, flops, weights_bytes(cfg, weight_dtype, **params), kv, _unit(matmul_unit, weight_dtype), b)


def prefill_bound(spec, cfg: ModelConfig | None = None, *, seq_len, batch=1, weight_dtype: Any = "bf16",
                  kv_dtype: Any = None, matmul_unit: str | None = None, sliding_window: Any = "model",
                  **shape) -> StepBound:
    """Lower bound on the prefill (module docstring) of ``batch`` causal sequences of ``seq_len`` tokens."""
    func = "prefill_bound"
    n = check(func, "seq_len", seq_len, gt=0, integer=True)
    b = check(func, "batch", batch, gt=0, integer=True)
    params, flops_shape, kv_shape = _split(func, shape)
    kv_dtype = weight_dtype if kv_dtype is None else kv_dtype
    flops = b * n * forward_flops_per_token(cfg, n, causal=True, sliding_window=sliding_window, **flops_shape).total
    kv = kv_cache_bytes(cfg, b, n, kv_dtype, sliding_window=sliding_window, **kv_shape).total_bytes
    return _bound(spec, flops, weights_bytes(cfg, weight_dtype, **params), kv, _unit(matmul_unit, weight_dtype),
                  b * n)


__all__ = ["StepBound", "decode_step_bound", "prefill_bound"]
