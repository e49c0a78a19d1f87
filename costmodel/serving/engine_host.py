"""The serving engine's own host time per step: scheduling, building the step's inputs, issuing it.

A synchronous engine (vLLM's V0, our GPU loop ``costmodel.validation.serving_loop``) does, between
two forward passes, work on the CPU that the GPU waits for: the scheduler forms the batch, the
inputs (token ids, positions, slot mapping, block tables, lengths) are built and copied, and a
CUDA graph's static inputs are filled before it is replayed. The step predictor prices the forward
pass (its kernels, and an eager forward's launches); this adds the rest:

    host_s = graph_step_s + graph_per_request_s x requests          (decode-only step, a CUDA graph)
    host_s = prefill_step_s + prefill_per_token_s x new tokens      (a step holding prefill)

A step holding prefill runs as ``prefill_launch`` says. ``eager`` (vLLM V0): its forward is the
step predictor's eager timeline with, per layer, the engine's own host work around each attention
call, ``eager_attention_call_s`` a call, where the op list holds one SDPA call
(``costmodel.step.predict_batch``'s ``attention_host_per_call_s``): on the timeline, so it costs
time only where the host is the bottleneck. ``graph``: a CUDA graph per token bucket, the step's
tokens padded up to a multiple of ``prefill_token_multiple`` (``pad_prefill``: the padding priced
as one more request of that many new tokens; vLLM V1 pads its graphs' tokens the same way).

Parameters with a unit each, read from ``costmodel/serving/engines/<name>.yaml``; ``ideal``
(all zero) is an engine with no host time. ``torch-loop`` is the measured loop on the H200
machine's host (``costmodel.validation.serving_engine_fit``: fitted on one model's recorded
steps, checked on the other's).
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Literal

import numpy as np

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hardware_specs.yaml_files import field_errors, load_mapping, read_text

ENGINES_DIR = Path(__file__).with_name("engines")


class EngineMeasured(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str = Field(min_length=1)
    host: str = Field(min_length=1)
    date: _dt.date


class EngineHost(BaseModel):
    """Seconds of host work per step outside the forward pass (module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    description: str = Field(min_length=1)
    graph_step_s: float = Field(ge=0, allow_inf_nan=False)
    graph_per_request_s: float = Field(ge=0, allow_inf_nan=False)
    prefill_step_s: float = Field(ge=0, allow_inf_nan=False)
    prefill_per_token_s: float = Field(ge=0, allow_inf_nan=False)
    prefill_launch: Literal["eager", "graph"] = "eager"
    prefill_token_multiple: int = Field(1, ge=1)
    eager_attention_call_s: float = Field(0.0, ge=0, allow_inf_nan=False)
    measured: EngineMeasured | None = None
    check: dict | None = None  # the held-out check of a fitted engine (what it was checked on, errors)

    def step_s(self, graph_decode: bool, requests: int, new_tokens: int) -> float:
        """Host seconds of a step: a decode-only CUDA graph (``graph_decode``) or any other."""
        if graph_decode:
            return self.graph_step_s + self.graph_per_request_s * requests
        return self.prefill_step_s + self.prefill_per_token_s * new_tokens

    def pad_prefill(self, new_tokens, context_lens):
        """(batches, requests) arrays of steps holding prefill, with one more column: the padding of
        a prefill graph's tokens to ``prefill_token_multiple`` as a request of that many new tokens
        and no context (the padded rows go through every token-wise op and no attention tile)."""
        if self.prefill_launch != "graph":
            return np.atleast_2d(new_tokens), np.atleast_2d(context_lens)
        return pad_tokens(new_tokens, context_lens, self.prefill_token_multiple)

    @property
    def is_ideal(self) -> bool:
        return not any((self.graph_step_s, self.graph_per_request_s, self.prefill_step_s, self.prefill_per_token_s,
                        self.eager_attention_call_s)) and self.prefill_token_multiple == 1


def pad_tokens(new_tokens, context_lens, multiple: int):
    """(batches, requests) arrays with one more column where ``multiple`` > 1: each row's new tokens
    padded up to a multiple of ``multiple``, as a request of that many new tokens and no context."""
    new, ctx = np.atleast_2d(new_tokens), np.atleast_2d(context_lens)
    if multiple == 1:
        return new, ctx
    pad = -new.sum(axis=1, keepdims=True) % multiple
    return np.hstack([new, pad]), np.hstack([ctx, np.zeros_like(pad)])


def engine_names() -> list[str]:
    return sorted(p.stem for p in ENGINES_DIR.glob("*.yaml"))


def load_engine(engine: str | EngineHost) -> EngineHost:
    """An engine by name (``engine_names()``), or an ``EngineHost`` as it is."""
    if isinstance(engine, EngineHost):
        return engine
    path = ENGINES_DIR / f"{engine}.yaml"
    if not isinstance(engine, str) or not path.is_file():
        raise ValueError(f"engine: {engine!r}; allowed: {', '.join(engine_names())}")
    raw = load_mapping(read_text(path), str(path), "serving engine file")
    try:
        return EngineHost.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"{path}: {field_errors(exc, 'engine')}") from None


__all__ = ["EngineHost", "engine_names", "load_engine", "pad_tokens"]
