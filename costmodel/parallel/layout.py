"""A parallel layout (TP, PP, DP, micro-batch, schedule, recompute, ZeRO) and what makes one valid.

DP follows from the GPU count, DP = N / (TP·PP), and the micro-batches per pipeline from the
batch, m = G / (b·DP) (Narayanan et al. 2021 §3, notation p, t, d, b, B). A layout is valid when

- TP divides the query heads, the K/V heads and the MLP width (costmodel.training_memory splits the
  K/V heads t ways and refuses a TP that does not divide them; replicating K/V heads past TP = g, as
  Megatron-LM can, is not modelled);
- TP·PP divides N and b·DP divides G;
- PP <= L; interleaved: v >= 2, m a multiple of PP (Narayanan §2.2.2), and the busiest stage's
  ceil(L/PP) layers split into v equal chunks (Megatron needs L divisible by PP·v; Llama 3 §3.3.2
  runs stages with one layer fewer, which the ceiling allows).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from costmodel.parallel.pipeline import SCHEDULES


class Layout(BaseModel):
    """One parallel configuration for training (all degrees >= 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpus: int = Field(gt=0)
    tp: int = Field(default=1, gt=0)
    pp: int = Field(default=1, gt=0)
    micro_batch: int = Field(default=1, gt=0)
    global_batch: int = Field(gt=0)
    schedule: Literal["gpipe", "1f1b", "interleaved"] = "1f1b"
    virtual_stages: int = Field(default=1, gt=0)
    sequence_parallel: bool = False
    recompute: Literal["none", "selective", "full"] = "none"
    zero_stage: Literal[0, 1, 2, 3] = 0
    overlap_dp: bool = False

    @model_validator(mode="after")
    def _degrees(self) -> "Layout":
        if self.gpus % (self.tp * self.pp):
            raise ValueError(f"gpus: {self.gpus} is not divisible by tp x pp = {self.tp} x {self.pp}")
        if self.global_batch % (self.micro_batch * self.dp):
            raise ValueError(f"global_batch: {self.global_batch} is not divisible by micro_batch x dp = "
                             f"{self.micro_batch} x {self.dp}")
        if self.schedule == "interleaved":
            if self.pp < 2:
                raise ValueError(f"schedule: interleaved needs pp >= 2, got pp = {self.pp}")
            if self.virtual_stages < 2:
                raise ValueError(f"virtual_stages: the interleaved schedule needs >= 2, got {self.virtual_stages}")
            if self.micro_batches % self.pp:
                raise ValueError(f"global_batch: interleaving needs micro-batches ({self.micro_batches}) "
                                 f"divisible by pp ({self.pp})")
        elif self.virtual_stages != 1:
            raise ValueError(f"virtual_stages: {self.virtual_stages} needs --schedule interleaved "
                             f"(schedule is {self.schedule})")
        if self.sequence_parallel and self.tp == 1:
            raise ValueError("sequence_parallel: needs tp > 1")
        return self

    @property
    def dp(self) -> int:
        return self.gpus // (self.tp * self.pp)

    @property
    def micro_batches(self) -> int:
        return self.global_batch // (self.micro_batch * self.dp)

    def check_model(self, cfg) -> None:
        """Raise ValueError naming the field when the model cannot be split this way."""
        t = self.tp
        if cfg.n_heads % t:
            raise ValueError(f"tp: {t} does not divide {cfg.name}'s {cfg.n_heads} attention heads")
        if cfg.n_kv_heads % t:
            raise ValueError(f"tp: {t} does not divide {cfg.name}'s {cfg.n_kv_heads} K/V heads")
        if cfg.ffn_dim % t:
            raise ValueError(f"tp: {t} does not divide {cfg.name}'s MLP width {cfg.ffn_dim}")
        if self.pp > cfg.n_layers:
            raise ValueError(f"pp: {self.pp} exceeds {cfg.name}'s {cfg.n_layers} layers")
        per_stage = -(-cfg.n_layers // self.pp)
        if self.schedule == "interleaved" and per_stage % self.virtual_stages:
            raise ValueError(f"virtual_stages: {self.virtual_stages} chunks do not split a stage's {per_stage} layers "
                             f"({cfg.name}: {cfg.n_layers} layers over pp = {self.pp})")


__all__ = ["Layout", "SCHEDULES"]
