"""``predict_training``: one layout on one cluster -> iteration time, throughput, MFU, memory per GPU."""

from __future__ import annotations

from typing import Any, Callable

from pydantic import BaseModel, ConfigDict

from costmodel.flops import forward_flops_per_token
from costmodel.models import ModelConfig, load_model
from costmodel.parallel.compute import micro_batch_compute
from costmodel.parallel.layout import Layout
from costmodel.parallel.pipeline import bubble_fraction
from costmodel.parallel.training import (
    PEAK_UNIT, iteration_time, memory_per_gpu, model_flops_per_iteration,
)
from hardware_specs.cluster import load_cluster, with_nodes
from hardware_specs.interconnect import ClusterSpec
from hardware_specs.loader import load_gpu

ASSUMPTIONS = (
    "ranks ordered TP fastest, then DP, then PP (Megatron's groups)",
    "TP communication on the critical path, not overlapped with compute",
    "pipeline point-to-point messages b*s*h/t (scatter/gather optimization), 2*v per micro-batch",
    "collectives: NCCL-style ring/tree/NVLS alpha-beta over the spanned fabric (costmodel/parallel/collectives.py)",
)


class TrainingPrediction(BaseModel):
    """One training iteration of ``layout`` on ``cluster``: seconds, throughput, bytes per GPU."""

    model_config = ConfigDict(frozen=True)

    model: str
    cluster: str
    gpu: str
    layout: Layout
    dp: int
    micro_batches: int
    seq_len: int
    time_s: float
    tokens_per_s: float
    model_tflops_per_gpu: float  # Narayanan et al. 2021 eq. (3) FLOPs / time / GPUs
    mfu: float  # PaLM model FLOPs (no recompute) / time / (GPUs x dense peak)
    memory_bytes: float  # busiest GPU
    fits: bool  # memory_bytes <= the GPU's HBM
    bubble_fraction: float
    breakdown: dict[str, float]  # seconds per part (iteration_time)
    memory: dict[str, float]  # bytes per part (memory_per_gpu)
    compute: dict[str, float]  # the step predictor's per-micro-batch seconds
    assumptions: list[str]


def predict_training(model: ModelConfig | str, cluster: ClusterSpec | str, layout: Layout | None = None, *,
                     seq_len: int, dtype: str = "bf16", flash_attention: bool = True, dropout: bool = False,
                     step_fn: Callable | None = None, step_kwargs: dict[str, Any] | None = None,
                     **layout_kwargs) -> TrainingPrediction:
    """Predict one training iteration; ``layout`` or its fields as keywords (gpus=, tp=, pp=, ...).

    ``cluster`` is cut to ``layout.gpus`` GPUs (whole nodes). Per-GPU compute comes from the step
    predictor (``costmodel.step.predict_step``, or ``step_fn``); communication, pipeline and memory
    from this package.
    """
    cfg = load_model(model)
    cl = load_cluster(cluster) if isinstance(cluster, str) else cluster
    lay = layout if layout is not None else Layout(**layout_kwargs)
    lay.check_model(cfg)
    if seq_len < 1:
        raise ValueError(f"seq_len: must be >= 1, got {seq_len!r}")
    cl = with_nodes(cl, lay.gpus)
    gpu = load_gpu(cl.gpu)
    comp = micro_batch_compute(cfg, gpu, lay.micro_batch, seq_len, tensor_parallel=lay.tp,
                               sequence_parallel=lay.sequence_parallel, recompute=lay.recompute, dtype=dtype,
                               step_fn=step_fn, **(step_kwargs or {}))
    parts = iteration_time(cl, cfg, comp, seq_len=seq_len, tp=lay.tp, pp=lay.pp, dp=lay.dp, micro_batch=lay.micro_batch,
                           micro_batches=lay.micro_batches, virtual_stages=lay.virtual_stages,
                           sequence_parallel=lay.sequence_parallel, recompute=lay.recompute,
                           zero_stage=lay.zero_stage, overlap_dp=lay.overlap_dp)
    mem = memory_per_gpu(cfg, seq_len=seq_len, tp=lay.tp, pp=lay.pp, dp=lay.dp, micro_batch=lay.micro_batch,
                         micro_batches=lay.micro_batches, virtual_stages=lay.virtual_stages, schedule=lay.schedule,
                         sequence_parallel=lay.sequence_parallel, recompute=lay.recompute, zero_stage=lay.zero_stage,
                         flash_attention=flash_attention, dropout=dropout)
    t = float(parts["time_s"])
    tokens = lay.global_batch * seq_len
    peak = gpu.peak_flops_per_s[PEAK_UNIT.get(dtype, "bf16_tensor")]
    assumptions = list(ASSUMPTIONS)
    assumptions.append("data-parallel communication overlapped with backward compute" if lay.overlap_dp
                       else "data-parallel communication not overlapped")
    return TrainingPrediction(
        model=cfg.name, cluster=cl.name, gpu=gpu.name, layout=lay, dp=lay.dp, micro_batches=lay.micro_batches,
        seq_len=seq_len, time_s=t, tokens_per_s=tokens / t,
        model_tflops_per_gpu=float(model_flops_per_iteration(cfg, seq_len, lay.global_batch, lay.recompute))
        / t / lay.gpus / 1e12,
        # PaLM's model FLOPs, 3·F per token non-causal, as costmodel.flops.model_flops_utilization counts them
        # (that function refuses a result above 100%, a check meant for measured throughputs)
        mfu=3 * float(forward_flops_per_token(cfg, seq_len, causal=False, sliding_window=None).total) * tokens / t
        / (lay.gpus * peak),
        memory_bytes=float(mem["memory_bytes"]), fits=bool(mem["memory_bytes"] <= gpu.hbm_bytes),
        bubble_fraction=float(bubble_fraction(lay.pp, lay.micro_batches, lay.virtual_stages, lay.schedule)),
        breakdown={k: float(v) for k, v in parts.items()}, memory={k: float(v) for k, v in mem.items()},
        compute={k: float(getattr(comp, k)) for k in ("layer_s", "first_s", "last_s", "optimizer_s", "step_time_s")},
        assumptions=assumptions,
    )


__all__ = ["ASSUMPTIONS", "TrainingPrediction", "predict_training"]
