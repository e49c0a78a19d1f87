"""Whole-model steps: prefill, decode and training of a decoder-only transformer, op by op.

    ops        the operations of a step as plain PyTorch launches them (FLOPs, bytes, kernels, saved bytes)
    attention  the fused attention kernel's counts and time
    memory     peak device memory per term
    predict    predict_step / predict_batch: time, tokens/s, memory, per-op rows
    graph      the step as a networkx DAG of kernels (timeline, Chrome trace)
"""

from costmodel.step.predict import DEFAULT_IMPL, PHASES, OpRow, StepResult, predict_batch, predict_step

__all__ = ["DEFAULT_IMPL", "PHASES", "OpRow", "StepResult", "predict_batch", "predict_step"]
