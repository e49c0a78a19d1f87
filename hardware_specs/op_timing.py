"""Fitted op-timing parameters of a GPU: the cuBLAS GEMM model and the memory-bound-op curve.

These are the ``gemm:`` and ``memory_ops:`` sections of a calibrated spec. Each number is a
physical quantity with its unit in its name, fitted on a measured grid (``measured:`` says
how, where and when). A datasheet spec has no such section; ``simulators.matmul`` and
``simulators.memory_ops`` then use ``default_gemm(spec)`` / ``default_memory_ops(spec)``,
whose values are stated assumptions (``assumed`` holds the text), not measurements.

GEMM (``simulators/matmul.py`` states the model): a tile of ``tile_m x tile_n`` outputs runs on
one SM at ``efficiency[dtype]`` of that SM's share of the tensor-core peak; the operands
stream from DRAM at ``bandwidth_fraction`` of the memory-op bandwidth; each kernel costs
``overhead_s`` of GPU time besides (prologue, epilogue, pipeline fill).

Memory-bound ops (``simulators/memory_ops.py``): a kernel moving n bytes takes
``latency_s + n / bandwidth_Bps`` on the GPU (``l2_bandwidth_Bps`` when n <= ``l2_resident_bytes``). Launch: eager PyTorch spends
``host_per_kernel_s`` of CPU time per launched kernel (dispatch + launch) and, in a whole model,
``host_per_block_s`` per transformer block more; a CUDA graph idles ``graph_per_kernel_s`` a kernel
beyond the op models' kernel times and costs ``graph_launch_s`` per replay. The step-level terms
carry their own ``step_fit`` record (whole steps of synthetic decoders, not micro-benchmarks).
"""

from __future__ import annotations

import datetime as _dt

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Output tiles (token rows x output features) that cuBLAS Hopper GEMM kernels use: CUTLASS 3
# sm90 CTA tiles 64x128, 128x128, 128x256, 256x128 for 16-bit inputs, and the skinny tiles of
# cuBLAS's nvjet kernels seen in the H200 profiles (nvjet_sm90_tst_128x8 / 64x8 / 256x8 for a
# decode step: 8 token rows). An assumption of the model, not a fitted number.
DEFAULT_TILES = ((8, 64), (8, 128), (8, 256), (16, 128), (32, 128), (64, 128), (64, 256), (128, 128),
                 (128, 256), (256, 128))
DEFAULT_SPLIT_K = (1, 2, 4, 8, 16)


class Fit(BaseModel):
    """How a fitted section was obtained and how well it fits its held-out grid."""

    model_config = ConfigDict(extra="forbid")

    method: str = Field(min_length=1)
    date: _dt.date
    gpu: str = Field(min_length=1)
    fit_points: int = Field(ge=0)
    heldout_points: int = Field(ge=0)
    heldout_median_abs_err: float | None = None  # |pred/measured - 1|
    heldout_max_abs_err: float | None = None


