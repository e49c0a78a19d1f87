"""One training iteration on many GPUs: TP x PP x DP, its time, throughput, MFU and memory per GPU.

Composition (each piece in its own module, each with its source):

    t_mb      = ceil(L/p)·t_layer + t_ends                 compute of one micro-batch on the busiest
                                                          device (costmodel.parallel.compute, from the
                                                          step predictor; t_ends = embedding and output)
              + ceil(L/p)·t_tp_layer                      TP collectives (tensor_comm), not overlapped
              + 2·v·t_p2p                                  activations / gradients between stages
    T_pipe    = (m + (p-1)/v)·t_mb                        pipeline.py (Narayanan et al. 2021 §2.2)
    T         = T_pipe + T_dp_exposed + t_optimizer       data_comm.py; the optimizer on 1/(p·d_zero)
                                                          of the model

Point-to-point messages are b·s·h/t elements: Megatron's scatter/gather optimization (Narayanan et
al. 2021 §4.1) sends each TP rank's slice between stages. Ranks are ordered TP fastest, then DP,
then PP (Megatron's groups), so TP groups are contiguous, DP groups are ``t`` apart and pipeline
neighbours ``t·d`` apart (on other nodes once t·d >= GPUs per node).

Overlap is an assumption, off by default: ``overlap_dp=True`` hides the data-parallel
communication behind backward compute (for ZeRO 0/1 behind the last micro-batch's backward pass,
taken as 2/3 of its forward + backward, Kaplan et al. 2020 §2.1: the backward pass costs twice the
forward; for ZeRO 2/3, whose collectives run every micro-batch, behind all m micro-batches).
TP communication is never overlapped (Megatron-LM of 2021-2022 runs it on the critical path).

Memory per GPU is ``costmodel.training_memory.training_memory`` (model states with ZeRO, activations
per Korthikanti et al. 2022), with pipeline parallelism applied on top of it: model states / p, and
the first stage holding min(p, m) micro-batches of L/p layers (1F1B: L layers' worth of one
micro-batch, Korthikanti eq. 4), L·(1 + (p-1)/(p·v)) for the interleaved schedule (Korthikanti
§4.2.3), m micro-batches for GPipe.

Throughput figures: ``model_tflops_per_gpu`` counts FLOPs as Narayanan et al. 2021 eq. (3) does,
generalized through costmodel.flops (forward FLOPs with a full, non-causal s x s attention): per
token (3 + r)·F_layers + 3·F_output with r = 1 under full recomputation (eq. 3's 96·B·s·l·h²·(1 +
s/6h + V/16lh) exactly, for a GPT layer) and r = 0 otherwise; ``mfu`` is PaLM's (Chowdhery et al.
2022 App. B, no recomputation counted: costmodel.flops.model_flops_utilization) over the dense
bf16 tensor peak.
"""

from __future__ import annotations

import numpy as np

from costmodel.flops import forward_flops_per_token
from costmodel.parallel.collectives import collective_time
from costmodel.parallel.data_comm import dp_time
from costmodel.parallel.tensor_comm import tp_time_per_layer
from costmodel.params import count_params
from costmodel.training_memory import training_memory

PEAK_UNIT = {"bf16": "bf16_tensor", "fp16": "fp16_tensor", "fp8": "fp8_tensor", "fp32": "tf32_tensor"}


