"""What the simulator predicts for a validation case, and the record that holds it.

Our kernels are predicted on the FP32 SIMT lanes (they use no tensor cores): where the
spec holds parameters fitted to them (its ``numba_kernels`` section), timed as
``costmodel.validation.ours`` says; else at the rate our register-tiled code attained in
calibration (``numba_fp32_efficiency``), at the occupancy the kernel runs with; torch's backends at the calibrated peaks, as their row
of ``costmodel.validation.families`` says. No GPU: ``repredict`` makes every prediction
of a recorded results file again with the current model.
"""
from __future__ import annotations

import datetime as _dt
import math
import statistics

import numpy as np

from costmodel.validation.families import family
from costmodel.validation.schema import NcuKernel, Predicted, Record, Results
from costmodel.validation.sweep import Case


def predict_case(spec, case: Case):
    """What the simulator predicts for a case: (flops, Predicted as a dict).

    Each family goes to ``simulate_attention`` with the impl, pass and schedule defaults
    of its row in the family table: our kernels on the FP32 SIMT lanes with the tiles
    they ran with, torch's backends with the backend's tiles on tensor cores (the math
    backend: fp32 on the SIMT lanes, after its upcast).
    """
    from simulators import simulate_attention

    c = case.config
    row = family(case.family)
    shape = dict(batch=c.batch, heads=c.heads, kv_heads=c.kv_heads, seq_len=c.seq_len, kv_len=c.kv_len,
                 head_dim=c.head_dim, causal=c.causal, window=c.window)
    if row.source == "torch":
        block_r, block_c = row.tiles.get(c.head_dim, (None, None))
        if row.tensor_cores:  # fused, half-precision tiles in shared memory
            result = simulate_attention(spec, row.impl, pass_=row.pass_, dtype=c.dtype, tensor_cores=True,
                                        block_r=block_r, block_c=block_c, threads_per_block=row.threads,
                                        smem_dtype=c.dtype, **shape)
        else:  # math backend: fp32 after the upcast, on the SIMT lanes
            result = simulate_attention(spec, row.impl, pass_=row.pass_, dtype="fp32", tensor_cores=False, **shape)
    else:
        def run(s):
            return simulate_ours(s, case)

        result = run(spec)
        if spec.numba_kernels is not None:  # fitted to our kernels: costmodel/validation/ours.py
            from costmodel.validation.ours import predict_ours
            from hardware_specs.dtypes import dtype_bytes

            return predict_ours(spec, result, case.family, c.head_dim, float(dtype_bytes(c.dtype)))
        occupancy, dram_fraction = tiled_occupancy(spec, result)
        eff = numba_fp32_efficiency(spec, occupancy, dram_fraction)
        if eff is not None:  # our kernels: the FP32 lanes at the rate our tiled code attains at that occupancy
            result = run(spec.model_copy(update={"efficiency": {**spec.efficiency, "fp32": eff}}))
    return prediction_from_simulation(result)


def simulate_ours(spec, case: Case):
    """The simulator's result for one of our cases: FP32 SIMT lanes, the tiles it ran with."""
    from simulators import simulate_attention

    c = case.config
    row = family(case.family)
    schedule = dict(block_r=c.block_r, block_c=c.block_c, splits=c.splits)
    schedule.update({k: v for k, v in row.schedule.items() if schedule.get(k) is None})
    return simulate_attention(spec, row.impl, pass_=row.pass_, dtype=c.dtype, tensor_cores=False, **schedule,
                              batch=c.batch, heads=c.heads, kv_heads=c.kv_heads, seq_len=c.seq_len, kv_len=c.kv_len,
                              head_dim=c.head_dim, causal=c.causal, window=c.window)


MICROKERNEL_THREADS = 128  # kernels.matmul.MatmulTiles().num_threads: the unit of calibration's occupancy sweep


def tiled_occupancy(spec, result) -> tuple[float, float]:
    """(resident warps per SM in 128-thread blocks, share of global reads from DRAM) of the
    kernel doing most FLOPs.

    Resident blocks per SM = min(the blocks/SM that fit, ceil(blocks / SMs)): a grid of
    fewer blocks than slots leaves the SMs partly empty (FA1's B*H blocks, decode). The
    DRAM share is the L2 model's hbm_read_bytes over the kernel's global reads.
    """
    main = max(result.kernels, key=lambda k: k.matmul_flops + k.other_flops)
    resident = min(main.blocks_per_sm, math.ceil(main.blocks / spec.sm_count))
    dram = main.hbm_read_bytes / main.global_read_bytes if main.global_read_bytes else 1.0
    return resident * main.threads_per_block / MICROKERNEL_THREADS, dram


def _get(obj, key, default=None):
    return obj.get(key, default) if isinstance(obj, dict) else getattr(obj, key, default)


