"""A whole training run: iterations, wall-clock, GPU-hours and energy from a token or compute budget.

Token budget D: iterations = ceil(D / (G·S)) at the predicted iteration time. Compute budget C: the
compute-optimal split of Hoffmann et al. 2022 ("Chinchilla"), their eq. (4) with the fitted loss
L(N, D) = E + A/N^α + B/D^β of Approach 3 (§3.3, eq. (10)): E = 1.69, A = 406.4, B = 410.7,
α = 0.34, β = 0.28, under C = 6·N·D (their §3, FLOPs ≈ 6ND):

    N_opt(C) = G·(C/6)^a,  D_opt(C) = G^-1·(C/6)^b,  G = (α·A / (β·B))^(1/(α+β)),  a = β/(α+β),  b = α/(α+β).

The run trains the chosen model on D_opt(C) tokens; N_opt(C) is reported beside the model's own size.
Energy: GPU-hours x the GPU's TDP (the cluster file's sourced ``gpu_tdp_W``: an upper bound for the
GPUs alone) and, where the cluster gives it, nodes x ``node_power_W`` x wall-clock (whole servers at
their rated maximum; network switches, storage and cooling are not counted).
"""

from __future__ import annotations

import math

# Hoffmann et al. 2022, Approach 3 (§3.3, eq. (10)).
CHINCHILLA_E, CHINCHILLA_A, CHINCHILLA_B = 1.69, 406.4, 410.7
CHINCHILLA_ALPHA, CHINCHILLA_BETA = 0.34, 0.28


def compute_optimal(compute_flops: float) -> tuple[float, float]:
    """(N_opt, D_opt) for a budget of ``compute_flops`` (Hoffmann et al. 2022 eq. (4), Approach 3)."""
    if not compute_flops > 0:
        raise ValueError(f"compute_flops: must be > 0, got {compute_flops!r}")
    a_, b_ = CHINCHILLA_ALPHA, CHINCHILLA_BETA
    G = (a_ * CHINCHILLA_A / (b_ * CHINCHILLA_B)) ** (1 / (a_ + b_))
    n = G * (compute_flops / 6) ** (b_ / (a_ + b_))
    d = (compute_flops / 6) ** (a_ / (a_ + b_)) / G
    return n, d


def training_run(iteration_time_s: float, *, tokens_per_iteration: int, gpus: int, gpu_tdp_W: float,
                 tokens: float | None = None, compute_flops: float | None = None, gpus_per_node: int = 8,
                 node_power_W: float | None = None) -> dict:
    """Wall-clock, GPU-hours and energy of a run of ``tokens`` (or of D_opt(compute_flops)) tokens."""
    if (tokens is None) == (compute_flops is None):
        raise ValueError("tokens / compute_flops: give exactly one budget")
    out = {}
    if compute_flops is not None:
        n_opt, d_opt = compute_optimal(compute_flops)
        tokens = d_opt
        out.update(compute_flops=compute_flops, chinchilla_params=n_opt, chinchilla_tokens=d_opt)
    if not tokens > 0:
        raise ValueError(f"tokens: must be > 0, got {tokens!r}")
    iterations = math.ceil(tokens / tokens_per_iteration)
    wall = iterations * iteration_time_s
    gpu_hours = wall * gpus / 3600
    out.update(tokens=float(tokens), iterations=iterations, wall_clock_s=wall, wall_clock_days=wall / 86400,
               gpu_hours=gpu_hours, gpu_energy_J=gpu_hours * 3600 * gpu_tdp_W, gpu_energy_MWh=gpu_hours * gpu_tdp_W / 1e6)
    if node_power_W is not None:
        nodes = math.ceil(gpus / gpus_per_node)
        out.update(node_energy_J=wall * nodes * node_power_W, node_energy_MWh=wall * nodes * node_power_W / 3.6e9)
    return out


__all__ = ["CHINCHILLA_A", "CHINCHILLA_ALPHA", "CHINCHILLA_B", "CHINCHILLA_BETA", "CHINCHILLA_E", "compute_optimal",
           "training_run"]
