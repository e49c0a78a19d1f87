"""Inference on many GPUs: one prefill or decode step under TP x PP.

Per-GPU compute is the step predictor's (``predict_step(phase=..., tensor_parallel=t)``), sorted into
layer and end rows as for training (costmodel.parallel.compute.split_step). Communication:

- TP: the forward pass's two all-reduces per layer (Shoeybi et al. 2019 §3: after the attention
  output projection and after the MLP's down projection), each of the b·s_new·h activation in 16 bits
  (s_new = seq_len for prefill, 1 for decode);
- PP: one send/recv of that activation (b·s_new·h/t per TP rank) between consecutive stages.

A step's latency is one batch through all p stages: Σ stages + (p-1) transfers. Its throughput with the
pipeline kept full (p batches in flight, as a serving engine does) is one batch per busiest-stage time.
Memory per GPU is the step predictor's per-GPU memory at tensor_parallel=t with its weight and KV terms
split p ways (each stage holds L/p layers); activations are not split.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict

from costmodel.models import load_model
from costmodel.parallel.collectives import collective_time
from costmodel.parallel.compute import FRAMEWORK_KERNELS, split_step
from hardware_specs.cluster import load_cluster, with_nodes
from hardware_specs.loader import load_gpu


class InferencePrediction(BaseModel):
    model_config = ConfigDict(frozen=True)

    model: str
    cluster: str
    phase: str
    tp: int
    pp: int
    gpus: int
    batch: int
    seq_len: int
    time_s: float  # latency of one step for the batch, through all stages
    tokens_per_s: float  # throughput with the pipeline full
    memory_bytes: float  # per GPU
    breakdown: dict[str, float]


def tp_step_comm_s(cfg, cluster, tp: int, tokens, activation_bytes: int = 2):
    """Seconds of a forward step's TP communication for ``tokens`` new tokens: the two all-reduces
    per layer of the b·s_new·h activation (module docstring; Shoeybi et al. 2019 §3) on ``cluster``."""
    if tp <= 1:
        return 0.0 * np.asarray(tokens, dtype=float)
    cl = with_nodes(cluster, tp)
    act = np.asarray(tokens, dtype=float) * cfg.d_model * activation_bytes
    return 2 * cfg.n_layers * collective_time(cl, "all_reduce", act, tp)


def predict_inference(model, cluster, *, phase: str, batch: int, seq_len: int, tp: int = 1, pp: int = 1,
                      dtype: str = "bf16", **step_kwargs) -> InferencePrediction:
    from costmodel.step import predict_step

    if phase not in ("prefill", "decode"):
        raise ValueError(f"phase: {phase!r}; allowed: prefill, decode")
    cfg = load_model(model)
    cl = load_cluster(cluster) if isinstance(cluster, str) else cluster
    gpus = tp * pp
    cl = with_nodes(cl, gpus)
    if pp > cfg.n_layers:
        raise ValueError(f"pp: {pp} exceeds {cfg.name}'s {cfg.n_layers} layers")
    gpu = load_gpu(cl.gpu)
    kw = {k: v for k, v in FRAMEWORK_KERNELS.items() if k in ("norm", "rope")}
    kw.update(step_kwargs)
    res = predict_step(cfg, gpu, phase=phase, batch=batch, seq_len=seq_len, dtype=dtype, tensor_parallel=tp, **kw)
    comp = split_step(res, cfg.n_layers)
    new = seq_len if phase == "prefill" else 1
    act = batch * new * cfg.d_model * 2
    layers = -(-cfg.n_layers // pp)
    ar = float(tp_step_comm_s(cfg, cl, tp, batch * new)) / (2 * cfg.n_layers) if tp > 1 else 0.0
    p2p_nodes = 2 if tp >= cl.gpus_per_node else 1
    p2p = float(collective_time(cl, "send_recv", act / tp, 2, 1, p2p_nodes)) if pp > 1 else 0.0
    stage = layers * (float(comp.layer_s) + 2 * ar) + max(float(comp.first_s), float(comp.last_s)) * (pp > 1) \
        + (float(comp.first_s) + float(comp.last_s)) * (pp == 1)
    latency = cfg.n_layers * (float(comp.layer_s) + 2 * ar) + float(comp.first_s) + float(comp.last_s) + (pp - 1) * p2p
    mem = {k: float(np.asarray(v)) for k, v in res.memory.items()}
    per_gpu = sum(v / pp if any(w in k for w in ("weight", "kv")) else v for k, v in mem.items())
    return InferencePrediction(
        model=cfg.name, cluster=cl.name, phase=phase, tp=tp, pp=pp, gpus=gpus, batch=batch, seq_len=seq_len,
        time_s=latency, tokens_per_s=batch * new / stage,
        memory_bytes=per_gpu,
        breakdown={"compute_s": cfg.n_layers * float(comp.layer_s) + float(comp.first_s) + float(comp.last_s),
                   "tp_comm_s": cfg.n_layers * 2 * ar, "pp_comm_s": (pp - 1) * p2p, "busiest_stage_s": stage})


__all__ = ["InferencePrediction", "predict_inference"]
