"""Named attention implementations as data: what each launches, read from ``catalog.yaml``.

``IMPLEMENTATIONS[name]`` is an ``Implementation``: kind ``fused`` (a flash-style schedule: tiles by
head_dim, warps, stages, GQA packing, the split-KV rule for decode, the tensor-core instruction
family; forward, decode and backward kernels) or ``graph`` (whole-tensor kernels: matmuls,
elementwise and row-wise ops, as torch's math backend and eager torch launch them). Every entry
names its sources in the catalog. ``build.kernels(spec, impl, cfg, pass_)`` turns one into the
simulator's kernels; ``simulate_attention(spec, impl="torch-cudnn", ...)`` times them.
"""

from __future__ import annotations

from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field


class FusedPass(BaseModel):
    """One fused kernel family: its tiles by head_dim and how it is launched."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kernel: str  # the kernel's name as Nsight Compute prints it (a substring)
    tiles: dict[int, tuple[int, int, int]]  # head_dim upper bound -> (B_r, B_c, warps)
    stages: int = 1  # K/V tiles in flight per block (cp.async / TMA pipeline depth)
    regs: int = 255  # registers a thread: occupancy
    # decode: FA2's num_splits_heuristic, cuDNN's observed power-of-two fill, or one block per head
    splits: Literal["fa2", "pow2", "none"] | None = None
    pack_gqa: bool = False  # decode with H > H_kv: the group's query heads share one block's rows
    combine: str | None = None  # the split-KV reduction kernel
    helpers: list[str] = Field(default_factory=list)  # small kernels of the pass (preprocess, casts)
    # the flash simulator's helper kernels this backward does not launch (its work is inside the main kernel)
    no_helpers: list[str] = Field(default_factory=list)
    # torch's strided copies around the backward (non-vectorized direct_copy, [NCU]): the tensors copied
    # before the backward kernel and after it, each read and written once (o, do, dq: Q's size; dk, dv: K's)
    copies_before: list[Literal["o", "do"]] = Field(default_factory=list)
    copies_after: list[Literal["dq", "dk", "dv"]] = Field(default_factory=list)
    instruction: str | None = None  # overrides the implementation's family for this kernel
    persistent: bool | None = None  # overrides the implementation's ``persistent`` for this kernel
    # shared memory a block, by head_dim upper bound, where [NCU] shows the kernel stages K/V in pieces
    # (default: the flash simulator's (B_r + 2 B_c) d elements)
    smem: dict[int, int] = Field(default_factory=dict)
    # head_dims above this keep the output accumulator in fp32 global memory, read and written once per
    # key tile ([MEFF] kernel_forward.h: kKeepOutputInRF only while kMaxK <= kKeysPerBlock; '_gmem' kernels)
    gmem_output_above: int | None = None
    # backward DRAM bytes: "l2" (the flash simulator's L2 model of FA2's schedule) or "compulsory" (each
    # operand read once, each result written once: cuDNN's bprop, [NCU] calibration fwd+bwd 2026-12-02)
    dram: Literal["l2", "compulsory"] = "l2"

    # the main loop's attained share is fitted per tile variant (fwd_efficiency_d<bound>): each head_dim
    # bound is its own template instantiation (tile, warps), e.g. [MEFF]'s 64x64 / 64x128 / 32x128_gmem
    efficiency_by_tile: bool = False

    def is_persistent(self, impl: "Implementation") -> bool:
        return impl.persistent if self.persistent is None else self.persistent

    def tile_bound(self, head_dim: int) -> int:
        self.tile(head_dim)
        return min(b for b in self.tiles if head_dim <= b)

    def smem_bytes(self, head_dim: int) -> int | None:
        return next((self.smem[b] for b in sorted(self.smem) if head_dim <= b), None)

    def tile(self, head_dim: int) -> tuple[int, int, int]:
        for bound in sorted(self.tiles):
            if head_dim <= bound:
                return self.tiles[bound]
        raise ValueError(f"head_dim: {head_dim} is not allowed for {self.kernel}; at most {max(self.tiles)} is")


class GraphStep(BaseModel):
    """One whole-tensor kernel (or ``launches`` of them) of an unfused implementation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: Literal["gemm", "elementwise", "rowwise"]
    unit: Literal["fp32", "tensor"] | None = None  # gemm: FP32 SIMT (no TF32) or tensor cores in the input dtype
    flops: Literal["qk", "pv"] | None = None  # gemm: Q K^T-shaped or P V-shaped product, 2 N L d per head
    reads: dict[str, str] = Field(default_factory=dict)  # tensor -> dtype (input | fp32 | bool)
    writes: dict[str, str] = Field(default_factory=dict)
    launches: int = 1
    path: Literal["vectorized", "broadcast"] = "vectorized"  # elementwise: TensorIterator's loop
    gqa_only: bool = False
    causal_only: bool = False
    exp: bool = False
    # priced_by op_models (ops.py): the memory-op family of an elementwise step (memory_ops: section;
    # any graph implementation's step that names one is timed on it, ops.family_result; ``repeat``
    # resolves by dtype to repeat_bf16 / repeat_fp32),
    # the GEMM shape of a gemm step as letters N (queries), L (keys), d (head_dim): M, N, K of one head
    family: str | None = None
    # a same-dtype contiguous copy_ (e.g. masked_fill's clone): torch issues cudaMemcpyAsync device to
    # device, no kernel, so Nsight Compute's kernel counters do not see its bytes or time
    memcpy: bool = False
    mnk: tuple[str, str, str] | None = None

    def read_element_bytes(self, input_bytes: int) -> int:
        """Bytes an element of the widest tensor the step reads: fp32 4, bool 1, input ``input_bytes``."""
        return max(({"fp32": 4, "bool": 1}.get(v, input_bytes) for v in self.reads.values()), default=input_bytes)


class Implementation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    display: str
    kind: Literal["fused", "graph"]
    instruction: Literal["mma.sync", "wgmma", "simt"]
    persistent: bool = False
    source: str
    fwd: FusedPass | list[GraphStep]
    decode: FusedPass | None = None
    bwd: FusedPass | list[GraphStep]
    gqa: bool = True  # accepts H_kv < H (torch's enable_gqa); False: the call fails, as torch's does
    # attention: timed by timing.py with the implementation's fitted parameters; op_models: its GEMMs and
    # memory ops by the GPU's calibrated op models, as the step predictor prices them (ops.py)
    priced_by: Literal["attention", "op_models"] = "attention"


def _load() -> dict[str, Implementation]:
    text = resources.files("simulators.implementations").joinpath("catalog.yaml").read_text()
    raw = yaml.safe_load(text)
    return {name: Implementation.model_validate({"name": name, **body}) for name, body in raw.items()}


IMPLEMENTATIONS: dict[str, Implementation] = _load()
TORCH_IMPLS = tuple(IMPLEMENTATIONS)
