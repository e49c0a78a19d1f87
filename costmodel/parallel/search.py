"""Search every valid training layout of a model on a cluster, vectorized over configurations.

The space: GPU counts (``gpus``), TP (divisors of N that divide the heads, K/V heads and MLP width),
sequence parallelism (on or off where TP > 1), recomputation (none / selective / full), PP (divisors
of N/TP up to L), micro-batch b (divisors of G/DP up to ``max_micro_batch``), the schedule (1F1B, or
interleaved 1F1B with every v >= 2 that splits L/PP evenly and m divisible by PP) and ZeRO stage 0-3.
GPipe is left out: it takes 1F1B's time with more memory (pipeline.py), so it never ranks above it.

A *work unit* is one (gpus, TP, SP, recompute): one call of the step predictor over all micro-batch
sizes (it broadcasts over batch), then one numpy evaluation of every (PP, b, v, ZeRO) of the unit
(``training.iteration_time`` / ``memory_per_gpu`` broadcast over arrays). Units run in this process,
in a local process pool (``workers > 1``) or on Ray (``ray_address``; the optional extra ``ray``).

Objectives: ``time`` (seconds per iteration) or ``cost`` (GPU-hours per iteration = time x GPUs /
3600, which differs from time only when several GPU counts are searched).
"""

from __future__ import annotations

import time as _time
from typing import Any

import numpy as np

from costmodel.flops import forward_flops_per_token
from costmodel.models import ModelConfig, load_model
from costmodel.parallel.compute import micro_batch_compute
from costmodel.parallel.training import iteration_time, memory_per_gpu
from costmodel.task_map import map_tasks
from hardware_specs.cluster import load_cluster, with_nodes
from hardware_specs.interconnect import ClusterSpec
from hardware_specs.loader import load_gpu

RECOMPUTE = ("none", "selective", "full")
COLUMNS = ("gpus", "tp", "pp", "dp", "micro_batch", "micro_batches", "virtual_stages", "sequence_parallel",
           "recompute", "zero_stage", "time_s", "memory_bytes", "fits", "compute_s", "tp_comm_s", "pp_comm_s",
           "bubble_s", "dp_comm_exposed_s", "optimizer_s")
TABLE_COLUMNS = COLUMNS + ("mfu",)


MAX_GLOBAL_BATCH = 2 ** 40  # sequences; far past any run, and small enough to factor quickly


