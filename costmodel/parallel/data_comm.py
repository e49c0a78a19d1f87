"""Data-parallel communication per iteration, plain and with ZeRO stages 1-3.

Each GPU holds Ψ/(t·p) parameters (its tensor- and pipeline-parallel shard); the data-parallel
group of d GPUs holding the same shard is ranks ``t`` apart (Megatron orders ranks TP fastest,
then DP, then PP). Per iteration of m micro-batches (Rajbhandari et al. 2020, "ZeRO", §7):

    stage 0   all-reduce of the gradients, once (after the last micro-batch's backward)
    stage 1   reduce-scatter of the gradients + all-gather of the updated parameters, once
              (ZeRO §7.2.1: the same volume as the all-reduce)
    stage 2   as stage 1, but the gradients are reduce-scattered after every micro-batch, since no
              GPU keeps the whole gradient to accumulate into: m reduce-scatters + 1 all-gather
    stage 3   per micro-batch an all-gather of the parameters for the forward pass and another for
              the backward pass, and a reduce-scatter of the gradients (ZeRO §7.2.2: 1.5x the
              all-reduce volume per micro-batch)

Gradients move in ``grad_bytes`` per element (2: bf16; Megatron's --accumulate-allreduce-grads-in-fp32
would be 4), parameters in ``param_bytes`` (2).
"""

from __future__ import annotations

import numpy as np

from costmodel.parallel.collectives import collective_time, group_span


def dp_collectives(zero_stage, micro_batches):
    """{collective: (count, which)} per iteration; ``which`` is "grads" or "params"."""
    z = int(zero_stage)
    m = micro_batches
    if z == 0:
        return {"all_reduce": (1, "grads")}
    if z == 1:
        return {"reduce_scatter": (1, "grads"), "all_gather": (1, "params")}
    if z == 2:
        return {"reduce_scatter": (m, "grads"), "all_gather": (1, "params")}
    if z == 3:
        return {"reduce_scatter": (m, "grads"), "all_gather": (2 * m, "params")}
    raise ValueError(f"zero_stage: {zero_stage!r}; allowed: 0, 1, 2, 3")


def dp_time(cluster, shard_params, dp, tp, zero_stage, micro_batches, grad_bytes=2, param_bytes=2):
    """Seconds of data-parallel communication per iteration, none of it overlapped.

    ``shard_params`` is Ψ/(t·p), the parameters one GPU's DP group reduces; broadcasts over arrays
    (zero_stage elementwise too).
    """
    dp = np.asarray(dp)
    local, nodes = group_span(dp, tp, cluster.gpus_per_node)
    z = np.asarray(zero_stage)
    m = np.asarray(micro_batches, dtype=np.float64)
    grads = np.asarray(shard_params, dtype=np.float64) * grad_bytes
    params = np.asarray(shard_params, dtype=np.float64) * param_bytes
    ar = collective_time(cluster, "all_reduce", grads, dp, local, nodes)
    rs = collective_time(cluster, "reduce_scatter", grads, dp, local, nodes)
    ag = collective_time(cluster, "all_gather", params, dp, local, nodes)
    t = np.select([z == 0, z == 1, z == 2, z == 3], [ar, rs + ag, m * rs + ag, m * rs + 2 * m * ag], np.nan)
    return np.where(dp > 1, t, 0.0)


__all__ = ["dp_collectives", "dp_time"]
