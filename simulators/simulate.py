"""One entry point: ``simulate_attention`` — FLOPs, bytes per memory level and time of an attention call."""

from __future__ import annotations

from hardware_specs.dtypes import dtype_bytes
from simulators import standard
from simulators.approximate import APPROX_IMPLS, method_params, simulate_approximate
from simulators.config import IMPLS, PASSES, AttentionConfig, ScheduleConfig, make_config
from simulators.counting import PAIR_MATMUL_FLOPS
from simulators.flash import flash_kernels
from simulators.l2 import blocks_per_sm
from simulators.patterns import Pattern, tile_classes
from simulators.results import AttentionResult, KernelCount, totals
from simulators.implementations import TORCH_IMPLS
from simulators.timing import TimingParams, time_kernel

ASSUMPTIONS = {
    "flops": "2 per multiply-accumulate; exp/log counted apart (exp_ops); other ops 1 per element each "
             "(softmax 4 + 1 exp, dropout 2, mask 1 on partial tiles only); a computed tile costs its full r x c",
    "global_bytes": "bytes requested from global memory by each kernel's loads, stores and atomics "
                    "(atomics: a read plus a write) = l2_bytes, the FlashAttention paper's 'HBM accesses'",
    "hbm_bytes": "DRAM bytes after the L2 wave model: blocks run in launch order in lock-step waves of "
                 "SMs x blocks/SM; the distinct tiles of a wave (D) cross DRAM once if the bytes live at one "
                 "loop step F (tiles touched then, or before and again after) fit the usable L2 C, else every "
                 "request (R) does (LRU over a longer cycle); no reuse across waves or kernels",
    "smem_bytes": "tiles staged into shared memory (written once) + tile-product operand reads with a "
                  "t_m x t_n register micro-tile (A read mnk/t_n, B mnk/t_m); P and dS in registers",
    "time_s": "per kernel: max over resources; DRAM and L2 at the whole GPU's bandwidth; smem, matmul unit, "
              "FP32 lanes and SFU per SM: the busiest SM runs ceil(blocks/SMs) blocks of equal work at 1/SMs of "
              "the rate; decode: per-SM bandwidth by Little's law (a K tile in flight per block over the mean "
              "load latency, timing.py term 2); + kernel_launch_s; summed over kernels",
    "standard": "standard attention kernels read and write whole tensors (tensor-level: global = DRAM bytes)",
}


def _standard_kernels(spec, cfg, sch, impl, pass_) -> tuple[list[KernelCount], dict]:
    inter = sch.intermediate_dtype or ("fp32" if impl == "standard-3kernel" else cfg.dtype)
    g = standard.preset_graph(impl, cfg, int(dtype_bytes(inter)), sch.dropout_mask_bytes, sch.gemm_tile,
                              sch.elementwise_block)
    return graph_kernels(spec, g, sch, pass_), {"intermediate_dtype": inter, "fused": {
        n: list(g.nodes[n]["members"]) for n in standard.kernels_in_pass(g, pass_)}}


def graph_kernels(spec, g, sch, pass_) -> list[KernelCount]:
    """The kernels of a standard-attention kernel graph (standard.attention_graph, fused or not) in ``pass_``."""
    out = []
    for node in standard.kernels_in_pass(g, pass_):
        attrs = g.nodes[node]
        read, write, reads, writes = standard.kernel_traffic(g, node)
        kind = attrs["kind"]
        threads = 128 if kind == "gemm" else 256
        footprint = (sum(sch.gemm_tile) * 16 * 4) if kind == "gemm" else (1024 if kind == "rowwise" else 0)
        bpsm = blocks_per_sm(spec, footprint, threads, sch.regs_per_thread, sch.max_blocks_per_sm, node)
        what = {"gemm": f"tiled matmul, {sch.gemm_tile[0]}x{sch.gemm_tile[1]} output tile a block",
                "rowwise": "one block per row", "elementwise": f"{sch.elementwise_block} elements a block"}[kind]
        out.append(KernelCount(
            name=node, grid=attrs["grid"], schedule=f"{what}; reads {', '.join(reads)}; writes {', '.join(writes)}",
            matmul_flops=attrs["matmul_flops"], other_flops=attrs["other_flops"], exp_ops=attrs["exp_ops"],
            global_read_bytes=read, global_write_bytes=write, hbm_read_bytes=read, hbm_write_bytes=write,
            smem_bytes=0.0, smem_per_block_bytes=footprint, threads_per_block=threads, blocks_per_sm=bpsm))
    return out


