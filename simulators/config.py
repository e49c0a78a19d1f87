"""What is simulated: the attention problem, and the knobs of the schedule that runs it.

``AttentionConfig`` is the problem: shapes (B, H, H_kv, N, L, d), element type, mask
(causal, sliding window) and dropout. ``ScheduleConfig`` is how a kernel runs it: tile
sizes (explicit, or from an SRAM size by the FlashAttention rule), threads, occupancy
limits, the register micro-tile, the L2 share, Flash-Decoding splits and KV-cache pages.
Every knob has the default of our Numba kernels (kernels/) unless it says otherwise.

Validation lives here and only here; errors name the argument, the value and what is
allowed (pydantic's own wording is stripped by ``make_config``).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from hardware_specs.dtypes import dtype_bytes

DTYPES = ("fp32", "fp16", "bf16", "fp8")
IMPLS = ("standard", "standard-fused", "standard-3kernel", "flash1", "flash2", "flash-decoding",
         "linformer", "performer", "reformer")  # the last three: simulators/approximate.py
PASSES = ("fwd", "bwd", "fwd+bwd")

# Counts (tokens, heads, tiles, bytes) stay below 2^53: exact in float64, inside int64 and numba.
MAX_COUNT = 2**53


class AttentionConfig(BaseModel):
    """One attention call: Q (B, H, N, d), K and V (B, H_kv, L, d).

    ``window`` W: query q sees keys k with q' - W < k <= q' (causal, W keys including
    itself, as kernels/flash2.py defines it) or |k - q'| < W (not causal), where
    q' = q + L - N aligns the last query with the last key (FlashAttention-2's
    bottom-right convention; q' = q when N = L). Mistral 7B's window W (keys i-W..i,
    §2) is ``window = W + 1`` here.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch: int
    heads: int
    kv_heads: int
    seq_len: int
    kv_len: int
    head_dim: int
    dtype: str = "fp16"
    causal: bool = False
    window: int | None = None
    dropout: float = 0.0

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data):
        if isinstance(data, dict):
            data = dict(data)
            if data.get("kv_heads") is None:
                data["kv_heads"] = data.get("heads")
            if data.get("kv_len") is None:
                data["kv_len"] = data.get("seq_len")
        return data

    @field_validator("batch", "heads", "kv_heads", "seq_len", "kv_len", "head_dim", mode="before")
    @classmethod
    def _positive(cls, v, info):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{info.field_name}: {v!r} is not allowed; a positive integer (>= 1) is")
        if v >= MAX_COUNT:
            raise ValueError(f"{info.field_name}: {v!r} is too large; a positive integer below 2^53 is")
        return v

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, v):
        if v not in DTYPES:
            raise ValueError(f"dtype: {v!r} is not allowed; one of {', '.join(DTYPES)} is")
        return v

    @field_validator("window", mode="before")
    @classmethod
    def _window(cls, v):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 1 <= v < MAX_COUNT):
            raise ValueError(f"window: {v!r} is not allowed; a positive whole number of keys below 2^53 is")
        return v

    @field_validator("dropout")
    @classmethod
    def _dropout(cls, v):
        if not 0 <= v < 1:
            raise ValueError(f"dropout: {v!r} is not allowed; a probability in [0, 1) is")
        return v

    @model_validator(mode="after")
    def _groups(self):
        if self.heads % self.kv_heads:
            raise ValueError(
                f"kv_heads: {self.kv_heads} does not divide heads={self.heads}; "
                f"a divisor of heads is allowed (GQA groups of equal size; 1 is MQA)"
            )
        return self

    @property
    def group(self) -> int:
        """Query heads per K/V head (1: multi-head, heads: multi-query)."""
        return self.heads // self.kv_heads

    @property
    def batch_heads(self) -> int:
        return self.batch * self.heads

    @property
    def batch_kv_heads(self) -> int:
        return self.batch * self.kv_heads

    @property
    def element_bytes(self) -> int:
        return int(dtype_bytes(self.dtype))


