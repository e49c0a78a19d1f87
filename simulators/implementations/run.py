"""Count an implementation's call once, time it with any parameters (the fit re-times without recounting)."""

from __future__ import annotations

from simulators.implementations import IMPLEMENTATIONS, build, ops
from simulators.implementations.gemv import gemv_result
from simulators.implementations.params import Basis, call_overhead_s, gemv_row_s, kernel_params, timing_basis
from simulators.timing import time_kernel

ASSUMPTIONS = {
    "schedule": "the implementation's catalog entry (simulators/implementations/catalog.yaml): tiles by head_dim, "
                "warps, registers, split-KV rule and GQA packing as its sources and Nsight Compute state them",
    "hbm_bytes": "fused: the L2 wave model over the implementation's own grid and tiles; graph: every tensor a "
                 "kernel reads or writes crosses DRAM once",
    "time_s": "torch-eager: GEMMs and memory ops by the GPU's calibrated op models (gemm:, memory_ops:), issued "
              "one by one by the host (memory_ops.eager_time), row-wise softmax as below; others: per kernel: waves and tail on the busiest SM with each block's issue share, per-SM bandwidth by "
              "Little's law, tensor rate x the fitted efficiency of the implementation's main loop, + fixed GPU "
              "cost per launch; summed over kernels; + the call's fitted host overhead",
}


def variant(entry, cfg, role: str = "fwd") -> str | None:
    """``d<bound>``: the forward (``role`` fwd, or decode: a decode kernel takes its forward's share) or
    backward (bwd) kernel variant of a fused implementation whose efficiency is fitted per tile; None where
    that pass has one share."""
    fp = entry.bwd if role == "bwd" else entry.fwd
    if entry.kind != "fused" or not fp.efficiency_by_tile:
        return None
    return f"d{fp.tile_bound(cfg.head_dim)}"


def count(spec, impl: str, cfg, pass_: str):
    return build.kernels(spec, IMPLEMENTATIONS[impl], cfg, pass_)


def time(spec, impl: str, counts, cfg, pass_: str, basis: Basis | None = None, overrides: dict | None = None):
    """(kernel results, call overhead in s) of counted kernels under ``basis`` (default: the spec's)."""
    basis = basis or timing_basis(spec)
    out = []
    entry = IMPLEMENTATIONS[impl]
    for k, role in counts:
        if entry.priced_by == "op_models" and not role.startswith("rowwise") and not role.startswith("rowblock"):
            out.append(time_kernel(spec, k, cfg.dtype, False))  # counts only: ops.price re-times it
            continue
        p = kernel_params(basis, impl, role, k.instruction, overrides,
                         variant(entry, cfg, role) if role in ("fwd", "bwd", "decode") else None)
        r = time_kernel(spec, k, cfg.dtype, k.instruction != "simt", p)
        if entry.kind == "graph" and role.startswith(("elementwise", "broadcast")):
            r = ops.family_result(spec, entry, cfg, r, role.endswith("_bwd"))
        elif role.startswith("gemv_"):
            r = gemv_result(r, cfg, gemv_row_s(basis, overrides))
        out.append(r)
    overhead = call_overhead_s(basis, impl, pass_, overrides)
    roles = [role for _, role in counts]
    if entry.priced_by == "op_models":
        out = ops.price(spec, entry, cfg, out, roles)
    if entry.kind == "graph":
        out = ops.masked_softmax(spec, entry, cfg, out, roles)
        overhead += ops.issue_overhead_s(spec, entry, out, roles)
    return out, overhead
