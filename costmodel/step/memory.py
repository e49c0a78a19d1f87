"""Peak device memory of a step, per term: what ``torch.cuda.max_memory_allocated`` reports.

Inference: weights (``costmodel.params`` count x weight bytes) + KV cache
(``costmodel.kvcache.kv_cache_bytes``) + the largest set of temporaries alive at one moment
of the forward pass + the cuBLAS workspace. Training (plain PyTorch AMP: fp32 parameters,
autocast bf16, fused AdamW): fp32 parameters 4, Adam moments 8 bytes a parameter (these
with the fp32 gradients are ZeRO's 16 bytes a parameter, ``costmodel.training_memory``) and
the larger of two moments:

    end of forward    params + moments + bf16 weight copies that linear layers saved for
                      their backward + activations autograd kept (the ops' ``saved_bytes``,
                      counted from what each op saves, ``costmodel/step/ops.py``) + the loss
                      backward's transients (8 bytes a logit: the fp32 gradient in and out)
    end of backward   params + moments + fp32 gradients + the largest bf16 weight gradient
                      not yet cast to fp32

Activation bytes are counted from the ops rather than from Korthikanti et al.'s per-layer
formula (``costmodel.training_memory.activations_per_layer``) because plain PyTorch keeps
more than Megatron's fused kernels: an fp32 RMSNorm saves fp32 copies, and a saved view keeps
its whole base tensor. ``recompute='full'`` keeps only each layer's input.
"""

from __future__ import annotations

import numpy as np

from costmodel.kvcache import kv_cache_bytes
from costmodel.params import count_params

# ATen/cuda/CublasHandlePool.cpp, getChosenWorkspaceSize: 32 MiB default on sm_90 (4096 KiB x 8);
# allocated through the caching allocator, so max_memory_allocated includes it.
CUBLAS_WORKSPACE_BYTES = 32 * 2**20
# CUDA caching allocator: sizes are rounded up to 512 B (c10/cuda/CUDACachingAllocator.cpp kMinBlockSize).
ALLOCATOR_ROUND_BYTES = 512


def matmul_weight_params(cfg) -> int:
    """Parameters that autocast casts to bf16 (weights of linear layers, the LM head included)."""
    p = count_params(cfg)
    lm = cfg.vocab_size * cfg.d_model
    return int(p.attention + p.mlp + lm)


def inference_memory(cfg, T, sequences, cache_tokens, e_w: float, e: float, kv_dtype, tensor_parallel: int = 1,
                     logits_tokens=None):
    """Per-term bytes at the peak of an inference forward pass (module docstring)."""
    t = tensor_parallel
    p = count_params(cfg)
    weights = p.total * e_w / t
    kv = np.asarray(kv_cache_bytes(cfg, 1, 1, kv_dtype, sliding_window=None).per_token_bytes, dtype=np.float64)
    kv = kv * np.asarray(cache_tokens, dtype=np.float64) / t
    T = np.asarray(T, dtype=np.float64)
    TL = T if logits_tokens is None else np.asarray(logits_tokens, dtype=np.float64)
    h, f, V = cfg.d_model, cfg.ffn_dim / t, cfg.vocab_size / t
    qkv = (cfg.q_dim + 2 * cfg.kv_dim) / t
    # candidates for the moment of most temporaries (each plus the residual stream x)
    mlp = T * e * (h + (4 * f if cfg.ffn_type == "swiglu" else 2 * f))
    attn = T * e * (h + qkv + 2 * cfg.q_dim / t + cfg.kv_dim / t)
    norm = T * h * (2 * e + 8) if cfg.norm_type == "rmsnorm" else T * h * 3 * e
    head = TL * V * e + 2 * T * h * e
    temporaries = np.maximum(np.maximum(mlp, attn), np.maximum(norm, head))
    return {"weights": weights, "kv_cache": kv, "activations": temporaries, "workspace": float(CUBLAS_WORKSPACE_BYTES)}


def training_memory_terms(cfg, fwd_ops, T_logits, tensor_parallel: int = 1, recompute: str = "none",
                          grad_accum: int = 1):
    """Per-term bytes at the peak of a training step (module docstring). With gradient accumulation
    the fp32 gradients of the first micro-batches are alive through the later forwards too."""
    t = tensor_parallel
    P = count_params(cfg).total / t
    P_mm = matmul_weight_params(cfg) / t
    acts = 0.0
    for op in fwd_ops:
        n = cfg.n_layers if op.layer else 1
        if recompute == "full" and op.layer:
            continue
        acts = acts + n * np.asarray(op.saved_bytes, dtype=np.float64)
    if recompute == "full":  # each layer keeps its fp32 input
        acts = acts + cfg.n_layers * 4.0 * np.asarray(T_logits, dtype=np.float64) * cfg.d_model
    V = cfg.vocab_size / t
    loss_transient = 8.0 * np.asarray(T_logits, dtype=np.float64) * V
    largest = max(cfg.vocab_size * cfg.d_model, (cfg.q_dim + 2 * cfg.kv_dim) * cfg.d_model,
                  2 * cfg.ffn_dim * cfg.d_model) / t
    held_grads = 4.0 * P if grad_accum > 1 else 0.0
    end_fwd = held_grads + 2.0 * P_mm + acts + loss_transient
    end_bwd = 4.0 * P + 2.0 * largest + 0 * acts
    at_fwd = end_fwd >= end_bwd
    return {
        "params_fp32": 4.0 * P, "adam_moments": 8.0 * P,
        "gradients": np.where(at_fwd, held_grads, 4.0 * P),
        "bf16_weight_copies": np.where(at_fwd, 2.0 * P_mm, 0.0),
        "activations": np.where(at_fwd, acts, 0.0),
        "transients": np.where(at_fwd, loss_transient, 2.0 * largest),
        "workspace": float(CUBLAS_WORKSPACE_BYTES),
    }


__all__ = ["ALLOCATOR_ROUND_BYTES", "CUBLAS_WORKSPACE_BYTES", "inference_memory", "matmul_weight_params",
           "training_memory_terms"]