class GemmModel(BaseModel):
    """cuBLAS-like GEMM timing parameters (``simulators/matmul.py``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    efficiency: dict[str, float]  # per tensor dtype: fraction of the tensor peak a full tile sustains
    bandwidth_fraction: float = Field(gt=0, le=1.5)  # operand streaming / memory-op bandwidth
    # N or K not a multiple of 8 elements (16 B): no TMA / wgmma kernel; cuBLAS falls back to
    # align-1 kernels (cutlass_75 ... align1 in the H200 profiles) at these fractions
    unaligned_efficiency: float | None = Field(default=None, gt=0, le=1)
    unaligned_bandwidth_fraction: float | None = Field(default=None, gt=0, le=1.5)
    overhead_s: float = Field(ge=0)  # GPU time per kernel besides compute/memory (s)
    # Strided-batched GEMMs (batch > 1: eager attention's S = Q K^T and O = P V, torch.matmul on 4-D
    # tensors): C's stores drain at the epilogue's DRAM write bandwidth (B/s), apart from the operand
    # reads, and each output tile pays a fixed latency (s: pipeline fill + epilogue store, the bulk of a
    # tile when K = head_dim is a few k-steps). Fitted on costmodel/validation/attn_ops_grids's bmm grid
    # (step_fit_batched); None: off. Not applied to batch = 1 (the projection lattice fitted without them).
    batched_write_Bps: float | None = Field(default=None, gt=0)
    batched_tile_s: float | None = Field(default=None, ge=0)
    batched_measured: Fit | None = None
    # A strided-batched GEMM whose rows of C are not a whole number of 32-byte sectors (the unit of a DRAM
    # transaction and of an L2 sector, CUDA C++ Best Practices Guide, "Coalesced Access to Global Memory"):
    # the first and last sector of every row are written partly, and C drains at this bandwidth (B/s)
    # instead. Fitted on costmodel/validation/attn_ops_grids's bmm_pitch_grid (step_fit_batched); None: off.
    batched_unaligned_write_Bps: float | None = Field(default=None, gt=0)
    batched_unaligned_measured: Fit | None = None
    tiles: tuple[tuple[int, int], ...] = DEFAULT_TILES
    split_k: tuple[int, ...] = DEFAULT_SPLIT_K
    # SDPA (fused attention) kernels: fraction of the tensor peak sustained, forward and backward
    # (costmodel/step/attention.py; the impls branch's implementation models replace these).
    attention_efficiency: dict[str, float] | None = None
    attention_bwd_efficiency: dict[str, float] | None = None
    measured: Fit | None = None
    assumed: str | None = None


class LaunchModel(BaseModel):
    """Launch and host costs of PyTorch on this GPU and its host."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host_per_kernel_s: float = Field(ge=0)  # eager: CPU time per launched kernel (dispatch + cudaLaunchKernel)
    host_per_library_call_s: float | None = Field(default=None, ge=0)  # eager: a cuBLAS call (GEMM)
    host_attention_s: float | None = Field(default=None, ge=0)  # eager: one SDPA call
    host_by_family: dict[str, float] = Field(default_factory=dict)  # eager: one kernel of a family
    # eager training (autograd + fused AdamW): CPU time per kernel of a whole step
    host_per_kernel_autograd_s: float | None = Field(default=None, ge=0)
    # eager inference: CPU time per transformer block beyond its ops' micro-loop costs (nn.Module
    # calls, kernel-less views / splits / transposes, a host slower inside a model than in a loop)
    host_per_block_s: float | None = Field(default=None, ge=0)
    graph_per_kernel_s: float = Field(ge=0)  # CUDA graph: GPU idle per kernel beyond the op models' (s)
    graph_launch_s: float = Field(ge=0)  # CUDA graph: one replay's fixed cost
    # how graph_per_kernel_s, host_per_block_s and host_per_kernel_autograd_s were fitted, when they
    # come from whole-step calibration runs (costmodel/validation/step_calib_fit.py)
    step_fit: Fit | None = None


