"""What the GPU run measures: the op grids (fit and held-out, disjoint) and the model configurations.

The op grids fit ``hardware_specs/op_timing.py``'s parameters; the model runs are held out
entirely (nothing is fitted to them). The GEMM fit grid is a generic (M, N, K) lattice; the
held-out GEMM grid is the projections of the validated models at their batch sizes, which
share no shape with the lattice. Memory ops: fit on copy/add/mul at even powers of two,
held out on the odd powers and on other ops (silu, cast, row mean).
"""

from __future__ import annotations

from itertools import product

GEMM_FIT_M = (1, 4, 16, 64, 256, 1024, 4096, 16384)
GEMM_FIT_NK = (1536, 3584, 7168, 16384)  # no validated model has these widths


def gemm_fit_grid() -> list[tuple[int, int, int]]:
    """(M, N, K) lattice: M from decode to large prefill, N and K off every model's widths."""
    return [(m, n, k) for m, n, k in product(GEMM_FIT_M, GEMM_FIT_NK, GEMM_FIT_NK) if m * n * k <= 2**40]


def gemm_heldout_grid(models) -> list[tuple[int, int, int]]:
    """The validated models' projections (fused qkv, out, gate/up, down, LM head) at M in {1, 32, 4096}."""
    out = set()
    for cfg in models:
        h = cfg.d_model
        swiglu = cfg.ffn_type == "swiglu"
        shapes = [(cfg.q_dim + 2 * cfg.kv_dim, h), (h, cfg.q_dim), ((2 if swiglu else 1) * cfg.ffn_dim, h),
                  (h, cfg.ffn_dim), (cfg.vocab_size, h)]
        for m in (1, 32, 4096):
            out.update((m, n, k) for n, k in shapes)
    return sorted(out)


MEMORY_OPS_FIT = ("copy", "add", "mul")
MEMORY_OPS_HELDOUT = ("silu", "cast", "mean")


def memory_sizes(fit: bool) -> list[int]:
    """Elements per operand: 2^10 .. 2^28; even exponents to fit, odd ones held out."""
    return [2**e for e in range(10, 29) if (e % 2 == 0) == fit]


def memory_grid(fit: bool) -> list[tuple[str, int]]:
    ops = MEMORY_OPS_FIT
    grid = [(op, n) for op, n in product(ops, memory_sizes(True))] if fit else []
    if not fit:
        grid = [(op, n) for op, n in product(MEMORY_OPS_FIT, memory_sizes(False))]
        grid += [(op, n) for op, n in product(MEMORY_OPS_HELDOUT, memory_sizes(True) + memory_sizes(False))]
    return grid


def memory_op_bytes(op: str, n: int, e: int = 2) -> int:
    """DRAM bytes of one op over n bf16 elements (read + written)."""
    return {"copy": 2 * n * e, "add": 3 * n * e, "mul": 3 * n * e, "silu": 2 * n * e,
            "cast": n * (4 + e), "mean": n * 4 + (n // 1024) * 4}[op]


# SDPA grid (fit attention efficiency): prefill causal (B, H, H_kv, S, d) and decode (B, H, H_kv, L, d)
SDPA_PREFILL = [(1, 32, 32, 2048, 128), (4, 32, 8, 4096, 128), (8, 16, 16, 1024, 64), (2, 32, 4, 8192, 64),
                (16, 32, 32, 512, 128)]
SDPA_DECODE = [(1, 32, 32, 4096, 128), (16, 32, 8, 2048, 128), (64, 32, 8, 1024, 128), (8, 16, 16, 8192, 64),
               (32, 64, 8, 4096, 128)]

# Model runs (held out). Ordered so the most asked-about come first; the run stops on its budget.
MODEL_RUNS = {
    "llama3-8b": {"prefill": [(1, 4096), (8, 1024), (2, 2048)], "decode": [(32, 1024), (1, 1024), (64, 2048), (8, 4096)],
                  "train": [(1, 512)]},
    "tinyllama-1.1b": {"prefill": [(1, 512), (8, 2048), (32, 512)], "decode": [(1, 512), (16, 2048), (64, 1024)],
                       "train": [(4, 2048), (8, 1024)]},
    "llama2-7b": {"prefill": [(1, 512), (1, 4096), (4, 2048)], "decode": [(1, 512), (32, 1024), (8, 4096)],
                  "train": [(1, 1024), (2, 512)]},
    "gpt2-medium": {"prefill": [(1, 512), (8, 1024)], "decode": [(1, 512), (8, 1000), (64, 512)],
                    "train": [(8, 1024), (16, 512)]},
    "mistral-7b": {"prefill": [(1, 4096), (4, 1024)], "decode": [(1, 2048), (32, 2048)], "train": [(1, 1024)]},
    "codellama-34b": {"prefill": [(1, 2048)], "decode": [(1, 1024), (32, 1024)]},
}

__all__ = ["MEMORY_OPS_FIT", "MEMORY_OPS_HELDOUT", "MODEL_RUNS", "SDPA_DECODE", "SDPA_PREFILL", "gemm_fit_grid",
           "gemm_heldout_grid", "memory_grid", "memory_op_bytes", "memory_sizes"]
