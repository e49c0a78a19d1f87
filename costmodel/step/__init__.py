"""Whole-model steps: prefill, decode and training of a decoder-only transformer, op by op.

    ops        the operations of a step as plain PyTorch launches them (FLOPs, bytes, kernels, saved bytes)
    attention  the fused attention kernel's counts and time
    memory     peak device memory per term
    predict    predict_step / predict_batch: time, tokens/s, memory, per-op rows
    graph      the step as a networkx DAG of op instances and its schedule
    timeline   plotly Gantt and Chrome trace of a predicted step
    sdpa_dispatch  the SDPA backend torch picks by default
"""

from costmodel.step.predict import PHASES, OpRow, StepResult, predict_batch, predict_step

__all__ = ["PHASES", "OpRow", "StepResult", "predict_batch", "predict_step"]
