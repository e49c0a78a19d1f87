"""The serving engine's own host time per step: scheduling, building the step's inputs, issuing it.

A synchronous engine (vLLM's V0, our GPU loop ``costmodel.validation.serving_loop``) does, between
two forward passes, work on the CPU that the GPU waits for: the scheduler forms the batch, the
inputs (token ids, positions, slot mapping, block tables, lengths) are built and copied, and a
decode-only step's CUDA graph is replayed after its static inputs are filled. The step predictor
prices the forward pass (its kernels, and an eager forward's launches); this adds the rest:

    host_s = graph_step_s + graph_per_request_s x requests          (decode-only step, a CUDA graph)
    host_s = eager_step_s + eager_per_token_s x new tokens          (a step holding prefill, eager)

An eager step's forward is the step predictor's eager timeline with, per layer, the engine's own
host work around each attention call (one per prefill chunk, one for all the step's decodes:
slicing, gathering the chunk's context from the pools, the paged kernel's launch from Python),
``eager_attention_call_s`` a call, where the op list holds one SDPA call
(``costmodel.step.predict_batch``'s ``attention_host_per_call_s``): on the timeline, so it costs
time only where the host is the bottleneck.

Five parameters with a unit each, read from ``costmodel/serving/engines/<name>.yaml``; ``ideal``
(all zero) is an engine with no host time. ``torch-loop`` is the measured loop on the H200
machine's host (``costmodel.validation.serving_engine_fit``: fitted on one model's recorded
steps, checked on the other's).
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

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
    eager_step_s: float = Field(ge=0, allow_inf_nan=False)
    eager_per_token_s: float = Field(ge=0, allow_inf_nan=False)
    eager_attention_call_s: float = Field(0.0, ge=0, allow_inf_nan=False)
    measured: EngineMeasured | None = None
    check: dict | None = None  # the held-out check of a fitted engine (what it was checked on, errors)

    def step_s(self, graph: bool, requests: int, new_tokens: int) -> float:
        if graph:
            return self.graph_step_s + self.graph_per_request_s * requests
        return self.eager_step_s + self.eager_per_token_s * new_tokens

    @property
    def is_ideal(self) -> bool:
        return not any((self.graph_step_s, self.graph_per_request_s, self.eager_step_s, self.eager_per_token_s,
                        self.eager_attention_call_s))


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


__all__ = ["EngineHost", "engine_names", "load_engine"]
