"""Kernel families of plain PyTorch and the micro-benchmarks that time them (the second GPU run).

A model's memory-bound kernels are not all alike: PyTorch's vectorized elementwise kernels
(contiguous operands), its non-vectorized ``elementwise_kernel`` path (broadcast or strided
operands: RoPE on a view of the fused QKV output, SiLU on a chunk of the gate/up output),
the unrolled dtype-converting copy (``x.float()``), concatenation, index copies into a KV
cache and row reductions (``mean(-1)``) each have their own fixed cost and bandwidth. Each
family is timed here on its own, at token counts T from a decode step to a prefill, with
h = 4096 to fit and h = 2560 held out; the model runs are never used to fit.

``FAMILY_OPS`` maps each family to the micro-benchmark that stands for it; ``family_bytes``
gives the DRAM bytes each one moves (read + written), the same counts ``costmodel/step/ops.py``
uses for the model's kernels.
"""

from __future__ import annotations

FAMILY_TOKENS = (1, 8, 32, 128, 512, 2048, 8192)
FIT_WIDTH, HELDOUT_WIDTH = 4096, 2560
HEAD_DIM = 128

# family -> what its micro-benchmark does (x: (T, h) bf16 unless said)
FAMILY_OPS = {
    "vectorized": "x + y, contiguous bf16",
    "cast_up": "x.float(): bf16 -> fp32 (unrolled direct copy)",
    "cast_down": "xf.to(bf16): fp32 -> bf16",
    "broadcast": "xf * r, r (T, 1) fp32 (non-vectorized elementwise path)",
    "strided": "q * cos, q a (T, H, d) view of a (T, 3h) tensor, cos (T, 1, d)",
    "cat": "cat([-q2, q1], -1) on halves of a strided view",
    "index_copy": "cache (T, 8, 512, d).index_copy_(2, pos, k) (decode cache write, T sequences)",
    "reduce": "xf.mean(-1, keepdim=True), fp32",
    "layernorm": "F.layer_norm(x, (h,)), bf16",
}


def family_bytes(family: str, T: int, h: int) -> int:
    """DRAM bytes (read + written) of one micro-benchmark kernel."""
    n = T * h
    return {"vectorized": 6 * n, "cast_up": 6 * n, "cast_down": 6 * n, "broadcast": 8 * n + 4 * T,
            "strided": 4 * n + 2 * T * HEAD_DIM, "cat": 4 * n, "index_copy": 4 * T * 8 * HEAD_DIM,
            "reduce": 4 * n + 4 * T, "layernorm": 4 * n}[family]


__all__ = ["FAMILY_OPS", "FAMILY_TOKENS", "FIT_WIDTH", "HEAD_DIM", "HELDOUT_WIDTH", "family_bytes"]
