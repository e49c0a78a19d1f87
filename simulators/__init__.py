"""Attention IO-count simulator: FLOPs, bytes through shared memory, L2 and DRAM, and time.

``simulate_attention(spec, impl, batch=..., heads=..., seq_len=..., head_dim=..., ...)`` is the
entry point; the modules hold one idea each (see their docstrings):

    config     the problem (AttentionConfig) and the schedule knobs (ScheduleConfig)
    mask       banded masks and the tile geometry they induce
    patterns   sparse patterns (window, strided, BigBird, blockwise, ...) and layer-wise reach
    counting   operation counting, stated once; tile moments -> FLOPs and smem traffic
    l2         occupancy, waves and the L2 rule that turns requests into DRAM bytes
    closed     closed forms of the flash kernels' counts
    walk       the same schedules walked block by block (numba)
    flash      FA1 / FA2 / Flash-Decoding kernels assembled from either path
    standard   standard attention as a networkx graph of kernels; fusion by contraction
    timing     roofline time per kernel: per-SM resources on the busiest SM, DRAM and L2 shared; launch cost
    results    the result values
"""

from simulators.config import IMPLS, PASSES, AttentionConfig, ScheduleConfig, flash_block_sizes
from simulators.patterns import PATTERNS, Pattern, layers_to_full_reach, mistral_reach, reach_after
from simulators.results import AttentionResult, KernelResult
from simulators.simulate import simulate_attention

__all__ = [
    "IMPLS", "PASSES", "PATTERNS", "AttentionConfig", "AttentionResult", "KernelResult", "Pattern",
    "ScheduleConfig", "flash_block_sizes", "layers_to_full_reach", "mistral_reach", "reach_after",
    "simulate_attention",
]
