"""Attention IO-count simulator: FLOPs, bytes through shared memory, L2 and DRAM, and time.

``simulate_attention(spec, impl, batch=..., heads=..., seq_len=..., head_dim=..., ...)`` is the
entry point; the modules hold one idea each (see their docstrings):

    config     the problem (AttentionConfig) and the schedule knobs (ScheduleConfig)
    mask       banded masks and the tile geometry they induce
    patterns   sparse patterns (window, strided, BigBird, blockwise, ...) and layer-wise reach
    counting   operation counting, stated once; tile moments -> FLOPs and smem traffic
    l2         occupancy, waves and the L2 rule that turns requests into DRAM bytes
    closed     closed forms of the flash kernels' counts
    walk       the same schedules walked block by block (numba; the backward ones in walk_backward)
    flash      FA1 / FA2 / Flash-Decoding kernels assembled from either path
    standard   standard attention as a networkx graph of kernels; fusion by contraction
    timing     roofline time per kernel: per-SM resources on the busiest SM, DRAM and L2 shared; launch cost
    results    the result values
"""

# The names below are loaded on first use (PEP 562), so that importing one light module
# (``simulators.config`` for the command line's choices) does not pull in numba and networkx.
_EXPORTS = {
    "IMPLS": "simulators.config", "PASSES": "simulators.config", "AttentionConfig": "simulators.config",
    "ScheduleConfig": "simulators.config", "flash_block_sizes": "simulators.config",
    "PATTERNS": "simulators.patterns", "Pattern": "simulators.patterns",
    "layers_to_full_reach": "simulators.patterns", "mistral_reach": "simulators.patterns",
    "reach_after": "simulators.patterns",
    "AttentionResult": "simulators.results", "KernelResult": "simulators.results",
    "simulate_attention": "simulators.simulate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'simulators' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