class KernelFamily(BaseModel):
    """One family of memory-bound kernels: time = latency_s + bytes / bandwidth (L2 bandwidth up to
    l2_resident_bytes per kernel)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latency_s: float = Field(ge=0)
    bandwidth_Bps: float = Field(gt=0)
    l2_bandwidth_Bps: float | None = Field(default=None, gt=0)
    # measured points (bytes per kernel -> seconds): inside their range time is interpolated
    # log-log between them (a reduction's fixed cost is not one number: 2 us for one row, 7.6 us
    # from 32 rows up on the H200); outside it, latency_s + bytes / bandwidth
    table_bytes: tuple[float, ...] = ()
    table_s: tuple[float, ...] = ()
    heldout_median_abs_err: float | None = None
    heldout_max_abs_err: float | None = None


class SoftmaxBlockModel(BaseModel):
    """torch's block softmax cunn_SoftMaxForwardReg<reg_cnt> (``simulators/memory_ops.softmax_block_time``):
    one 1024-thread block a row, each thread holding reg_cnt = ceil(L / 1024) < 10 elements in registers
    (aten/src/ATen/native/cuda/SoftMax.cu, host_softmax: rows of L > 2048). A block takes
    latency_s + blocks_per_sm * L / rate (the SM's element rate shared by its resident blocks);
    blocks_per_sm is 2 while reg_cnt <= two_block_max_reg_cnt (<= 32 registers a thread), else 1, and the
    rate is the SM's with two blocks (64 warps) or with one (32 warps: less latency hidden, a lower rate)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latency_s: float = Field(ge=0)  # a block's fixed time: two block reductions, launch of the row, drain
    sm_element_rate_per_s: float = Field(gt=0)  # elements/s an SM's two resident blocks process together
    one_block_element_rate_per_s: float = Field(gt=0)  # elements/s of an SM holding one block
    # [NCU 2026-12-02, torch 2.11] registers a thread 28-30 for reg_cnt 3-6, 34-40 for 7-9: with 1024
    # threads a block, 65536 registers an SM hold two blocks at <= 32 registers
    two_block_max_reg_cnt: int = Field(default=6, ge=1)
    measured: Fit | None = None


class SoftmaxMaskedModel(BaseModel):
    """What torch's softmax pays for a row's -inf entries (the causal eager and math paths' softmax input,
    masked_fill(triu(1), -inf)) on top of its time on the same rows unmasked
    (``simulators/memory_ops.softmax_masked_s``): masked elements / rate, a rate per softmax kernel (``warp``:
    softmax_warp_forward, ``block``: cunn_SoftMaxForwardReg) and dtype (``bf16``: any 16-bit dtype, ``fp32``).
    [MEASURED 2026-12-03, H200, torch 2.11: attn_ops_h200_4.json] the same (B*H, N, N) rows took 1.19x
    (block kernel, N 4096-8192) to 1.54x (warp kernel, N 512) as long with their upper triangle -inf; the
    extra time is proportional to the masked elements (0.77-0.84 T elements/s in bf16), not to the bytes,
    which are the same; the dtype's most negative finite value and -1e4 cost the same as -inf
    (attn_ops_h200_5.json): any entry whose exp underflows. The mechanism is not established."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # "<warp|block>_<bf16|fp32>" -> masked (-inf) elements a second the kernel's extra time drains
    masked_element_rate_per_s: dict[str, float]
    measured: Fit | None = None

    @field_validator("masked_element_rate_per_s")
    @classmethod
    def _keys(cls, v: dict[str, float]) -> dict[str, float]:
        allowed = {f"{k}_{d}" for k in ("warp", "block") for d in ("bf16", "fp32")}
        for key, rate in v.items():
            if key not in allowed:
                raise ValueError(f"masked_element_rate_per_s: key {key!r} is not one of {sorted(allowed)}")
            if not rate > 0:
                raise ValueError(f"masked_element_rate_per_s[{key!r}]: {rate} must be > 0 (elements/s)")
        return v


class MemoryOpsModel(BaseModel):
    """Memory-bound kernel time: latency + bytes / bandwidth (``simulators/memory_ops.py``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latency_s: float = Field(ge=0)  # a kernel's fixed GPU time (ramp up, tail, drain)
    bandwidth_Bps: float = Field(gt=0)  # sustained DRAM bandwidth of a large elementwise kernel
    # A kernel moving at most l2_resident_bytes finds its operands in L2 (written by the kernel
    # before it) and runs at l2_bandwidth_Bps; None: always DRAM.
    l2_resident_bytes: float | None = Field(default=None, gt=0)
    l2_bandwidth_Bps: float | None = Field(default=None, gt=0)
    # Per kernel family (costmodel/validation/step_families.py: vectorized, broadcast, strided, cast_up,
    # cast_down, cat, index_copy, reduce, layernorm): its own fitted curve; a family not listed
    # uses the fields above.
    families: dict[str, "KernelFamily"] = Field(default_factory=dict)
    softmax_block: SoftmaxBlockModel | None = None  # None: the attention timing model's rowblock rate
    softmax_masked: SoftmaxMaskedModel | None = None  # None: a masked row costs what an unmasked one does
    launch: LaunchModel
    measured: Fit | None = None
    assumed: str | None = None


# Defaults for a GPU never measured. Each is an assumption stated in ``assumed``.
_DEFAULT_GEMM_EFFICIENCY = 0.8  # cuBLAS large square GEMMs reach ~75-80% of the dense tensor peak (H200: 768/989)
_DEFAULT_BW_FRACTION = 0.9


def default_memory_ops(spec) -> MemoryOpsModel:
    """Datasheet-only answer: 90% of the spec's HBM bandwidth, 2 us per kernel, launch from the spec."""
    return MemoryOpsModel(
        latency_s=2e-6, bandwidth_Bps=_DEFAULT_BW_FRACTION * spec.hbm_bandwidth_Bps,
        launch=LaunchModel(host_per_kernel_s=max(spec.kernel_launch_s, 5e-6), graph_per_kernel_s=1e-6,
                           graph_launch_s=spec.kernel_launch_s),
        assumed="not measured: bandwidth 0.9 x hbm_bandwidth_Bps, latency 2 us, eager host cost "
                "max(kernel_launch_s, 5 us) per kernel, 1 us between graph kernels",
    )


def default_gemm(spec) -> GemmModel:
    """Datasheet-only answer: 80% of each tensor peak on full tiles, operands at the memory-op bandwidth."""
    units = ("fp16", "bf16", "fp8", "int8", "fp32")
    return GemmModel(
        efficiency={u: _DEFAULT_GEMM_EFFICIENCY for u in units}, bandwidth_fraction=1.0, overhead_s=3e-6,
        assumed="not measured: 80% of the dense tensor peak on full tiles, operands at the memory-op "
                "bandwidth, 3 us per kernel",
    )


def gemm_model(spec) -> GemmModel:
    return spec.gemm if getattr(spec, "gemm", None) is not None else default_gemm(spec)


def memory_ops_model(spec) -> MemoryOpsModel:
    return spec.memory_ops if getattr(spec, "memory_ops", None) is not None else default_memory_ops(spec)


__all__ = [
    "DEFAULT_SPLIT_K", "DEFAULT_TILES", "Fit", "GemmModel", "KernelFamily", "LaunchModel", "MemoryOpsModel", "SoftmaxBlockModel",
    "SoftmaxMaskedModel", "default_gemm",
    "default_memory_ops", "gemm_model", "memory_ops_model",
]
