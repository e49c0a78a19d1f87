"""Model shapes as data: the ``ModelConfig`` schema and the bundled presets.

A preset is one YAML file in ``costmodel/presets/`` named after the model; every number in
it carries its source (the official checkpoint's ``config.json``, the model card or the
paper) in a comment beside it and in the ``source`` field. A user's own model is a YAML
file in the same schema, loaded with ``load_model(path)``.

The schema covers decoder-only transformers of the GPT-2 / Llama family: per layer an
attention block (q, k, v, o projections; ``n_kv_heads < n_heads`` is grouped-query
attention, Ainslie et al. 2023, and ``n_kv_heads == 1`` multi-query attention, Shazeer
2019) and an MLP (``gelu_mlp``: two matrices, Vaswani et al. 2017 §3.3; ``swiglu``: three,
Shazeer 2020), each behind a norm, then a final norm and the output projection.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from hardware_specs.yaml_files import load_mapping, read_text
from pydantic import BaseModel, ConfigDict, Field, model_validator

# Shapes stay below 2^53: exact in float64, inside int64 and numba's integers.
PositiveInt = Annotated[int, Field(strict=True, gt=0, lt=2**53)]


class ModelConfig(BaseModel):
    """The shape of a decoder-only transformer, as far as sizing needs it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(min_length=1)]
    source: Annotated[str, Field(min_length=1)]  # where every number below comes from
    vocab_size: PositiveInt
    d_model: PositiveInt  # hidden size h
    n_layers: PositiveInt
    n_heads: PositiveInt  # query heads a
    n_kv_heads: PositiveInt  # key/value heads; defaults to n_heads (multi-head attention)
    head_dim: PositiveInt  # defaults to d_model // n_heads
    ffn_dim: PositiveInt  # MLP inner width (HF intermediate_size / n_inner)
    ffn_type: Literal["gelu_mlp", "swiglu"]
    norm_type: Literal["layernorm", "rmsnorm"]
    attn_bias: Annotated[bool, Field(strict=True)]  # biases on q, k, v and o
    mlp_bias: Annotated[bool, Field(strict=True)]
    tied_embeddings: Annotated[bool, Field(strict=True)]  # output projection shares the token embedding
    position_embedding: Literal["learned", "rope", "alibi", "none"]
    max_seq_len: PositiveInt  # context length; rows of the learned position table
    sliding_window: PositiveInt | None = None  # tokens each query sees (Mistral 7B); None = all

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        """n_kv_heads defaults to n_heads; head_dim to d_model // n_heads when that divides."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        n_heads, d_model = data.get("n_heads"), data.get("d_model")
        heads_ok = type(n_heads) is int and n_heads > 0
        if data.get("n_kv_heads") is None and heads_ok:
            data["n_kv_heads"] = n_heads
        if data.get("head_dim") is None and heads_ok and type(d_model) is int and d_model > 0:
            if d_model % n_heads:
                raise ValueError(
                    f"head_dim is not given and d_model ({d_model}) is not a multiple of n_heads "
                    f"({n_heads}); give head_dim explicitly"
                )
            data["head_dim"] = d_model // n_heads
        return data

    @model_validator(mode="after")
    def _consistent(self) -> "ModelConfig":
        if self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads}): "
                "each key/value head serves a whole group of query heads"
            )
        return self

    @property
    def q_dim(self) -> int:
        """Width of all query heads together, n_heads * head_dim (= d_attn in Kaplan et al.)."""
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        """Width of all key (or value) heads together, n_kv_heads * head_dim."""
        return self.n_kv_heads * self.head_dim


# ---------------------------------------------------------------- presets and files

_PRESET_DIR = "presets"


def _preset_files() -> dict[str, Any]:
    folder = resources.files("costmodel").joinpath(_PRESET_DIR)
    return {f.name.rsplit(".", 1)[0]: f for f in folder.iterdir() if f.name.endswith(".yaml")}


def list_models() -> list[str]:
    """Names of the bundled presets, sorted."""
    return sorted(_preset_files())


def model_from_yaml(text: str, origin: str = "model YAML") -> ModelConfig:
    """Parse one model in the ``ModelConfig`` schema from YAML text (a repeated key is an error)."""
    data = load_mapping(text, origin, "model file (a mapping of ModelConfig fields)")
    return ModelConfig.model_validate(data)


def load_model(name_or_path: str | Path | ModelConfig) -> ModelConfig:
    """A preset by name (see ``list_models()``), or a YAML file in the ModelConfig schema."""
    if isinstance(name_or_path, ModelConfig):
        return name_or_path
    presets = _preset_files()
    key = str(name_or_path)
    if key in presets:
        return model_from_yaml(presets[key].read_text(encoding="utf-8"), key)
    if not isinstance(name_or_path, (str, Path)):
        raise TypeError(f"model: {name_or_path!r} is not a ModelConfig, a preset name or a path")
    path = Path(name_or_path)
    if path.is_file():
        return model_from_yaml(read_text(path, "model file"), str(path))
    raise ValueError(
        f"unknown model {key!r}: not a preset and not a file; "
        f"accepted names: {', '.join(sorted(presets))} (or a path to a model YAML file)"
    )


__all__ = ["ModelConfig", "list_models", "load_model", "model_from_yaml"]