MAX_FLOPS = 2**60  # dense attention FLOPs of the largest problem simulated (int64 counts stay exact below it)


def _our_params(spec, k: KernelCount, cfg, info) -> TimingParams | None:
    """Our decode kernel keeps one K tile of loads in flight (kernels/decode.py issues the next tile's K
    before the softmax): timing.py's Little's-law term with the spec's latencies (measured, scaled from
    a calibrated GPU of the architecture, or the architecture's defaults). Other kernels: the roofline."""
    if k.name != "decode":
        return None
    from simulators.implementations.params import timing_basis

    basis = timing_basis(spec)
    k.inflight_bytes_per_block = float(info["block_c"] * cfg.head_dim * cfg.element_bytes)
    return TimingParams(dram_latency_s=basis.values[("gpu", "dram_latency_s")],
                        l2_latency_s=basis.values[("gpu", "l2_latency_s")])


def simulate_attention(spec, impl: str = "flash2", *, batch: int, heads: int, seq_len: int, head_dim: int,
                       kv_heads: int | None = None, kv_len: int | None = None, dtype: str = "fp16",
                       pass_: str = "fwd", causal: bool = False, window: int | None = None, dropout: float = 0.0,
                       pattern: Pattern | list[str] | tuple[str, ...] | None = None,
                       pattern_options: dict | None = None, path: str = "closed", tensor_cores: bool = True,
                       **schedule) -> AttentionResult:
    """Simulate one attention call of ``impl`` on ``spec`` (a GPUSpec or a bundled GPU name).

    impl: standard | standard-fused | standard-3kernel | flash1 | flash2 | flash-decoding |
    linformer (proj_len=) | performer (features=, chunk=) | reformer (hash_rounds=, bucket_size=) |
    torch-flash | torch-cudnn | torch-efficient | torch-math | torch-eager. pass_: fwd | bwd | fwd+bwd.
    path: "closed" (closed form; band masks) or "enumerate" (numba walk of the schedule); sparse
    ``pattern`` names (patterns.PATTERNS) always enumerate. ``schedule`` takes ScheduleConfig's
    fields (block_r, block_c, sram_bytes, splits, page_size, fa1_io, l2_fraction, ...).
    """
    from hardware_specs import GPUSpec, load_gpu

    if isinstance(spec, str):
        spec = load_gpu(spec)
    if not isinstance(spec, GPUSpec):
        raise ValueError(f"spec: {spec!r} is not allowed; a GPUSpec or a GPU name (hardware_specs.list_gpus()) is")
    if impl in TORCH_IMPLS:
        return _simulate_implementation(spec, impl, pass_, dict(
            batch=batch, heads=heads, kv_heads=kv_heads, seq_len=seq_len, kv_len=kv_len, head_dim=head_dim,
            dtype=dtype, causal=causal, window=window, dropout=dropout), pattern, path, schedule)
    if impl not in IMPLS:
        raise ValueError(f"impl: {impl!r} is not allowed; one of {', '.join(IMPLS + TORCH_IMPLS)} is")
    if pass_ not in PASSES:
        raise ValueError(f"pass: {pass_!r} is not allowed; one of {', '.join(PASSES)} is")
    if path not in ("closed", "enumerate"):
        raise ValueError(f"path: {path!r} is not allowed; 'closed' or 'enumerate' is")
    cfg = make_config(AttentionConfig, batch=batch, heads=heads, kv_heads=kv_heads, seq_len=seq_len, kv_len=kv_len,
                      head_dim=head_dim, dtype=dtype, causal=causal, window=window, dropout=dropout)
    # The counts are int64 sums; a problem whose dense FLOPs pass 2^60 would wrap them around.
    dense_flops = 4 * cfg.batch * cfg.heads * cfg.seq_len * cfg.kv_len * cfg.head_dim
    if dense_flops > MAX_FLOPS:
        dims = {"batch": cfg.batch, "heads": cfg.heads, "seq_len": cfg.seq_len, "kv_len": cfg.kv_len}
        largest = max(dims, key=dims.get)
        raise ValueError(f"{largest}: B={cfg.batch}, H={cfg.heads}, N={cfg.seq_len}, L={cfg.kv_len}, d={cfg.head_dim} is "
                         f"{dense_flops:.3g} FLOPs; problems up to {MAX_FLOPS:.3g} FLOPs (2^60) are simulated")
    if impl in APPROX_IMPLS:  # Linformer / Performer / Reformer: method parameters, not a schedule
        if pattern:
            raise ValueError(f"pattern: {impl} has its own sparsity; sparse patterns are allowed for the flash kernels")
        return simulate_approximate(spec, impl, cfg, pass_, **method_params(impl, {**schedule, 'tensor_cores': tensor_cores}))
    sch = make_config(ScheduleConfig, tensor_cores=tensor_cores,
                      **{k: v for k, v in schedule.items() if v is not None})
    extra: dict = {}
    if impl.startswith("standard"):
        if pattern:
            raise ValueError("pattern: sparse patterns need tile skipping (flash1, flash2, flash-decoding); "
                             "standard attention computes every score")
        counts, info = _standard_kernels(spec, cfg, sch, impl, pass_)
        used_path = "tensor-level graph"
    else:
        classes = None
        if pattern:
            if not isinstance(pattern, Pattern):
                opts = dict(pattern_options or {})
                if window is not None:
                    opts.setdefault("window", window)
                pattern = Pattern(tuple(pattern), causal=causal, **opts)
            from simulators.flash import resolve_blocks, staged_bytes

            s = staged_bytes(cfg, sch)
            br, bc = ((cfg.seq_len, sch.block_c or max(128, head_dim)) if impl == "flash-decoding"
                      else resolve_blocks(spec, cfg, sch, s))
            classes, kept = tile_classes(pattern, cfg.seq_len, cfg.kv_len, cfg.heads, br, bc)
            kept_pairs = int(sum(kept[h % len(kept)] for h in range(cfg.heads)) * cfg.batch)
            extra["pattern"] = {"names": list(pattern.names), "kept_pairs": kept_pairs,
                                "density": kept_pairs / (cfg.batch_heads * cfg.seq_len * cfg.kv_len),
                                "nominal_fwd_matmul_flops": float(PAIR_MATMUL_FLOPS["fwd"] * head_dim * kept_pairs),
                                "tiles_kept": int((classes > 0).sum()), "tiles_total": int(classes.size)}
        counts, info = flash_kernels(spec, cfg, sch, impl, pass_, path, classes)
        used_path = "enumerate" if (path == "enumerate" or classes is not None) else "closed"
    kernels = [time_kernel(spec, k, cfg.dtype, sch.tensor_cores, _our_params(spec, k, cfg, info)) for k in counts]
    return AttentionResult(
        gpu=spec.name, impl=impl, pass_=pass_, path=used_path, config=cfg.model_dump(),
        schedule={**sch.model_dump(), **info}, assumptions=ASSUMPTIONS, kernels=kernels, extra=extra,
        **totals(kernels))


