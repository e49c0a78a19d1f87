"""The attention core of one layer (QKᵀ, softmax, PV) as one fused kernel, vectorized.

Counts are FlashAttention's (Dao et al. 2022 §3.2; Dao 2023 §3): the score matrix never
reaches DRAM, so DRAM sees Q, K and V read once and O written once (K/V re-reads across
query blocks are taken to hit L2). Matmul FLOPs are ``costmodel.flops``' attn_scores +
attn_values per token, times the tokens: not restated here. Against
``simulators.simulate_attention`` (``tests/test_step.py``): a decode step's FLOPs and DRAM bytes
agree with 'flash-decoding' to 0.01 %; for a causal prefill 'flash2' counts whole diagonal
tiles (16 % more FLOPs at 2k tokens) and ~8 % more DRAM bytes (its L2 wave model).

Time: ``max(flops / (eff · peak), hbm_bytes / bandwidth) + overhead`` with ``eff`` the fitted
attention efficiency (``GemmModel.attention_efficiency``, a fraction of the tensor peak an SDPA
kernel sustains) and the memory-op bandwidth. The backward pass does 2.5x the forward's
matmul work on the GPU (FlashAttention-2 Algorithm 2 recomputes S = QKᵀ: five matmuls
against the forward's two) while the model-FLOPs convention (``costmodel.flops``) books 2x;
the op row reports the model FLOPs and times the hardware work.
"""

from __future__ import annotations

import numpy as np

from hardware_specs.op_timing import gemm_model, memory_ops_model
from hardware_specs.roofline import matmul_unit

BWD_HARDWARE_OVER_FORWARD = 2.5  # FA2 Algorithm 2: 5 matmuls (S, dP, dV, dQ, dK) vs the forward's 2
_DEFAULT_ATTENTION_EFFICIENCY = 0.5  # FA2 paper Fig. 5-6: 50-73% of A100 peak fwd; less for bwd and H100


def attention_efficiency(spec, dtype: str, pass_: str) -> float:
    model = gemm_model(spec)
    table = model.attention_efficiency if pass_ == "fwd" else model.attention_bwd_efficiency
    return (table or {}).get(dtype, _DEFAULT_ATTENTION_EFFICIENCY)


def attention_time(spec, flops, hbm_bytes, dtype: str = "bf16", pass_: str = "fwd"):
    """(time_s, compute_s, memory_s) of one fused attention kernel doing ``flops`` model FLOPs."""
    compute_dtype = "bf16" if dtype in ("int8", "int4") else dtype
    peak = spec.peak_flops_per_s[matmul_unit(compute_dtype, True)]
    hw = np.asarray(flops, dtype=np.float64) * (1.0 if pass_ == "fwd" else BWD_HARDWARE_OVER_FORWARD / 2.0)
    compute_s = hw / (attention_efficiency(spec, compute_dtype, pass_) * peak)
    memory_s = np.asarray(hbm_bytes, dtype=np.float64) / memory_ops_model(spec).bandwidth_Bps
    return np.maximum(compute_s, memory_s) + gemm_model(spec).overhead_s, compute_s, memory_s


def attention_hbm_bytes(q_tokens, kv_tokens, q_dim: int, kv_dim: int, e: float, e_kv: float, pass_: str = "fwd"):
    """DRAM bytes of a fused attention kernel: Q, K, V read once, O written once (fwd); the
    backward reads Q, K, V, O, dO and writes dQ, dK, dV (plus the fp32 row statistics, small)."""
    q = np.asarray(q_tokens, dtype=np.float64) * q_dim
    kv = np.asarray(kv_tokens, dtype=np.float64) * kv_dim
    if pass_ == "fwd":
        return e * 2 * q + e_kv * 2 * kv
    return e * 4 * q + e_kv * 2 * kv + e * q + e_kv * 2 * kv


__all__ = ["BWD_HARDWARE_OVER_FORWARD", "attention_efficiency", "attention_hbm_bytes", "attention_time"]
