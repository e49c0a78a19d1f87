"""How many KV blocks a server has: the GPU memory a serving engine may use, minus the weights.

vLLM sizes its cache the same way (Kwon et al. 2023 §4.3; vLLM's ``gpu_memory_utilization``,
default 0.9 of the device memory, EngineArgs): blocks = (utilization x memory - weights -
reserve) / (block_size x KV bytes per token). With tensor parallelism over t GPUs the weights
and the KV heads are split t ways (Shoeybi et al. 2019 §3), so t GPUs hold t times the blocks of
one GPU's share; when t exceeds the KV heads each KV head is replicated t / n_kv_heads times
(vLLM's num_kv_heads // tp, at least 1). A speculative decoder's draft model is taken to be
replicated whole on every GPU: its weights come off each GPU and its KV entries join the target's
in every block. vLLM also subtracts the peak of a profiling forward pass at its largest batch
(``max_num_batched_tokens`` tokens over ``max_num_seqs`` sequences, logits at each one's last token;
vLLM's ``Worker.determine_num_available_blocks``): with ``profile_tokens`` > 0 that peak is the step
model's inference activations and cuBLAS workspace (``costmodel.step.memory.inference_memory``).
"""

from __future__ import annotations

import math

from costmodel.calculator_io import element_bytes
from costmodel.kvcache import batch_that_fits, kv_cache_bytes_per_token
from costmodel.models import ModelConfig
from costmodel.params import count_params

GPU_MEMORY_UTILIZATION = 0.9  # vLLM EngineArgs default gpu_memory_utilization


def kv_capacity(cfg: ModelConfig, gpu, *, block_size: int = 16, tensor_parallel: int = 1,
                weight_dtype="bf16", kv_dtype="bf16", gpu_memory_utilization: float = GPU_MEMORY_UTILIZATION,
                reserve_bytes: float = 0.0, draft: ModelConfig | None = None, profile_tokens: int = 0,
                profile_sequences: int = 1) -> dict:
    """KV blocks of ``block_size`` tokens per TP group, with the terms that make them (bytes per GPU)."""
    t = tensor_parallel
    if not (isinstance(t, int) and t >= 1):
        raise ValueError(f"tensor_parallel: {t!r}; a whole number of GPUs >= 1")
    if cfg.n_heads % t:
        raise ValueError(f"tensor_parallel: {t} does not divide {cfg.name}'s {cfg.n_heads} query heads")
    if not 0 < gpu_memory_utilization <= 1:
        raise ValueError(f"gpu_memory_utilization: {gpu_memory_utilization!r}; a fraction in (0, 1]")
    weights = count_params(cfg).total * element_bytes("kv_capacity", "weight_dtype", weight_dtype) / t
    profile = 0.0
    if profile_tokens:
        from costmodel.step.memory import inference_memory

        m = inference_memory(cfg, profile_tokens, min(profile_sequences, profile_tokens), 0, 2.0, 2.0, kv_dtype, t,
                             logits_tokens=min(profile_sequences, profile_tokens))
        profile = float(m["activations"]) + float(m["workspace"])
    usable = gpu_memory_utilization * gpu.hbm_bytes - reserve_bytes - profile
    kv_heads_per_gpu = max(1, cfg.n_kv_heads // t)
    kv_token = kv_cache_bytes_per_token(cfg, kv_dtype) * kv_heads_per_gpu / cfg.n_kv_heads
    draft_weights = draft_kv_token = 0.0
    if draft is not None:
        draft_weights = count_params(draft).total * element_bytes("kv_capacity", "weight_dtype", weight_dtype)
        draft_kv_token = kv_cache_bytes_per_token(draft, kv_dtype)
    free = usable - weights - draft_weights
    block_bytes = block_size * (kv_token + draft_kv_token)
    blocks = int(batch_that_fits(free, block_bytes))
    return {
        "num_blocks": blocks, "block_size": block_size, "tokens": blocks * block_size,
        "weights_bytes_per_gpu": weights, "draft_weights_bytes_per_gpu": draft_weights,
        "kv_bytes_per_token_per_gpu": kv_token + draft_kv_token, "block_bytes_per_gpu": block_bytes,
        "usable_bytes_per_gpu": usable, "free_bytes_per_gpu": free, "profile_peak_bytes_per_gpu": profile,
        "gpu_memory_utilization": gpu_memory_utilization, "tensor_parallel": t,
        "kv_heads_per_gpu": kv_heads_per_gpu, "replicated_kv": cfg.n_kv_heads < t,
        "weights_fit": free > 0 and not math.isclose(free, 0.0),
    }


__all__ = ["GPU_MEMORY_UTILIZATION", "kv_capacity"]
