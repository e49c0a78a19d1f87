"""The validation families, stated once: what each runs and how the simulator predicts it.

A family is one implementation timed by ``ioaware validate``: one of our Numba kernels
(``kernels/``) or torch's ``scaled_dot_product_attention`` forced onto one backend. Each
row says which call runs it, and which ``simulate_attention`` impl, pass and schedule
defaults predict it; the simulator itself knows no family names.

Pure Python: the results format, the sweep, the prediction and the GPU runner read it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True)
class Family:
    """One row of the table."""

    source: str  # "ours": a Numba kernel of kernels/; "torch": SDPA on one backend
    call: str  # kernels API function (ours) or torch.nn.attention.SDPBackend member (torch)
    impl: str  # simulate_attention's impl
    pass_: str = "fwd"
    schedule: dict = field(default_factory=dict)  # schedule defaults, where the case leaves them None
    tensor_cores: bool = False  # ours: FP32 SIMT lanes (no tensor cores)
    threads: int | None = None  # threads per block the prediction assumes (None: the simulator's)
    tiles: dict = field(default_factory=dict)  # head_dim -> (B_r, B_c) (torch: the backend's own tiles)


# How torch's backends are predicted. FA2's forward kernels run 4 warps a block
# (Flash_fwd_kernel_traits, kNWarps = 4) with 128x128 tiles for d = 64 and 128x64 for
# d = 128 (the sm80 configuration of the FA2 code torch ships); cuDNN's tiles are not
# public and the same are assumed; the memory-efficient kernel is taken as 64x64.
_FA2_TILES = {64: (128, 128), 128: (128, 64)}

TABLE = MappingProxyType({
    "standard_fwd": Family("ours", "standard_attention", "standard-3kernel"),
    "flash2_fwd": Family("ours", "flash_attention", "flash2"),
    "flash1_fwd": Family("ours", "flash_attention_v1", "flash1"),
    "flash_bwd": Family("ours", "flash_attention_backward", "flash2", pass_="bwd"),
    "decode": Family("ours", "decode_attention", "flash-decoding", schedule={"splits": 1}),
    "flash_decoding": Family("ours", "flash_decoding", "flash-decoding"),
    "window_fwd": Family("ours", "flash_attention", "flash2"),
    "torch_sdpa_flash": Family("torch", "FLASH_ATTENTION", "flash2", tensor_cores=True, threads=128,
                               tiles=_FA2_TILES),
    "torch_sdpa_cudnn": Family("torch", "CUDNN_ATTENTION", "flash2", tensor_cores=True, threads=128,
                               tiles=_FA2_TILES),
    "torch_sdpa_efficient": Family("torch", "EFFICIENT_ATTENTION", "flash2", tensor_cores=True, threads=128,
                                   tiles={64: (64, 64), 128: (64, 64)}),
    # unfused, fp32 after the upcast, on the SIMT lanes (see TORCH_NOTES)
    "torch_sdpa_math": Family("torch", "MATH", "standard"),
})

OUR_FAMILIES = tuple(name for name, f in TABLE.items() if f.source == "ours")
TORCH_FAMILIES = tuple(name for name, f in TABLE.items() if f.source == "torch")
FAMILIES = OUR_FAMILIES + TORCH_FAMILIES

TORCH_NOTES = (
    "torch flash backend predicted as FlashAttention-2 forward on tensor cores in the input precision, "
    "128x128 tiles for d=64 and 128x64 for d=128 (the sm80 kernel configuration of the FA2 code torch ships).",
    "torch cuDNN backend predicted as a flash-style fused forward with the same tiles (cuDNN's are not public).",
    "torch memory-efficient backend predicted as a flash-style fused forward with 64x64 tiles on tensor cores.",
    "torch math backend predicted as unfused standard attention in fp32 on the SIMT lanes: with "
    "torch.backends.cuda.allow_fp16_bf16_reduction_math_sdp(False) (the default) it upcasts fp16/bf16 q, k, v "
    "to fp32 before its matmuls, and fp32 matmuls do not use TF32 while torch.backends.cuda.matmul.allow_tf32 "
    "is False (the default); the upcast and downcast copies are not in the prediction.",
)


def family(name: str) -> Family:
    """The row of ``name``; a ValueError naming the allowed families otherwise."""
    try:
        return TABLE[name]
    except KeyError:
        raise ValueError(f"family: unknown {name!r}; allowed: {', '.join(FAMILIES)}") from None
