"""Tensor-parallel communication per transformer layer (Megatron column/row splits).

Shoeybi et al. 2019 (Megatron-LM) §3 split the attention block's QKV and the MLP's first linear by
columns and the output projection and second linear by rows, so each block needs one all-reduce of
its output (operator ḡ) in the forward pass and one of the input gradient (operator f) in the
backward pass. Korthikanti et al. 2022 §4.2.2: "tensor parallelism requires four all-reduces in a
single forward and backward pass whereas tensor together with sequence parallelism requires four
all-gathers and four reduce-scatters"; since a ring all-reduce is a reduce-scatter followed by an
all-gather, both move the same bytes. Each message is the layer's activation, b·s·h elements
(nccl-tests' S: the all-reduce buffer, the all-gather / reduce-scatter total array).

Counted per layer and per micro-batch here:

    no SP    forward 2 all-reduce, backward 2 all-reduce
    SP       forward 2 all-gather + 2 reduce-scatter, backward 2 reduce-scatter + 2 all-gather,
             and 2 more all-gathers in the backward pass: Megatron does not keep the gathered input
             of the column-parallel linears and gathers it again for the weight gradient
             (Korthikanti §4.2.2; Megatron-LM ``LinearWithGradAccumulationAndAsyncCommunication``)
    full recompute   the forward pass runs again in the backward pass, with its communication.
"""

from __future__ import annotations

import numpy as np

from costmodel.parallel.collectives import collective_time


def tp_collectives_per_layer(sequence_parallel: bool, recompute: str = "none") -> dict[str, int]:
    """Collectives of one layer, one micro-batch, forward + backward: {collective: count}."""
    if recompute not in ("none", "selective", "full"):
        raise ValueError(f"recompute: unknown {recompute!r}; allowed: 'none', 'selective', 'full'")
    redo = 1 if recompute == "full" else 0
    if sequence_parallel:
        return {"all_gather": 2 + 2 + 2 + 2 * redo, "reduce_scatter": 2 + 2 + 2 * redo}
    return {"all_reduce": 2 + 2 + 2 * redo}


def tp_message_bytes(micro_batch, seq_len, d_model, activation_bytes=2):
    """One TP message: the b·s·h activation (nccl-tests' S for all of these collectives)."""
    return np.asarray(micro_batch, dtype=np.float64) * seq_len * d_model * activation_bytes


def tp_wire_bytes_per_layer(micro_batch, seq_len, d_model, tp, sequence_parallel: bool, recompute: str = "none",
                            activation_bytes=2, count_gather_redo: bool = False):
    """Bytes one GPU sends per layer and micro-batch: Σ count·factor·S over the collectives.

    With a ring, all-reduce sends 2(t-1)/t·S, all-gather and reduce-scatter (t-1)/t·S each (nccl-tests'
    bus factors), so 4 all-reduces and 4 all-gathers + 4 reduce-scatters send the same bytes
    (Korthikanti §4.2.2). ``count_gather_redo=False`` leaves out SP's backward re-gathers so the
    comparison is the paper's.
    """
    from costmodel.parallel.collectives import bus_factor

    S = tp_message_bytes(micro_batch, seq_len, d_model, activation_bytes)
    counts = tp_collectives_per_layer(sequence_parallel, recompute)
    if sequence_parallel and not count_gather_redo:
        counts = dict(counts, all_gather=counts["all_gather"] - 2)
    return sum(c * bus_factor(k, tp) * S for k, c in counts.items())


def tp_time_per_layer(cluster, micro_batch, seq_len, d_model, tp, sequence_parallel: bool,
                      recompute: str = "none", activation_bytes=2):
    """Seconds of TP communication per layer and micro-batch (TP groups are contiguous ranks)."""
    S = tp_message_bytes(micro_batch, seq_len, d_model, activation_bytes)
    total = 0.0
    for coll, count in tp_collectives_per_layer(sequence_parallel, recompute).items():
        total = total + count * collective_time(cluster, coll, S, tp)
    return total


__all__ = ["tp_collectives_per_layer", "tp_message_bytes", "tp_time_per_layer", "tp_wire_bytes_per_layer"]