def iteration_time(cluster, cfg, compute, *, seq_len, tp, pp, dp, micro_batch, micro_batches, virtual_stages,
                   sequence_parallel: bool, recompute: str, zero_stage, overlap_dp=False, activation_bytes=2,
                   grad_bytes=2):
    """Seconds per iteration and its parts; every layout argument may be an array (they broadcast).

    ``compute`` is a MicroBatchCompute for the same micro_batch (arrays broadcast with the layout's).
    ``virtual_stages`` 1 means a non-interleaved schedule (GPipe and 1F1B take the same time).
    """
    tp, pp, dp, b, m, v, z = (np.asarray(x) for x in (tp, pp, dp, micro_batch, micro_batches, virtual_stages,
                                                       zero_stage))
    L, h = cfg.n_layers, cfg.d_model
    layers = -(-L // pp)  # the busiest stage's layers
    ends = np.where(pp == 1, compute.first_s + compute.last_s, np.maximum(compute.first_s, compute.last_s))
    compute_mb = layers * compute.layer_s + ends
    tp_mb = layers * tp_time_per_layer(cluster, b, seq_len, h, tp, sequence_parallel, recompute, activation_bytes)
    msg = b * seq_len * h * activation_bytes / tp
    p2p_nodes = np.where(tp * dp >= cluster.gpus_per_node, 2, 1)
    p2p = np.where(pp > 1, 2 * v * collective_time(cluster, "send_recv", msg, 2, 1, p2p_nodes), 0.0)
    t_mb = compute_mb + tp_mb + p2p
    pipe = (m + (pp - 1) / v) * t_mb
    shard = count_params(cfg).total / (tp * pp)
    dp_s = dp_time(cluster, shard, dp, tp, z, m, grad_bytes=grad_bytes)
    window = np.where(z >= 2, m * compute_mb, compute_mb * 2 / 3)
    dp_exposed = np.maximum(dp_s - window, 0.0) if overlap_dp else dp_s
    optimizer = compute.optimizer_s / pp / np.where(z >= 1, dp, 1)
    total = pipe + dp_exposed + optimizer
    return {
        "time_s": total, "pipeline_s": pipe, "compute_s": m * compute_mb, "tp_comm_s": m * tp_mb,
        "pp_comm_s": m * p2p, "bubble_s": (pp - 1) / v * t_mb, "dp_comm_s": dp_s, "dp_comm_exposed_s": dp_exposed,
        "optimizer_s": optimizer,
    }


def memory_per_gpu(cfg, *, seq_len, tp, pp, dp, micro_batch, micro_batches, virtual_stages, schedule: str,
                   sequence_parallel: bool, recompute: str, zero_stage: int, flash_attention=True, dropout=False):
    """Bytes on the busiest GPU (first or last pipeline stage); arrays broadcast (zero_stage scalar)."""
    tm = training_memory(cfg, batch=micro_batch, seq_len=seq_len, tensor_parallel=tp, sequence_parallel=sequence_parallel,
                         recompute=recompute, flash_attention=flash_attention, dropout=dropout, zero_stage=zero_stage,
                         data_parallel=dp)
    pp, m, v = (np.asarray(x, dtype=np.float64) for x in (pp, micro_batches, virtual_stages))
    states = np.asarray(tm.model_states_bytes, dtype=np.float64) / pp
    per_mb_layers = np.asarray(tm.activations_layers_bytes, dtype=np.float64)  # L layers, one micro-batch
    if schedule == "gpipe":
        first_layers = per_mb_layers / pp * m
        in_flight = m
    elif schedule == "interleaved":
        first_layers = per_mb_layers * (1 + (pp - 1) / (pp * v))
        in_flight = np.minimum(pp, m)
    else:
        first_layers = per_mb_layers / pp * np.minimum(pp, m)
        in_flight = np.minimum(pp, m)
    first = states + first_layers + in_flight * tm.activations_embedding_bytes
    last = states + per_mb_layers / pp + tm.activations_output_bytes
    # one stage: micro-batches run one after another (gradient accumulation), one in flight
    single = states + per_mb_layers + tm.activations_embedding_bytes + tm.activations_output_bytes
    total = np.where(pp == 1, single, np.maximum(first, last))
    return {"memory_bytes": total, "model_states_bytes": states,
            "activations_bytes": total - states, "weights_bytes": np.asarray(tm.weights_bytes) / pp,
            "gradients_bytes": np.asarray(tm.gradients_bytes) / pp, "optimizer_bytes": np.asarray(tm.optimizer_bytes) / pp}


def model_flops_per_iteration(cfg, seq_len, global_batch, recompute: str = "none"):
    """Narayanan et al. 2021 eq. (3), generalized (module docstring): FLOPs of one iteration."""
    fwd = forward_flops_per_token(cfg, seq_len, causal=False, sliding_window=None)
    r = 1 if recompute == "full" else 0
    return global_batch * seq_len * ((3 + r) * fwd.layers + 3 * fwd.lm_head)



__all__ = ["PEAK_UNIT", "iteration_time", "memory_per_gpu", "model_flops_per_iteration"]