def divisors(n: int) -> list[int]:
    """Divisors of n, increasing (trial division up to sqrt(n))."""
    small, large, d = [], [], 1
    while d * d <= n:
        if n % d == 0:
            small.append(d)
            if d * d != n:
                large.append(n // d)
        d += 1
    return small + large[::-1]


def valid_tp(cfg: ModelConfig, gpus: int, max_tp: int | None = None) -> list[int]:
    out = []
    for t in divisors(gpus):
        if max_tp is not None and t > max_tp:
            continue
        if cfg.n_heads % t or cfg.ffn_dim % t or cfg.n_kv_heads % t:  # as Layout.check_model
            continue
        out.append(t)
    return out


def work_units(cfg: ModelConfig, gpu_counts, *, max_tp=None, recomputes=RECOMPUTE, sequence_parallel=(False, True)):
    """[(gpus, tp, sp, recompute)] to evaluate."""
    units = []
    for n in gpu_counts:
        for t in valid_tp(cfg, n, max_tp):
            for sp in sequence_parallel:
                if sp and t == 1:
                    continue
                for rc in recomputes:
                    units.append((n, t, sp, rc))
    return units


def _grid(cfg, n, t, G, micro_batches_allowed, zero_stages):
    """Columns (pp, b, v, z, dp, m) of every valid layout of one unit, as flat int arrays."""
    rows = []
    L = cfg.n_layers
    for p in divisors(n // t):
        if p > L:
            continue
        d = n // (t * p)
        for b in micro_batches_allowed:
            if G % (b * d):
                continue
            m = G // (b * d)
            vs = [1] + ([v for v in divisors(L // p) if v >= 2] if p > 1 and L % p == 0 and m % p == 0 else [])
            for v in vs:
                for z in zero_stages:
                    if z > 0 and d == 1:
                        continue  # ZeRO shards over DP: nothing to shard
                    rows.append((p, b, v, z, d, m))
    return np.array(rows, dtype=np.int64).reshape(-1, 6)


def evaluate_unit(unit, model: ModelConfig, cluster: ClusterSpec, *, global_batch: int, seq_len: int, gpu=None,
                  max_micro_batch: int = 16, zero_stages=(0, 1, 2, 3), overlap_dp=False, flash_attention=True,
                  dropout=False, memory_limit_bytes=None, step_kwargs=None) -> dict[str, np.ndarray]:
    """Every layout of one work unit: columns of COLUMNS as arrays."""
    n, t, sp, rc = unit
    cfg = model
    cl = with_nodes(cluster, n)
    gpu = load_gpu(cl.gpu) if gpu is None else gpu
    bs = [b for b in divisors(global_batch) if b <= max_micro_batch]
    grid = _grid(cfg, n, t, global_batch, bs, zero_stages)
    if len(grid) == 0:
        return {k: np.array([]) for k in COLUMNS}
    p, b, v, z, d, m = grid.T
    b_used = np.unique(b)
    comp = micro_batch_compute(cfg, gpu, b_used, seq_len, tensor_parallel=t, sequence_parallel=sp, recompute=rc,
                               **(step_kwargs or {}))
    idx = np.searchsorted(b_used, b)
    pick = type(comp)(**{k: (np.asarray(getattr(comp, k))[idx] if np.ndim(getattr(comp, k)) else getattr(comp, k))
                         for k in type(comp).model_fields})
    parts = iteration_time(cl, cfg, pick, seq_len=seq_len, tp=t, pp=p, dp=d, micro_batch=b, micro_batches=m,
                           virtual_stages=v, sequence_parallel=sp, recompute=rc, zero_stage=z, overlap_dp=overlap_dp)
    mem = np.zeros(len(grid))
    for zs in np.unique(z):
        for inter in (False, True):
            sel = (z == zs) & ((v > 1) == inter)
            if not sel.any():
                continue
            mm = memory_per_gpu(cfg, seq_len=seq_len, tp=t, pp=p[sel], dp=d[sel], micro_batch=b[sel],
                                micro_batches=m[sel], virtual_stages=v[sel], schedule="interleaved" if inter else "1f1b",
                                sequence_parallel=sp, recompute=rc, zero_stage=int(zs),
                                flash_attention=flash_attention, dropout=dropout)
            mem[sel] = mm["memory_bytes"]
    limit = gpu.hbm_bytes if memory_limit_bytes is None else memory_limit_bytes
    k = len(grid)
    out = {"gpus": np.full(k, n), "tp": np.full(k, t), "pp": p, "dp": d, "micro_batch": b, "micro_batches": m,
           "virtual_stages": v, "sequence_parallel": np.full(k, sp), "recompute": np.full(k, RECOMPUTE.index(rc)),
           "zero_stage": z, "memory_bytes": mem, "fits": mem <= limit}
    for key in ("time_s", "compute_s", "tp_comm_s", "pp_comm_s", "bubble_s", "dp_comm_exposed_s", "optimizer_s"):
        out[key] = np.broadcast_to(np.asarray(parts[key], dtype=np.float64), (k,)).copy()
    return out


def _run_units(units, kwargs, workers: int, ray_address: str | None):
    return map_tasks(_unit_task, [(u, kwargs) for u in units], workers=workers, ray_address=ray_address)


def _unit_task(unit, kwargs):
    """One work unit (a top-level function, so a process pool or Ray can ship it; the pydantic
    model, cluster and GPU spec pickle as they are)."""
    kw = dict(kwargs)
    return evaluate_unit(tuple(unit), kw.pop("model"), kw.pop("cluster"), **kw)


def search_layouts(model, cluster, *, global_batch: int, seq_len: int, gpus=None, objective: str = "time",
                   max_micro_batch: int = 16, max_tp: int | None = None, recomputes=RECOMPUTE,
                   zero_stages=(0, 1, 2, 3), overlap_dp: bool = False, flash_attention: bool = True,
                   dropout: bool = False, memory_limit_bytes=None, workers: int = 1, ray_address: str | None = None,
                   step_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate and rank every valid layout; returns {"table": columns (all layouts), "order": indices of
    the fitting layouts best first, "count", "fitting", "elapsed_s", "units"}."""
    if objective not in ("time", "cost"):
        raise ValueError(f"objective: unknown {objective!r}; allowed: time, cost")
    if not 1 <= global_batch <= MAX_GLOBAL_BATCH:
        raise ValueError(f"global_batch: {global_batch} is out of range; 1 to 2^40 sequences are searched")
    cfg = load_model(model)
    cl = load_cluster(cluster) if isinstance(cluster, str) else cluster
    counts = [cl.total_gpus] if gpus is None else sorted(set(int(g) for g in np.atleast_1d(gpus)))
    for n in counts:
        with_nodes(cl, n)  # validates the count
    start = _time.perf_counter()
    units = work_units(cfg, counts, max_tp=max_tp, recomputes=recomputes)
    kwargs = dict(model=cfg, cluster=cl, gpu=load_gpu(cl.gpu), global_batch=global_batch, seq_len=seq_len,
                  max_micro_batch=max_micro_batch, zero_stages=tuple(zero_stages), overlap_dp=overlap_dp,
                  flash_attention=flash_attention, dropout=dropout, memory_limit_bytes=memory_limit_bytes,
                  step_kwargs=step_kwargs)
    parts = [r for r in _run_units(units, kwargs, workers, ray_address) if len(r["time_s"])]
    table = {k: np.concatenate([r[k] for r in parts]) if parts else np.array([]) for k in COLUMNS}
    # PaLM's MFU (3·F per token, non-causal, as costmodel.flops counts it) over the dense bf16 peak
    f_token = 3 * float(forward_flops_per_token(cfg, seq_len, causal=False, sliding_window=None).total)
    peak = load_gpu(cl.gpu).peak_flops_per_s["bf16_tensor"]
    table["mfu"] = f_token * global_batch * seq_len / (table["time_s"] * table["gpus"] * peak) if parts else np.array([])
    score = table["time_s"] * (table["gpus"] / 3600.0 if objective == "cost" else 1.0)
    fitting = np.flatnonzero(table["fits"]) if parts else np.array([], dtype=np.int64)
    order = fitting[np.argsort(score[fitting], kind="stable")]
    return {"table": table, "order": order, "score": score, "objective": objective, "count": int(len(score)),
            "fitting": int(len(fitting)), "units": len(units), "elapsed_s": _time.perf_counter() - start,
            "model": cfg.name, "cluster": cl.name, "gpu": cl.gpu, "global_batch": global_batch, "seq_len": seq_len}


def pareto_front(time_s, memory_bytes):
    """Indices of the layouts no other beats on both time and memory, by increasing memory."""
    order = np.lexsort((time_s, memory_bytes))
    front, best = [], np.inf
    for i in order:
        if time_s[i] < best:
            front.append(i)
            best = time_s[i]
    return np.array(front, dtype=np.int64)


def row(table: dict, i: int) -> dict[str, Any]:
    """One layout of the table as plain Python values."""
    out = {}
    for k in (c for c in TABLE_COLUMNS if c in table):
        v = table[k][i]
        out[k] = v.item() if hasattr(v, "item") else v
    out["recompute"] = RECOMPUTE[int(out["recompute"])]
    out["schedule"] = "interleaved" if out["virtual_stages"] > 1 else "1f1b"
    return out


__all__ = ["COLUMNS", "TABLE_COLUMNS", "evaluate_unit", "pareto_front", "row", "search_layouts", "valid_tp", "work_units"]