def _simulate_implementation(spec, impl, pass_, problem, pattern, path, schedule) -> AttentionResult:
    """A named implementation (simulators/implementations/catalog.yaml), timed with the spec's fitted
    parameters (or its basis: scaled from a calibrated GPU, or per-architecture defaults)."""
    from simulators.implementations import run
    from simulators.implementations.params import timing_basis

    if pass_ not in PASSES:
        raise ValueError(f"pass: {pass_!r} is not allowed; one of {', '.join(PASSES)} is")
    if pattern:
        raise ValueError(f"pattern: {impl} runs dense (or causal) attention only; sparse patterns need flash2")
    fields = ScheduleConfig.model_fields
    given = {k: v for k, v in schedule.items() if v is not None and not (k in fields and v == fields[k].default)}
    if given:
        raise ValueError(f"{next(iter(given))}: {impl} launches its own schedule (catalog.yaml); "
                         f"schedule options are allowed for our impls ({', '.join(IMPLS)})")
    if problem["window"] is not None:
        raise ValueError(f"window: not modelled for {impl}; use flash2 for sliding windows")
    cfg = make_config(AttentionConfig, **problem)
    basis = timing_basis(spec)
    counts = run.count(spec, impl, cfg, pass_)
    kernels, overhead = run.time(spec, impl, counts, cfg, pass_, basis)
    tot = totals(kernels)
    tot["time_s"] += overhead
    return AttentionResult(
        gpu=spec.name, impl=impl, pass_=pass_, path=path, config=cfg.model_dump(),
        schedule={"timing_basis": basis.name, "kernels": [k.name for k in kernels]},
        assumptions={**ASSUMPTIONS, **run.ASSUMPTIONS}, kernels=kernels, call_overhead_s=overhead, **tot)
