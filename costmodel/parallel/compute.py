"""Per-GPU compute of one micro-batch, split the way a pipeline needs it, from the whole-model step.

The compute model is the ``step`` package's (``costmodel.step.predict_step(..., phase="train",
tensor_parallel=t, sequence_parallel=...)``); nothing here times a kernel. This module only sorts
its op rows into what a pipeline stage runs:

- ``layer_s``: forward + backward (+ recomputation) of one transformer layer for one micro-batch
  (the rows with a layer index, summed, divided by the number of layers);
- ``first_s`` / ``last_s``: what only the first stage runs (the embedding rows) and what only the
  last stage runs (final norm, output projection, loss: every other row without a layer);
- ``optimizer_s``: the optimizer rows, once per iteration, for the whole model's TP shard.

The rows' times are GPU times (``OpRow.time_s``: all ``count`` instances); the step's ``time_s``
also holds eager launch gaps, spread over the parts in proportion.

``step_fn`` replaces ``predict_step`` (same signature and result), for tests.

Kernel setting: ``FRAMEWORK_KERNELS``, the step predictor's fused norm and RoPE kernels, is the default
here (a Megatron-class trainer: Megatron-LM fuses LayerNorm/RMSNorm and RoPE); ``step_kwargs`` override it.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from costmodel.calculator_io import Number, Result


FRAMEWORK_KERNELS = {"norm": "fused", "rope": "fused"}


class MicroBatchCompute(Result):
    """Seconds for one micro-batch on one GPU of a TP group (arrays when micro_batch is)."""

    layer_s: Number  # one transformer layer, forward + backward (+ recompute)
    first_s: Number  # embedding (first pipeline stage only)
    last_s: Number  # final norm, output projection, loss (last stage only)
    optimizer_s: Number  # optimizer step over the whole model's TP shard, once per iteration
    step_time_s: Number  # the step predictor's whole-model time, for reference


def _get(row: Any, key: str):
    return row[key] if isinstance(row, dict) else getattr(row, key)


def split_step(result: Any, n_layers: int) -> MicroBatchCompute:
    """Sort a StepResult's ops rows into layer / first / last / optimizer seconds."""
    layer = first = last = opt = 0.0
    for row in result.ops:
        t = np.asarray(_get(row, "time_s"), dtype=np.float64)
        part = _get(row, "part")
        name = str(_get(row, "name")).lower()
        if part == "optimizer":
            opt = opt + t
        elif _get(row, "layer") is not None:
            layer = layer + t
        elif "embed" in name and "unembed" not in name:
            first = first + t
        else:
            last = last + t
    # the rows hold GPU time; the step's time_s adds the launch gaps of eager execution: spread them pro rata
    gpu_time = getattr(result, "gpu_time_s", None)
    scale = 1.0 if gpu_time is None else np.asarray(result.time_s, dtype=np.float64) / np.asarray(gpu_time)
    return MicroBatchCompute(layer_s=scale * layer / n_layers, first_s=scale * first, last_s=scale * last,
                             optimizer_s=scale * opt, step_time_s=result.time_s)


def micro_batch_compute(model, gpu, micro_batch, seq_len, *, tensor_parallel=1, sequence_parallel=False,
                        recompute="none", dtype="bf16", step_fn: Callable | None = None,
                        **step_kwargs) -> MicroBatchCompute:
    """One micro-batch's compute on one GPU of a ``tensor_parallel`` group, from the step predictor."""
    if step_fn is None:
        from costmodel.step import predict_step as step_fn  # the step helper's model (costmodel/step/)
    kwargs = {**FRAMEWORK_KERNELS, **step_kwargs}
    result = step_fn(model, gpu, phase="train", batch=micro_batch, seq_len=seq_len, dtype=dtype,
                     recompute=recompute, tensor_parallel=tensor_parallel, sequence_parallel=sequence_parallel,
                     **kwargs)
    return split_step(result, model.n_layers)


__all__ = ["MicroBatchCompute", "micro_batch_compute", "split_step"]
