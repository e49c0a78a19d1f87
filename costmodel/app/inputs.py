"""What the web app asks for: the choices offered, and turning a choice into a spec and a model.

A GPU is a bundled datasheet name, a calibrated overlay name, or an uploaded YAML file in the
``GPUSpec`` schema (an overlay with ``base:`` too); a model is a preset name or an uploaded
YAML file in the ``ModelConfig`` schema. Validation is pydantic's (``AppInputs``) and the
loaders'; every error names the field, the value and what is allowed. No Dash here.
"""

from __future__ import annotations

import base64
import os
import tempfile
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from costmodel.models import ModelConfig, list_models, load_model, model_from_yaml
from hardware_specs import GPUSpec, list_calibrated, list_gpus, load_gpu

PHASES = ("prefill", "decode", "train", "serving")
DTYPES = ("bf16", "fp16", "fp8")  # the step predictor's (costmodel.step.predict.DTYPES)
TENSOR_PARALLEL = (1, 2, 4, 8)
AUTO = "auto"  # attention: the implementation the step predictor picks for the GPU and shape
UPLOAD_PREFIX = "upload:"  # a dropdown value naming an uploaded file, not a bundled name

DEFAULT_GPU = "h200-sxm-141gb"
DEFAULT_MODEL = "llama3-8b"


class AppInputs(BaseModel):
    """One what-if question, as the page's controls set it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpu: str = DEFAULT_GPU  # bundled or calibrated name, or UPLOAD_PREFIX + file name
    model: str = DEFAULT_MODEL
    phase: Literal["prefill", "decode", "train", "serving"] = "prefill"
    batch: int = Field(default=1, gt=0, le=1 << 16)
    seq_len: int = Field(default=4096, gt=0, le=1 << 22)  # prompt tokens (prefill, train) or cache length (decode)
    dtype: Literal["bf16", "fp16", "fp8"] = "bf16"
    tensor_parallel: int = Field(default=1, gt=0, le=64)
    pipeline_parallel: int = Field(default=1, gt=0, le=64)  # the parallelism panel only (costmodel.parallel)
    attention_impl: str = AUTO
    rate_per_s: float = Field(default=4.0, gt=0, le=1e4)  # serving: Poisson arrivals, requests per second
    output_len: int = Field(default=128, gt=0, le=1 << 16)  # serving: tokens generated per request


def gpu_choices() -> list[dict[str, str]]:
    """Dropdown options: datasheet specs, then calibrated overlays."""
    return ([{"label": name, "value": name} for name in list_gpus()]
            + [{"label": f"{name} (calibrated)", "value": name} for name in list_calibrated()])


def model_choices() -> list[dict[str, str]]:
    return [{"label": name, "value": name} for name in list_models()]


def torch_implementations() -> tuple[str, ...]:
    """torch's SDPA backends as data (simulators/implementations)."""
    from simulators.implementations import TORCH_IMPLS

    return tuple(TORCH_IMPLS)


def attention_choices() -> list[str]:
    """The attention implementations the simulator knows (read from it, so new ones appear)."""
    from simulators.config import IMPLS

    return list(torch_implementations()) + list(IMPLS)


def decode_upload(contents: str) -> str:
    """The text of a dcc.Upload value ("data:<mime>;base64,<payload>")."""
    try:
        payload = contents.split(",", 1)[1]
        return base64.b64decode(payload).decode("utf-8")
    except (IndexError, ValueError, UnicodeDecodeError):
        raise ValueError("upload: not a readable text file; a YAML file is accepted") from None


def gpu_from_yaml(text: str, filename: str = "uploaded.yaml") -> GPUSpec:
    """A GPU spec from YAML text, through ``load_gpu`` (so overlays with ``base:`` work too)."""
    fd, path = tempfile.mkstemp(suffix=".yaml", prefix="ioaware-gpu-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        try:
            return load_gpu(path)
        except ValueError as exc:  # name the file the person chose, not our temporary copy
            raise ValueError(str(exc).replace(path, filename)) from None
    finally:
        os.unlink(path)


def resolve_gpu(choice: str, uploads: dict[str, str] | None = None) -> GPUSpec:
    if choice.startswith(UPLOAD_PREFIX):
        name = choice[len(UPLOAD_PREFIX):]
        if not uploads or name not in uploads:
            raise ValueError(f"gpu: uploaded file {name!r} is no longer held; upload it again")
        return gpu_from_yaml(uploads[name], name)
    return load_gpu(choice)


def resolve_model(choice: str, uploads: dict[str, str] | None = None) -> ModelConfig:
    if choice.startswith(UPLOAD_PREFIX):
        name = choice[len(UPLOAD_PREFIX):]
        if not uploads or name not in uploads:
            raise ValueError(f"model: uploaded file {name!r} is no longer held; upload it again")
        try:
            return model_from_yaml(uploads[name])
        except ValueError as exc:
            raise ValueError(f"model {name}: {exc}") from None
    return load_model(choice)