def prediction_from_simulation(result) -> tuple[float, dict]:
    """(flops, the results file's ``predicted`` mapping) from a simulator result.

    Takes the totals and the per-kernel list as the simulator reports them (attributes
    or keys: flops, time_s, hbm_bytes, global_bytes, bound, kernels).
    """
    kernels = [
        {"name": str(_get(k, "name")), "time_s": float(_get(k, "time_s")), "hbm_bytes": float(_get(k, "hbm_bytes")),
         "bound": str(_get(k, "bound")), "launch_s": float(_get(k, "launch_s", 0.0) or 0.0)}
        for k in (_get(result, "kernels") or [])
    ]
    predicted = {
        "time_s": float(_get(result, "time_s")), "hbm_bytes": float(_get(result, "hbm_bytes")),
        "global_bytes": float(_get(result, "global_bytes")), "bound": str(_get(result, "bound")), "kernels": kernels,
    }
    return float(_get(result, "flops")), predicted


def build_record(case: Case, flops: float, predicted: dict, samples_s: list[float],
                 ncu_kernels: list[NcuKernel] | None = None, rel_error: float | None = None) -> Record:
    """One results-file record, validated."""
    measured = {"time_s": statistics.median(samples_s), "time_samples_s": list(samples_s),
                "rel_error_vs_reference": rel_error}
    if ncu_kernels is not None:
        measured["ncu_kernels"] = [k.model_dump() for k in ncu_kernels]
        measured["dram_read_bytes"] = sum(k.dram_read_bytes for k in ncu_kernels)
        measured["dram_write_bytes"] = sum(k.dram_write_bytes for k in ncu_kernels)
    return Record.model_validate({"family": case.family, "source": case.source, "config": case.config.model_dump(),
                                  "flops": flops, "measured": measured, "predicted": predicted})


def repredict(results: Results, spec_name: str | None = None, note: str | None = None) -> Results:
    """The same measurements with every prediction made again by the current model (no GPU).

    ``spec_name`` defaults to the spec the results were predicted with. Measured numbers
    are kept as recorded; ``flops`` and ``predicted`` are replaced, and a note says when
    and with which spec.
    """
    from hardware_specs import load_gpu

    name = spec_name or results.meta.spec
    spec = load_gpu(name)
    records = []
    for r in results.records:
        flops, predicted = predict_case(spec, Case(r.family, r.config))
        records.append(r.model_copy(update={"flops": flops, "predicted": Predicted.model_validate(predicted)}))
    notes = list(results.meta.notes) + [note or f"predictions recomputed {_dt.date.today().isoformat()} "
                                        f"with spec {name} (measurements as recorded {results.meta.date})"]
    return Results(meta=results.meta.model_copy(update={"spec": name, "notes": notes}), records=records)


def numba_fp32_efficiency(spec, blocks_per_sm: float | None = None, dram_fraction: float = 1.0) -> float | None:
    """The FP32 efficiency our Numba kernels are predicted with: the rate the register-tiled
    matmul microkernel (``kernels.matmul``) attained during calibration over the spec's FP32
    peak. None where the spec holds no such measurement (a datasheet spec): predictions
    then stay at the FP32 peak, a lower bound on time.

    The tiled rate is what the attention kernels' inner product loop runs at with nothing
    else in it (same tiles, threads, loads and barriers), measured on a plain matmul; no
    attention timing goes into it. ``blocks_per_sm``: the kernel's resident warps per SM
    in units of the microkernel's 128-thread blocks; where calibration also measured the
    rate at 1, 2, ... resident blocks (``by_blocks_per_sm``), the full-grid rate is scaled
    by how much slower that occupancy ran than the sweep's largest, in proportion to
    ``dram_fraction``, the share of the kernel's global reads that come from DRAM.
    """
    info = (spec.calibration or {}).get("numba_tiled_fp32_flops_per_s")
    peak = spec.peak_flops_per_s.get("fp32")
    if not info or not peak:
        return None
    value = float(info["value"])
    by_occ = {float(k): float(v) for k, v in (info.get("by_blocks_per_sm") or {}).items()}
    if blocks_per_sm is not None and by_occ:
        # The sweep's grids of exactly k blocks per SM stream A from DRAM (one wave, no tile
        # reuse in L2), and its rate grows about linearly with k (H200: 5.9, 10.2, 14.3, 18.2
        # TFLOP/s at k = 1..4): a block's load phase stalls on memory and only other resident
        # blocks fill it. Only the ratio rate_k / rate_kmax is used (the full grid's rate is
        # ``value``), and only for the share of a kernel's reads that come from DRAM as the
        # sweep's do. That weighting is an assumption, not a measurement: the sweep was not
        # repeated with L2-resident operands. What supports it: FA1 (one block per head, every
        # block streaming its own K/V from DRAM) ran at 7.9 TFLOP/s, near the sweep's one-block
        # rate, while FA2 at d = 128 (two blocks per SM, K/V shared through L2) ran at 20,
        # twice the sweep's two-block rate. Linear between the measured k, clamped at both ends.
        ks = sorted(by_occ)
        rate_k = float(np.interp(blocks_per_sm, ks, [by_occ[k] for k in ks]))
        f = min(1.0, max(0.0, float(dram_fraction)))
        value *= (1.0 - f) + f * rate_k / by_occ[ks[-1]]
    return min(1.0, value / float(peak))