class ScheduleConfig(BaseModel):
    """How the kernels are launched; ``None`` means the kernel's own default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    block_r: int | None = None  # query rows per tile (B_r)
    block_c: int | None = None  # key rows per tile (B_c)
    sram_bytes: int | None = None  # M of the FlashAttention rule; default: the spec's smem per block
    splits: int | None = None  # Flash-Decoding: K/V splits per (batch, head)
    page_size: int | None = None  # paged KV cache: tokens per page (None: contiguous cache)
    threads_per_block: int | None = None
    regs_per_thread: int = 64  # occupancy cap: blocks/SM <= register file / (threads x regs x 4 B)
    max_blocks_per_sm: int | None = None  # an extra occupancy cap (launch bounds)
    smem_per_block_bytes: int | None = None  # exact shared memory of the kernel, overrides the tile footprint
    # (t_m, t_n) rows x columns of a tile product one thread (SIMT) or one warp (tensor cores) owns;
    # None: (4, 8), our kernels' micro-tile at B_r = B_c = d = 64 with 128 threads, or (16, 64), a
    # FlashAttention-2 warp's 16 query rows against 64 keys per mma sweep on tensor cores
    micro_tile: tuple[int, int] | None = None
    smem_dtype: str | None = None  # staged tiles' element type; None: input dtype (tensor cores), fp32 (SIMT)
    accum_dtype: str = "fp32"  # dQ accumulator in HBM
    intermediate_dtype: str | None = None  # S, P (standard attention); None: input dtype, fp32 for standard-3kernel
    l2_fraction: float = 1.0  # share of the L2 the tiles a wave has live at once may fill (l2.py rule 4)
    fa1_io: Literal["kernel", "paper"] = "kernel"  # FA1 forward HBM traffic: kernels/flash1.py or Algorithm 1 verbatim
    tensor_cores: bool = True  # matmuls on tensor cores (matmul_unit(dtype)); False: FP32 SIMT as our kernels
    skip_masked_tiles: bool = True  # causal/window block skipping; False computes masked-out tiles too
    # launch order of FA2 / backward / decode grids: blockIdx.x = the tile (or split) index, fastest
    # (kernels/: the tiles of one head run together), or blockIdx.x = batch*head
    grid_order: Literal["tiles-fastest", "heads-fastest"] = "tiles-fastest"
    gemm_tile: tuple[int, int] = (64, 64)  # standard attention's matmul output tile (bm, bn)
    elementwise_block: int = 1024  # elements per block of an elementwise kernel
    dropout_mask_bytes: int = 1  # bytes per element of the stored dropout mask (bool)

    @field_validator("block_r", "block_c", "sram_bytes", "splits", "page_size", "threads_per_block",
                     "max_blocks_per_sm", "smem_per_block_bytes", "regs_per_thread", "elementwise_block",
                     "dropout_mask_bytes", mode="before")
    @classmethod
    def _positive(cls, v, info):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 1 <= v < MAX_COUNT):
            raise ValueError(f"{info.field_name.replace('_', '-')}: {v!r} is not allowed; a positive integer "
                             f"below 2^53 is")
        return v

    @field_validator("micro_tile", "gemm_tile")
    @classmethod
    def _pair(cls, v, info):
        if v is not None and min(v) < 1:
            raise ValueError(f"{info.field_name}: {v!r} is not allowed; two positive integers are")
        return v

    @field_validator("smem_dtype", "intermediate_dtype", "accum_dtype")
    @classmethod
    def _dtypes(cls, v, info):
        if v is not None and v not in DTYPES:
            raise ValueError(f"{info.field_name}: {v!r} is not allowed; one of {', '.join(DTYPES)} is")
        return v

    @field_validator("l2_fraction")
    @classmethod
    def _fraction(cls, v):
        if not 0 < v <= 1:
            raise ValueError(f"l2_fraction: {v!r} is not allowed; a fraction in (0, 1] is")
        return v


    @property
    def register_tile(self) -> tuple[int, int]:
        if self.micro_tile is not None:
            return self.micro_tile
        return (16, 64) if self.tensor_cores else (4, 8)


def make_config(model: type[BaseModel], **values) -> BaseModel:
    """Build ``model``; a plain ValueError with the first problem's own message otherwise."""
    try:
        return model(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] != "value_error":
            loc = ".".join(str(p) for p in err["loc"])
            msg = f"{loc}: {err.get('input')!r} is not allowed; {msg}"
        raise ValueError(msg) from None


def flash_block_sizes(head_dim: int, sram_elements: int) -> tuple[int, int]:
    """(B_r, B_c) of Dao et al. 2022, Algorithm 1 line 1: B_c = ceil(M / 4d), B_r = min(ceil(M / 4d), d).

    M is the on-chip SRAM in elements. The seed notes' example: d = 64, M = 100 KB of
    fp32 = 25,600 elements gives B_c = 100, B_r = 64. Four tiles of B_c x d (K_j, V_j,
    Q_i, O_i with B_r <= B_c) then fit in M.
    """
    if sram_elements < 4 * head_dim:
        raise ValueError(
            f"head_dim: {head_dim} is too large for an SRAM of {sram_elements} elements; the FlashAttention "
            f"rule needs M >= 4 d; allowed: head_dim <= {sram_elements // 4} or a larger --sram-bytes"
        )
    bc = math.ceil(sram_elements / (4 * head_dim))
    return min(bc, head_dim), bc
